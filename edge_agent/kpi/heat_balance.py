"""Steady-state mass and heat balance of the flash smelting furnace (Hess's law, 25 °C reference).

The model answers one question: with this feed, these temperatures and this heat loss, how much
heat is left over (the margin, MW)? Everything enters at 25 °C; the heat of reaction is the
difference of the standard enthalpies of formation of what goes in and what comes out, and the
products carry away their sensible heat at their measured temperatures. Process-model §4 and
docs/process-model.md give the equations and the source of every number.

Two closures fix the one degree of freedom the chemistry leaves open (how much FeS is oxidised):
- `solve(...)`: the matte grade is given (measured); the oxygen demand follows.
- `solve_at_oxygen(...)`: the oxygen and nitrogen blown are given; the grade floats to match.

Flows are kmol/h or t/h, enthalpies kJ/mol (= MJ/kmol) or MJ/kg (= GJ/t), heats MW.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

# ----------------------------------------------------------------------------- physical data

# Atomic masses, g/mol (IUPAC).
A_CU, A_FE, A_S, A_O, A_SI, A_AL, A_C, A_H, A_N = (
    63.546,
    55.845,
    32.06,
    15.999,
    28.0855,
    26.9815,
    12.011,
    1.008,
    14.007,
)
MW_CU2S = 2 * A_CU + A_S
MW_FES = A_FE + A_S
MW_FEO = A_FE + A_O
MW_FE3O4 = 3 * A_FE + 4 * A_O
MW_SIO2 = A_SI + 2 * A_O
MW_AL2O3 = 2 * A_AL + 3 * A_O
MW_H2O = 2 * A_H + A_O

# Standard enthalpies of formation at 298.15 K, kJ/mol [T] (process-model §4).
HF_CUFES2 = -194.93
HF_FES = -102.59
HF_FES2 = -171.64
HF_CU2S = -80.21
HF_SO2 = -296.83
HF_FEO = -272.04
HF_FE3O4 = -1118.4
HF_SIO2 = -910.7
HF_FE2SIO4 = -1479.9
HF_AL2O3 = -1675.7
HF_CO2 = -393.52
HF_H2O_G = -241.83
HF_H2O_L = -285.83  # liquid water (moisture in a feed), NIST-JANAF

O2_IN_AIR = 0.2095
NM3_PER_KMOL = 22.414
SECONDS_PER_HOUR = 3600.0


class BalanceError(ValueError):
    """The inputs describe no physically possible steady state (e.g. grade above Cu2S)."""


@dataclass(frozen=True)
class SensibleHeat:
    """Enthalpy above 25 °C, linear in temperature around an operating point.

    `at_ref` at `ref_c` (MJ/kg or kJ/mol), changing by `per_k` per kelvin. Linear is enough
    within ±100 K of the operating point, where the liquids' heat capacities barely change.
    """

    at_ref: float
    ref_c: float
    per_k: float

    def at(self, temp_c: float) -> float:
        return self.at_ref + self.per_k * (temp_c - self.ref_c)


@dataclass(frozen=True)
class Organics:
    """Combustible matter (resins, oil): elemental mass fractions and lower heating value.

    Its enthalpy of formation follows from the heating value (Hess): burning 1 kg releases
    `lhv_mj_per_kg` and gives CO2 and H2O(g), so ΔHf = products' ΔHf + LHV.
    """

    c: float
    h: float
    o: float = 0.0
    lhv_mj_per_kg: float = 30.0

    def hf_mj_per_kg(self) -> float:
        return self.c / A_C * HF_CO2 + self.h / (2 * A_H) * HF_H2O_G + self.lhv_mj_per_kg

    def o2_kmol_per_t(self) -> float:
        """Oxygen to burn one tonne completely, kmol."""
        return 1000 * (self.c / A_C + self.h / (4 * A_H) - self.o / (2 * A_O))


@dataclass(frozen=True)
class Concentrate:
    """Dry concentrate assay, mass fractions. `other` is inert gangue (CaO, MgO, Al2O3, …)."""

    cu: float
    fe: float
    s: float
    sio2: float
    other: float


@dataclass(frozen=True)
class RecycledMaterial:
    """Composition of one recycled stream, mass fractions; the remainder is inert oxides/glass."""

    cu_metal: float = 0.0
    fe_metal: float = 0.0
    al_metal: float = 0.0
    sio2: float = 0.0
    organics: float = 0.0
    moisture: float = 0.0
    organic_matter: Organics = Organics(c=0.62, h=0.06, o=0.12, lhv_mj_per_kg=28.0)

    @property
    def inert(self) -> float:
        return max(
            0.0,
            1.0
            - self.cu_metal
            - self.fe_metal
            - self.al_metal
            - self.sio2
            - self.organics
            - self.moisture,
        )


@dataclass(frozen=True)
class FurnaceModel:
    """Everything about the furnace that is configuration, not measurement."""

    concentrate: Concentrate
    recycled: dict[str, RecycledMaterial]
    fuel: Organics
    slag_fe_sio2: float = 1.2
    slag_cu: float = 0.01
    fe3o4_share: float = 0.15  # fraction of the slag's Fe present as Fe3O4
    flux_sio2: float = 0.90
    dust_fraction: float = 0.07  # of the concentrate, circulates as reverts: heat only
    excess_o2: float = 0.0  # fraction of the oxygen demand that leaves unreacted
    matte_heat: SensibleHeat = SensibleHeat(0.82, 1250.0, 0.00060)
    slag_heat: SensibleHeat = SensibleHeat(1.45, 1280.0, 0.00120)
    dust_heat: SensibleHeat = SensibleHeat(1.00, 1300.0, 0.00085)
    gas_heat: dict[str, SensibleHeat] = field(
        default_factory=lambda: {
            "SO2": SensibleHeat(66.0, 1300.0, 0.058),
            "N2": SensibleHeat(41.0, 1300.0, 0.0355),
            "O2": SensibleHeat(43.0, 1300.0, 0.0375),
            "CO2": SensibleHeat(67.0, 1300.0, 0.060),
            "H2O": SensibleHeat(53.0, 1300.0, 0.048),
        }
    )


@dataclass(frozen=True)
class OperatingPoint:
    """The measured state the balance is evaluated at."""

    conc_tph: float
    recycled_tph: dict[str, float]
    fuel_kgph: float
    o2_nm3h: float  # technical oxygen
    o2_purity: float  # fraction
    air_nm3h: float
    matte_grade: float  # fraction Cu
    matte_temp_c: float
    slag_temp_c: float
    offgas_temp_c: float
    q_loss_mw: float

    @property
    def enrichment(self) -> float:
        """O2 fraction of the blast (technical oxygen + air)."""
        total = self.o2_nm3h + self.air_nm3h
        if total <= 0:
            raise BalanceError("no blast: oxygen and air flows are both zero")
        return (self.o2_purity * self.o2_nm3h + O2_IN_AIR * self.air_nm3h) / total

    def with_stream(self, name: str, tph: float) -> OperatingPoint:
        return replace(self, recycled_tph={**self.recycled_tph, name: tph})


@dataclass(frozen=True)
class Balance:
    """The solved furnace. Flows t/h (Nm³/h where named), heats MW."""

    matte_grade: float
    matte_tph: float
    cu_to_matte_tph: float
    slag_tph: float
    flux_tph: float
    offgas_nm3h: float
    o2_demand_nm3h: float
    n2_nm3h: float
    so2_nm3h: float
    dust_tph: float
    reaction_mw: float
    matte_heat_mw: float
    slag_heat_mw: float
    offgas_heat_mw: float
    dust_heat_mw: float
    loss_mw: float
    margin_mw: float
    elements_in: dict[str, float]  # kmol/h; "inert" in t/h
    elements_out: dict[str, float]

    def largest_imbalance(self) -> float:
        """Largest relative difference between an element's inflow and outflow."""
        worst = 0.0
        for key, inflow in self.elements_in.items():
            outflow = self.elements_out.get(key, 0.0)
            scale = max(abs(inflow), abs(outflow), 1e-12)
            worst = max(worst, abs(inflow - outflow) / scale)
        return worst


