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

from dataclasses import dataclass, field

from edge_agent.kpi.furnace import (
    Balance,
    BalanceError,
    Concentrate,
    FurnaceModel,
    OperatingPoint,
)
from edge_agent.kpi.thermochemistry import (
    A_AL,
    A_C,
    A_CU,
    A_FE,
    A_H,
    A_O,
    A_S,
    HF_AL2O3,
    HF_CO2,
    HF_CU2S,
    HF_CUFES2,
    HF_FE2SIO4,
    HF_FE3O4,
    HF_FEO,
    HF_FES,
    HF_FES2,
    HF_H2O_G,
    HF_H2O_L,
    HF_SIO2,
    HF_SO2,
    MW_AL2O3,
    MW_CU2S,
    MW_FE3O4,
    MW_FEO,
    MW_FES,
    MW_H2O,
    MW_SIO2,
    NM3_PER_KMOL,
    SECONDS_PER_HOUR,
    Organics,
)


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


@dataclass(frozen=True)
class _Products:
    """Where the feed's elements go at one matte grade: kmol/h of each species, t/h where named."""

    grade: float
    matte_t: float
    slag_t: float
    flux_t: float
    inert_t: float  # gangue, oxides and flux inerts in the slag
    cu_matte: float
    cu2s_matte: float
    cu_slag: float  # entrained as Cu2S
    fes: float
    fe_slag: float
    feo: float
    fe3o4: float
    sio2: float
    fayalite: float
    al2o3: float
    so2: float


def _products(model: FurnaceModel, op: OperatingPoint, feed: _Feed, grade: float) -> _Products:
    """Matte, slag and SO2 at `grade`. The slag's Cu depends on its mass and the slag's mass on
    the matte's Fe: a fixed point, reached in a few iterations."""
    cu2s_grade = 2 * A_CU / MW_CU2S
    if not 0 < grade <= cu2s_grade:
        raise BalanceError(f"matte grade {grade:.4f} outside (0, {cu2s_grade:.4f}] (Cu2S-FeS)")
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
    so2 = feed.s - cu2s_matte - fes - cu_slag / 2
    if so2 < 0:
        raise BalanceError(f"matte grade {grade:.3f} holds more sulfur than the feed brings")
    return _Products(
        grade=grade,
        matte_t=matte_t,
        slag_t=slag_t,
        flux_t=flux_t,
        inert_t=inert_t,
        cu_matte=cu_matte,
        cu2s_matte=cu2s_matte,
        cu_slag=cu_slag,
        fes=fes,
        fe_slag=fe_slag,
        feo=feo,
        fe3o4=fe3o4,
        sio2=sio2,
        fayalite=min(feo / 2, sio2),  # FeO slags with the silica (2FeO + SiO2 -> Fe2SiO4)
        al2o3=al2o3,
        so2=so2,
    )


def _reaction_mw(model: FurnaceModel, feed: _Feed, p: _Products) -> float:
    """Heat of reaction (Hess): formation enthalpies of what goes in minus what comes out."""
    hf_out = (
        (p.cu2s_matte + p.cu_slag / 2) * HF_CU2S
        + p.fes * HF_FES
        + p.so2 * HF_SO2
        + (p.feo - 2 * p.fayalite) * HF_FEO
        + p.fayalite * HF_FE2SIO4
        + (p.sio2 - p.fayalite) * HF_SIO2
        + p.fe3o4 * HF_FE3O4
        + p.al2o3 * HF_AL2O3
        + feed.co2 * HF_CO2
        + feed.h2o * HF_H2O_G
    )
    hf_in = feed.hf_mj_h + p.flux_t * model.flux_sio2 * 1000 / MW_SIO2 * HF_SIO2
    return (hf_in - hf_out) / SECONDS_PER_HOUR


