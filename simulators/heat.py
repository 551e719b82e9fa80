"""The simulated furnace's *true* heat and mass balance (Hess's law, 25 °C reference).

This is the plant, not the agent's estimate of it: the agent's KPI engine builds its own model
from the configuration, whose parameters (heat loss, compositions) deliberately differ from the
ones below. Keeping the two independent is what makes following the advisor in simulation a test.

The chemistry is an element pool: Cu, Fe and S from every feed; Cu ends as Cu2S in the matte,
the oxygen supplied decides how much Fe is oxidised to slag (85 % FeO, 15 % Fe3O4), the iron
left over stays as FeS in the matte and the remaining sulfur leaves as SO2. The matte grade is
therefore a result of the oxygen-to-feed ratio, as in a real flash furnace.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Molar masses, kg/kmol.
M_CU, M_FE, M_S, M_AL = 63.546, 55.845, 32.06, 26.982
M_CU2S, M_FES, M_FEO, M_FE3O4 = 159.16, 87.91, 71.844, 231.53
M_SIO2, M_AL2O3 = 60.08, 101.96
NM3_PER_KMOL = 22.414

# Standard enthalpies of formation, kJ/mol (= MJ/kmol) [process-model §4].
HF = {
    "CuFeS2": -194.93, "FeS": -102.59, "FeS2": -171.64, "Cu2S": -80.21, "SO2": -296.83,
    "FeO": -272.04, "Fe3O4": -1118.4, "SiO2": -910.7, "Fe2SiO4": -1479.9, "Al2O3": -1675.7,
}  # fmt: skip
FAYALITE_HEAT = HF["Fe2SiO4"] - (2 * HF["FeO"] + HF["SiO2"])  # MJ per kmol Fe2SiO4, < 0

# Gas sensible heat above 25 °C at 1300 °C (kJ/mol) and its slope (kJ/mol/K).
GAS_H_1300 = {"SO2": (66.0, 0.058), "N2": (41.0, 0.035), "O2": (43.0, 0.037),
              "CO2": (67.0, 0.060), "H2O": (53.0, 0.045)}  # fmt: skip


@dataclass(frozen=True)
class Concentrate:
    """Dry concentrate assay, mass fractions; the rest of the gangue is inert oxides."""

    cu: float = 0.295
    fe: float = 0.238
    s: float = 0.287
    sio2: float = 0.065

    def minerals_kmol_per_t(self) -> tuple[float, float, float]:
        """CuFeS2, Cu2S, FeS2 (kmol per t) that carry the assay's Cu, Fe and S."""
        cu, fe, s = self.cu * 1000 / M_CU, self.fe * 1000 / M_FE, self.s * 1000 / M_S
        # a + 2b = cu, a + c = fe, 2a + b + 2c = s  =>  a = cu - 2s + 4fe
        cpy = min(max(cu - 2 * s + 4 * fe, 0.0), cu, fe)
        cc = (cu - cpy) / 2
        py = fe - cpy
        return cpy, cc, py


@dataclass(frozen=True)
class Scrap:
    """Kiln-treated e-scrap as fed to the furnace, mass fractions."""

    cu: float = 0.20
    fe: float = 0.05
    al: float = 0.01
    sio2: float = 0.25
    organics: float = 0.005  # what the kiln left behind
    # the rest: other oxides (glass, alumina, ceramics), inert


@dataclass(frozen=True)
class TrueParameters:
    """The plant's real values; docs/simulators.md lists them beside the demo config's."""

    conc: Concentrate = field(default_factory=Concentrate)
    escrap: Scrap = field(default_factory=Scrap)
    flux_sio2: float = 0.90
    o2_efficiency: float = 0.985  # the rest of the oxygen slips through unreacted
    fe3o4_share: float = 0.15
    shell_loss_mw: float = 1.6  # radiation and convection not seen by the cooling water
    cw_loss_ref_mw: tuple[float, float, float] = (5.0, 4.2, 2.6)  # shaft, settler, uptake
    oil_lhv_mj_per_kg: float = 40.4
    oil_c: float = 0.86
    oil_h: float = 0.12
    organics_lhv_mj_per_kg: float = 28.0
    organics_c: float = 0.62
    organics_h: float = 0.06
    cp_matte: float = 0.65e-3  # MJ/kg/K
    cp_slag: float = 1.1e-3
    cp_dust: float = 1.0e-3
    t_matte: float = 1250.0
    t_slag: float = 1280.0
    t_gas: float = 1300.0
    slag_fe_sio2_target: float = 1.2