def mineralogy(conc: Concentrate) -> dict[str, float]:
    """kmol per tonne of CuFeS2, Cu2S, FeS2 and FeS that carry the assay's Cu, Fe and S.

    Chalcopyrite takes the copper first; sulfur beyond CuFeS2 goes to Cu2S and pyrite, a sulfur
    deficit shows up as pyrrhotite (FeS). Assays no sulfide mix can explain are rejected.
    """
    n_cu, n_fe, n_s = 1000 * conc.cu / A_CU, 1000 * conc.fe / A_FE, 1000 * conc.s / A_S
    # Three minerals carry three elements exactly; take the first set that needs no negative
    # amount: sulfur-rich (pyrite present), then sulfur-poor (pyrrhotite), then copper-rich.
    cu2s = n_s - 2 * n_fe
    candidates = [
        {"CuFeS2": n_cu - 2 * cu2s, "Cu2S": cu2s, "FeS2": n_fe - n_cu + 2 * cu2s, "FeS": 0.0},
        {"CuFeS2": n_cu, "Cu2S": 0.0, "FeS2": n_s - n_fe - n_cu, "FeS": 2 * n_fe - n_s},
        {
            "CuFeS2": 2 * (n_s - n_fe) - n_cu,
            "Cu2S": n_cu - (n_s - n_fe),
            "FeS2": 0.0,
            "FeS": n_fe - 2 * (n_s - n_fe) + n_cu,
        },
    ]
    for result in candidates:
        if min(result.values()) >= -1e-9:
            break
    else:
        raise BalanceError(
            f"assay Cu {conc.cu:.3f} / Fe {conc.fe:.3f} / S {conc.s:.3f} fits no mix of "
            "CuFeS2, Cu2S, FeS2 and FeS"
        )
    return {k: max(v, 0.0) for k, v in result.items()}