def _elements(
    model: FurnaceModel, feed: _Feed, p: _Products, o2: tuple[float, float], n2: float
) -> tuple[dict[str, float], dict[str, float]]:
    """Each element's inflow and outflow, kmol/h ("inert" t/h), for the closure check;
    `o2` is the oxygen blown and the part of it that leaves unreacted."""
    o2_demand, o2_excess = o2
    out = {
        "Cu": 2 * (p.cu2s_matte + p.cu_slag / 2),
        "Fe": p.fes + p.fe_slag,
        "S": p.cu2s_matte + p.cu_slag / 2 + p.fes + p.so2,
        "O": 2 * p.so2
        + p.feo
        + 4 * p.fe3o4
        + 2 * p.sio2
        + 3 * p.al2o3
        + 2 * feed.co2
        + feed.h2o
        + 2 * o2_excess,
        "Si": p.sio2,
        "Al": 2 * p.al2o3,
        "C": feed.co2,
        "H": 2 * feed.h2o,
        "N": 2 * n2,
        "inert": p.inert_t,
    }
    elements_in = dict(feed.elements)
    elements_in["Si"] += p.flux_t * model.flux_sio2 * 1000 / MW_SIO2
    elements_in["O"] += 2 * p.flux_t * model.flux_sio2 * 1000 / MW_SIO2 + 2 * o2_demand
    elements_in["N"] = 2 * n2
    elements_in["inert"] = feed.inert_t + p.flux_t * (1 - model.flux_sio2)
    return elements_in, out


def _oxygen_atoms(feed: _Feed, p: _Products) -> float:
    """kmol/h of O atoms the products take from the blast (SO2, oxides, combustion)."""
    return 2 * p.so2 + p.feo + 4 * p.fe3o4 + 1.5 * feed.al + 2 * feed.burn_o2


def _close(
    model: FurnaceModel, op: OperatingPoint, feed: _Feed, grade: float, n2_kmolh: float | None
) -> Balance:
    p = _products(model, op, feed, grade)
    o_atoms = _oxygen_atoms(feed, p)
    o2_demand = o_atoms / 2 * (1 + model.excess_o2)
    o2_excess = o2_demand - o_atoms / 2
    if n2_kmolh is None:
        eps = op.enrichment
        n2_kmolh = o2_demand * (1 - eps) / eps
    gas, tg = model.gas_heat, op.offgas_temp_c
    offgas_mj_h = (
        p.so2 * gas["SO2"].at(tg)
        + n2_kmolh * gas["N2"].at(tg)
        + o2_excess * gas["O2"].at(tg)
        + feed.co2 * gas["CO2"].at(tg)
        + feed.h2o * gas["H2O"].at(tg)
    )
    reaction_mw = _reaction_mw(model, feed, p)
    dust_t = model.dust_fraction * op.conc_tph
    matte_mw = p.matte_t * model.matte_heat.at(op.matte_temp_c) / 3.6
    slag_mw = p.slag_t * model.slag_heat.at(op.slag_temp_c) / 3.6
    offgas_mw = offgas_mj_h / SECONDS_PER_HOUR
    dust_mw = dust_t * model.dust_heat.at(tg) / 3.6
    margin = reaction_mw - matte_mw - slag_mw - offgas_mw - dust_mw - op.q_loss_mw
    elements_in, elements_out = _elements(model, feed, p, (o2_demand, o2_excess), n2_kmolh)
    return Balance(
        matte_grade=grade,
        matte_tph=p.matte_t,
        cu_to_matte_tph=p.cu_matte * A_CU / 1000,
        slag_tph=p.slag_t,
        flux_tph=p.flux_t,
        offgas_nm3h=(p.so2 + n2_kmolh + o2_excess + feed.co2 + feed.h2o) * NM3_PER_KMOL,
        o2_demand_nm3h=o2_demand * NM3_PER_KMOL,
        n2_nm3h=n2_kmolh * NM3_PER_KMOL,
        so2_nm3h=p.so2 * NM3_PER_KMOL,
        dust_tph=dust_t,
        reaction_mw=reaction_mw,
        matte_heat_mw=matte_mw,
        slag_heat_mw=slag_mw,
        offgas_heat_mw=offgas_mw,
        dust_heat_mw=dust_mw,
        loss_mw=op.q_loss_mw,
        margin_mw=margin,
        elements_in=elements_in,
        elements_out=elements_out,
    )