@dataclass(frozen=True)
class Inputs:
    conc_tph: float
    escrap_tph: float
    cu_scrap_tph: float
    flux_tph: float
    reverts_tph: float
    o2_nm3h: float  # technical oxygen
    o2_purity_pct: float
    air_nm3h: float
    fuel_kgh: float


@dataclass(frozen=True)
class Balance:
    """One evaluation of the balance at the target bath and gas temperatures."""

    reaction_mw: float
    fuel_mw: float
    matte_mw: float
    slag_mw: float
    gas_mw: float
    dust_mw: float
    loss_mw: float
    margin_mw: float
    matte_tph: float
    slag_tph: float
    matte_grade_pct: float
    slag_fe_sio2: float
    flux_needed_tph: float
    gas_kmolh: dict[str, float]
    heat_capacity_mw_per_k: float  # d(heat out)/dT of all products, for the temperature lag

    @property
    def gas_nm3h(self) -> float:
        return sum(self.gas_kmolh.values()) * NM3_PER_KMOL


def _gas_h(species: str, t: float) -> float:
    h, slope = GAS_H_1300[species]
    return h + slope * (t - 1300.0)


@dataclass(frozen=True)
class _Pool:
    """Where the feeds' elements go, kmol/h (t/h where named): the oxygen decides the iron."""

    minerals: tuple[float, float, float]  # CuFeS2, Cu2S, FeS2 fed
    cu: float
    al: float
    organics_kg: float  # per hour
    fe_ox: float  # oxidised to slag
    fe_matte: float  # left as FeS
    s_ox: float  # leaves as SO2
    o2_slip: float  # unreacted


def _pool(x: Inputs, p: TrueParameters) -> _Pool:
    conc_t = x.conc_tph
    cpy, cc, py = (k * conc_t for k in p.conc.minerals_kmol_per_t())
    sc = p.escrap
    cu = conc_t * p.conc.cu * 1000 / M_CU + (x.escrap_tph * sc.cu + x.cu_scrap_tph) * 1000 / M_CU
    fe = conc_t * p.conc.fe * 1000 / M_FE + x.escrap_tph * sc.fe * 1000 / M_FE
    s = conc_t * p.conc.s * 1000 / M_S
    al = x.escrap_tph * sc.al * 1000 / M_AL
    organics_kg = x.escrap_tph * sc.organics * 1000

    o2_org = organics_kg * (p.organics_c / 12.011 + p.organics_h / 4.032)
    o2_supplied = (x.o2_nm3h * x.o2_purity_pct / 100 + x.air_nm3h * 0.21) / NM3_PER_KMOL
    o2_avail = o2_supplied * p.o2_efficiency
    o2_per_fe = (1 - p.fe3o4_share) * 0.5 + p.fe3o4_share * 2 / 3
    free_s = s - cu / 2 - fe  # sulfur not needed by Cu2S and FeS if no iron were oxidised
    # The shaft burners have their own stoichiometric oxygen, not from o2_avail.
    fe_ox = (o2_avail - 0.75 * al - o2_org - free_s) / (1 + o2_per_fe)
    fe_ox = min(max(fe_ox, 0.0), 0.97 * fe)
    fe_matte = fe - fe_ox
    s_ox = max(s - cu / 2 - fe_matte, 0.0)
    o2_used = s_ox + o2_per_fe * fe_ox + 0.75 * al + o2_org
    o2_slip = max(o2_supplied - o2_used, 0.0)
    return _Pool((cpy, cc, py), cu, al, organics_kg, fe_ox, fe_matte, s_ox, o2_slip)


def _reaction_mj(p: TrueParameters, e: _Pool, feo: float, fe3o4: float, fay: float) -> float:
    """Heat of reaction per hour (Hess), the organics' combustion included."""
    cpy, cc, py = e.minerals
    reactants = cpy * HF["CuFeS2"] + cc * HF["Cu2S"] + py * HF["FeS2"]
    products = (
        e.cu / 2 * HF["Cu2S"] + e.fe_matte * HF["FeS"] + feo * HF["FeO"] + fe3o4 * HF["Fe3O4"]
        + e.s_ox * HF["SO2"] + e.al / 2 * HF["Al2O3"] + fay * FAYALITE_HEAT
    )  # fmt: skip
    return reactants - products + e.organics_kg * p.organics_lhv_mj_per_kg