# ------------------------------------------------------------------------------------ solving


@dataclass
class _Feed:
    """Element and species inflows (kmol/h) of everything but the blast."""

    cu: float = 0.0
    fe: float = 0.0
    s: float = 0.0
    sio2: float = 0.0  # kmol/h
    al: float = 0.0
    inert_t: float = 0.0  # t/h of gangue and oxides that pass unchanged into the slag
    burn_o2: float = 0.0  # kmol/h O2 to burn organics and fuel
    co2: float = 0.0
    h2o: float = 0.0  # kmol/h from combustion and moisture
    hf_mj_h: float = 0.0  # Σ n·ΔHf of the inflows, MJ/h
    elements: dict[str, float] = field(default_factory=dict)


def _feed(model: FurnaceModel, op: OperatingPoint) -> _Feed:
    f = _Feed()
    el = {"Cu": 0.0, "Fe": 0.0, "S": 0.0, "O": 0.0, "Si": 0.0, "Al": 0.0, "C": 0.0, "H": 0.0}
    conc = model.concentrate
    minerals = mineralogy(conc)
    t = op.conc_tph
    f.cu += t * 1000 * conc.cu / A_CU
    f.fe += t * 1000 * conc.fe / A_FE
    f.s += t * 1000 * conc.s / A_S
    f.sio2 += t * 1000 * conc.sio2 / MW_SIO2
    f.inert_t += t * conc.other
    f.hf_mj_h += t * (
        minerals["CuFeS2"] * HF_CUFES2
        + minerals["Cu2S"] * HF_CU2S
        + minerals["FeS2"] * HF_FES2
        + minerals["FeS"] * HF_FES
    )
    f.hf_mj_h += t * 1000 * conc.sio2 / MW_SIO2 * HF_SIO2

    for name, tph in op.recycled_tph.items():
        if tph == 0:
            continue
        if name not in model.recycled:
            raise BalanceError(f"recycled stream {name!r} has no configured composition")
        mat = model.recycled[name]
        kg = tph * 1000
        f.cu += kg * mat.cu_metal / A_CU
        f.fe += kg * mat.fe_metal / A_FE
        f.al += kg * mat.al_metal / A_AL
        f.sio2 += kg * mat.sio2 / MW_SIO2
        f.hf_mj_h += kg * mat.sio2 / MW_SIO2 * HF_SIO2
        f.inert_t += tph * mat.inert
        _burn(f, el, mat.organic_matter, tph * mat.organics)
        water = kg * mat.moisture / MW_H2O
        f.h2o += water
        f.hf_mj_h += water * HF_H2O_L
        el["H"] += 2 * water
        el["O"] += water
    _burn(f, el, model.fuel, op.fuel_kgph / 1000)

    el["Cu"] += f.cu
    el["Fe"] += f.fe
    el["S"] += f.s
    el["Si"] += f.sio2
    el["O"] += 2 * f.sio2
    el["Al"] += f.al
    f.elements = el
    return f


def _burn(f: _Feed, el: dict[str, float], org: Organics, tph: float) -> None:
    """Organics and fuel burn completely to CO2 and H2O(g)."""
    if tph == 0:
        return
    kg = tph * 1000
    f.co2 += kg * org.c / A_C
    f.h2o += kg * org.h / (2 * A_H)
    f.burn_o2 += tph * org.o2_kmol_per_t()
    f.hf_mj_h += kg * org.hf_mj_per_kg()  # kg * MJ/kg = MJ/h
    el["C"] += kg * org.c / A_C
    el["H"] += kg * org.h / A_H
    el["O"] += kg * org.o / A_O


def solve(model: FurnaceModel, op: OperatingPoint, *, n2_kmolh: float | None = None) -> Balance:
    """Balance at the measured matte grade; the oxygen demand follows from the chemistry.

    Nitrogen comes with the oxygen at the blast's enrichment unless `n2_kmolh` fixes it (used
    when the oxygen and air flows are held, see `solve_at_oxygen`).
    """
    feed = _feed(model, op)
    return _close(model, op, feed, op.matte_grade, n2_kmolh)


def solve_at_oxygen(
    model: FurnaceModel, op: OperatingPoint, o2_kmolh: float, n2_kmolh: float
) -> Balance:
    """Balance with the blast fixed: find the matte grade that consumes exactly `o2_kmolh`.

    The oxygen demand rises monotonically with the grade (a richer matte means more FeS burnt),
    so bisection over the physically possible grades is robust and fast enough (≈50 solves).
    """
    feed = _feed(model, op)
    lo, hi = 0.05, 2 * A_CU / MW_CU2S
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        try:
            demand = _close(model, op, feed, mid, n2_kmolh).o2_demand_nm3h / NM3_PER_KMOL
        except BalanceError:
            # too little matte Fe for this grade's slag: the grade is too low to be possible
            lo = mid
            continue
        if demand < o2_kmolh:
            lo = mid
        else:
            hi = mid
    return _close(model, op, feed, 0.5 * (lo + hi), n2_kmolh)