def _gas(x: Inputs, p: TrueParameters, e: _Pool) -> dict[str, float]:
    """The off-gas, kmol/h."""
    return {
        "SO2": e.s_ox,
        "N2": (x.o2_nm3h * (1 - x.o2_purity_pct / 100) + x.air_nm3h * 0.79) / NM3_PER_KMOL,
        "O2": e.o2_slip,
        "CO2": x.fuel_kgh * p.oil_c / 12.011 + e.organics_kg * p.organics_c / 12.011,
        "H2O": x.fuel_kgh * p.oil_h / 2.016 + e.organics_kg * p.organics_h / 2.016,
    }


def evaluate(x: Inputs, p: TrueParameters) -> Balance:
    """Heat and mass balance of the furnace for one set of feeds, in MW and t/h."""
    e = _pool(x, p)
    conc_t, sc = x.conc_tph, p.escrap
    cu, al, fe_ox = e.cu, e.al, e.fe_ox
    feo, fe3o4 = fe_ox * (1 - p.fe3o4_share), fe_ox * p.fe3o4_share / 3
    matte_t = (cu / 2 * M_CU2S + e.fe_matte * M_FES) / 1000
    sio2_t_nonflux = conc_t * p.conc.sio2 + x.escrap_tph * sc.sio2
    sio2_t = sio2_t_nonflux + x.flux_tph * p.flux_sio2
    fe_ox_t = fe_ox * M_FE / 1000
    flux_needed = max(fe_ox_t / p.slag_fe_sio2_target - sio2_t_nonflux, 0.0) / p.flux_sio2
    conc_other = conc_t * (1 - p.conc.cu - p.conc.fe - p.conc.s - p.conc.sio2)
    escrap_other = x.escrap_tph * (1 - sc.cu - sc.fe - sc.al - sc.sio2 - sc.organics)
    slag_t = (
        (feo * M_FEO + fe3o4 * M_FE3O4 + al / 2 * M_AL2O3) / 1000
        + sio2_t
        + x.flux_tph * (1 - p.flux_sio2)
        + conc_other
        + escrap_other
    )
    fayalite = min(feo / 2, sio2_t * 1000 / M_SIO2)
    reaction_mj = _reaction_mj(p, e, feo, fe3o4, fayalite)
    fuel_mj = x.fuel_kgh * p.oil_lhv_mj_per_kg
    gas = _gas(x, p, e)
    matte_mj = matte_t * 1000 * (0.82 + p.cp_matte * (p.t_matte - 1250))
    slag_mj = slag_t * 1000 * (1.45 + p.cp_slag * (p.t_slag - 1280))
    gas_mj = sum(n * _gas_h(k, p.t_gas) for k, n in gas.items())
    dust_mj = x.reverts_tph * 1000 * (1.0 + p.cp_dust * (p.t_gas - 1300))
    loss_mw = p.shell_loss_mw + sum(p.cw_loss_ref_mw)
    capacity_mj = (
        matte_t * 1000 * p.cp_matte
        + slag_t * 1000 * p.cp_slag
        + sum(n * GAS_H_1300[k][1] for k, n in gas.items())
        + x.reverts_tph * 1000 * p.cp_dust
    )
    to_mw = 1 / 3600
    out_mj = matte_mj + slag_mj + gas_mj + dust_mj
    return Balance(
        reaction_mw=reaction_mj * to_mw,
        fuel_mw=fuel_mj * to_mw,
        matte_mw=matte_mj * to_mw,
        slag_mw=slag_mj * to_mw,
        gas_mw=gas_mj * to_mw,
        dust_mw=dust_mj * to_mw,
        loss_mw=loss_mw,
        margin_mw=(reaction_mj + fuel_mj - out_mj) * to_mw - loss_mw,
        matte_tph=matte_t,
        slag_tph=slag_t,
        matte_grade_pct=100 * cu * M_CU / 1000 / matte_t if matte_t > 0 else 0.0,
        slag_fe_sio2=fe_ox_t / sio2_t if sio2_t > 0 else 0.0,
        flux_needed_tph=flux_needed,
        gas_kmolh=gas,
        heat_capacity_mw_per_k=capacity_mj * to_mw,
    )