def _close(
    model: FurnaceModel, op: OperatingPoint, feed: _Feed, grade: float, n2_kmolh: float | None
) -> Balance:
    cu2s_grade = 2 * A_CU / MW_CU2S
    if not 0 < grade <= cu2s_grade:
        raise BalanceError(f"matte grade {grade:.4f} outside (0, {cu2s_grade:.4f}] (Cu2S-FeS)")

    # The slag's Cu depends on its mass and the slag's mass on the matte's Fe: fixed point.
    slag_t = 0.5 * op.conc_tph
    for _ in range(50):
        cu_slag = 1000 * model.slag_cu * slag_t / A_CU  # kmol/h Cu, as entrained Cu2S
        cu_matte = feed.cu - cu_slag
        matte_t = cu_matte * A_CU / 1000 / grade
        cu2s_matte = cu_matte / 2
        fes = (matte_t * 1000 - cu2s_matte * MW_CU2S) / MW_FES
        fe_slag = feed.fe - fes
        if fe_slag < 0 or cu_matte < 0:
            raise BalanceError(
                f"matte grade {grade:.3f} needs more Fe in the matte than the feed brings"
            )
        feo = fe_slag * (1 - model.fe3o4_share)
        fe3o4 = fe_slag * model.fe3o4_share / 3
        sio2_need = fe_slag * A_FE / 1000 / model.slag_fe_sio2  # t/h
        sio2_feed = feed.sio2 * MW_SIO2 / 1000
        flux_t = max(0.0, (sio2_need - sio2_feed) / model.flux_sio2)
        sio2_t = sio2_feed + flux_t * model.flux_sio2
        inert_t = feed.inert_t + flux_t * (1 - model.flux_sio2)
        al2o3 = feed.al / 2
        new_slag = (
            feo * MW_FEO / 1000
            + fe3o4 * MW_FE3O4 / 1000
            + sio2_t
            + inert_t
            + al2o3 * MW_AL2O3 / 1000
            + cu_slag / 2 * MW_CU2S / 1000
        )
        if abs(new_slag - slag_t) < 1e-10 * max(new_slag, 1.0):
            slag_t = new_slag
            break
        slag_t = new_slag

    sio2 = sio2_t * 1000 / MW_SIO2
    fayalite = min(feo / 2, sio2)  # FeO slags with the silica (2FeO + SiO2 -> Fe2SiO4)
    so2 = feed.s - cu2s_matte - fes - cu_slag / 2
    if so2 < 0:
        raise BalanceError(f"matte grade {grade:.3f} holds more sulfur than the feed brings")
    o_atoms = 2 * so2 + feo + 4 * fe3o4 + 1.5 * feed.al + 2 * feed.burn_o2
    o2_demand = o_atoms / 2 * (1 + model.excess_o2)
    o2_excess = o2_demand - o_atoms / 2
    if n2_kmolh is None:
        eps = op.enrichment
        n2_kmolh = o2_demand * (1 - eps) / eps

    hf_out = (
        (cu2s_matte + cu_slag / 2) * HF_CU2S
        + fes * HF_FES
        + so2 * HF_SO2
        + (feo - 2 * fayalite) * HF_FEO
        + fayalite * HF_FE2SIO4
        + (sio2 - fayalite) * HF_SIO2
        + fe3o4 * HF_FE3O4
        + al2o3 * HF_AL2O3
        + feed.co2 * HF_CO2
        + feed.h2o * HF_H2O_G
    )
    hf_in = feed.hf_mj_h + flux_t * model.flux_sio2 * 1000 / MW_SIO2 * HF_SIO2
    reaction_mw = (hf_in - hf_out) / SECONDS_PER_HOUR

    gas = model.gas_heat
    tg = op.offgas_temp_c
    offgas_mj_h = (
        so2 * gas["SO2"].at(tg)
        + n2_kmolh * gas["N2"].at(tg)
        + o2_excess * gas["O2"].at(tg)
        + feed.co2 * gas["CO2"].at(tg)
        + feed.h2o * gas["H2O"].at(tg)
    )
    dust_t = model.dust_fraction * op.conc_tph
    matte_mw = matte_t * model.matte_heat.at(op.matte_temp_c) / 3.6
    slag_mw = slag_t * model.slag_heat.at(op.slag_temp_c) / 3.6
    offgas_mw = offgas_mj_h / SECONDS_PER_HOUR
    dust_mw = dust_t * model.dust_heat.at(tg) / 3.6
    margin = reaction_mw - matte_mw - slag_mw - offgas_mw - dust_mw - op.q_loss_mw

    out = {
        "Cu": 2 * (cu2s_matte + cu_slag / 2),
        "Fe": fes + fe_slag,
        "S": cu2s_matte + cu_slag / 2 + fes + so2,
        "O": 2 * so2
        + feo
        + 4 * fe3o4
        + 2 * sio2
        + 3 * al2o3
        + 2 * feed.co2
        + feed.h2o
        + 2 * o2_excess,
        "Si": sio2,
        "Al": 2 * al2o3,
        "C": feed.co2,
        "H": 2 * feed.h2o,
        "N": 2 * n2_kmolh,
        "inert": inert_t,
    }
    elements_in = dict(feed.elements)
    elements_in["Si"] += flux_t * model.flux_sio2 * 1000 / MW_SIO2
    elements_in["O"] += 2 * flux_t * model.flux_sio2 * 1000 / MW_SIO2 + 2 * o2_demand
    elements_in["N"] = 2 * n2_kmolh
    elements_in["inert"] = feed.inert_t + flux_t * (1 - model.flux_sio2)

    return Balance(
        matte_grade=grade,
        matte_tph=matte_t,
        cu_to_matte_tph=cu_matte * A_CU / 1000,
        slag_tph=slag_t,
        flux_tph=flux_t,
        offgas_nm3h=(so2 + n2_kmolh + o2_excess + feed.co2 + feed.h2o) * NM3_PER_KMOL,
        o2_demand_nm3h=o2_demand * NM3_PER_KMOL,
        n2_nm3h=n2_kmolh * NM3_PER_KMOL,
        so2_nm3h=so2 * NM3_PER_KMOL,
        dust_tph=dust_t,
        reaction_mw=reaction_mw,
        matte_heat_mw=matte_mw,
        slag_heat_mw=slag_mw,
        offgas_heat_mw=offgas_mw,
        dust_heat_mw=dust_mw,
        loss_mw=op.q_loss_mw,
        margin_mw=margin,
        elements_in=elements_in,
        elements_out=out,
    )


def cooling_loss_mw(
    circuits: list[tuple[float, float, float]],
    shell_loss_mw: float,
    density_kg_m3: float = 992.0,
    cp_kj_kg_k: float = 4.18,
) -> float:
    """Heat taken by cooling water, Σ ρ·cp·flow·(t_out − t_in), plus the configured shell loss.

    `circuits` holds (flow m³/h, t_in °C, t_out °C) per circuit.
    """
    kw = sum(
        density_kg_m3 * cp_kj_kg_k * flow / 3600 * (t_out - t_in) for flow, t_in, t_out in circuits
    )
    return kw / 1000 + shell_loss_mw


def reaction_enthalpy(reactants: dict[str, float], products: dict[str, float]) -> float:
    """ΔH of a reaction at 25 °C from the formation enthalpies above, kJ (per the coefficients)."""
    table = {
        "CuFeS2": HF_CUFES2, "FeS": HF_FES, "FeS2": HF_FES2, "Cu2S": HF_CU2S, "SO2": HF_SO2,
        "FeO": HF_FEO, "Fe3O4": HF_FE3O4, "SiO2": HF_SIO2, "Fe2SiO4": HF_FE2SIO4,
        "Al2O3": HF_AL2O3, "CO2": HF_CO2, "H2O": HF_H2O_G, "O2": 0.0, "N2": 0.0, "Cu": 0.0,
        "Fe": 0.0, "Al": 0.0,
    }  # fmt: skip
    return sum(n * table[s] for s, n in products.items()) - sum(
        n * table[s] for s, n in reactants.items()
    )
