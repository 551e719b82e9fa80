"""The heat balance's configuration and the plant's tag values as the model's inputs.

`edge-agent balance` (kpi/whatif.py) and the live heat-balance step both go through these
functions, so the what-if calculator evaluates exactly the model the agent runs.
"""

from __future__ import annotations

from dataclasses import replace

from edge_agent.config import HeatBalanceConfig, SensibleHeatConfig
from edge_agent.kpi.furnace import (
    Balance,
    Concentrate,
    FurnaceModel,
    OperatingPoint,
    RecycledMaterial,
    cooling_loss_mw,
)
from edge_agent.kpi.heat_balance import solve, solve_at_oxygen
from edge_agent.kpi.thermochemistry import NM3_PER_KMOL, O2_IN_AIR, Organics, SensibleHeat
from edge_agent.kpi.units import tph_factor


def _sensible(c: SensibleHeatConfig) -> SensibleHeat:
    return SensibleHeat(c.at_ref, c.ref_c, c.per_k)


def furnace_model(hb: HeatBalanceConfig) -> FurnaceModel:
    """The heat balance's configuration as the model's dataclasses."""
    conc = hb.concentrate
    recycled = {
        r.name: RecycledMaterial(
            cu_metal=r.cu_metal,
            fe_metal=r.fe_metal,
            al_metal=r.al_metal,
            sio2=r.sio2,
            organics=r.organics,
            moisture=r.moisture,
            organic_matter=Organics(
                r.organic_matter.c,
                r.organic_matter.h,
                r.organic_matter.o,
                r.organic_matter.lhv_mj_per_kg,
            ),
        )
        for r in hb.recycled
    }
    defaults = FurnaceModel(Concentrate(0, 0, 0, 0, 0), {}, Organics(0, 0))
    gas = dict(defaults.gas_heat)
    gas.update({k: _sensible(v) for k, v in hb.gas_heat.items()})
    return FurnaceModel(
        concentrate=Concentrate(conc.cu, conc.fe, conc.s, conc.sio2, conc.other),
        recycled=recycled,
        fuel=Organics(hb.fuel.c, hb.fuel.h, hb.fuel.o, hb.fuel.lhv_mj_per_kg),
        slag_fe_sio2=hb.slag_fe_sio2,
        slag_cu=hb.slag_cu,
        fe3o4_share=hb.fe3o4_share,
        flux_sio2=hb.flux_sio2,
        dust_fraction=hb.dust_fraction,
        excess_o2=hb.excess_o2,
        matte_heat=_sensible(hb.matte_heat),
        slag_heat=_sensible(hb.slag_heat),
        dust_heat=_sensible(hb.dust_heat),
        gas_heat=gas,
    )


def heat_balance_tags(hb: HeatBalanceConfig) -> list[str]:
    """Every tag the balance reads."""
    tags = list(hb.input_tags().values()) + [r.rate_tag for r in hb.recycled]
    for c in hb.cooling_circuit:
        tags += [c.flow_tag, c.t_in_tag, c.t_out_tag]
    return tags


def _fraction(value: float, unit: str) -> float:
    return value / 100.0 if unit.strip() == "%" else value


def operating_point(
    hb: HeatBalanceConfig, values: dict[str, float], units: dict[str, str]
) -> OperatingPoint:
    """The balance's operating point from tag values in their tags' own units."""

    def v(tag: str) -> float:
        return float(values[tag])

    def u(tag: str) -> str:
        return units.get(tag, "")

    circuits = [(v(c.flow_tag), v(c.t_in_tag), v(c.t_out_tag)) for c in hb.cooling_circuit]
    return OperatingPoint(
        conc_tph=v(hb.conc_feed_tag) * tph_factor(u(hb.conc_feed_tag) or "t/h"),
        recycled_tph={
            r.name: v(r.rate_tag) * tph_factor(u(r.rate_tag) or "t/h") for r in hb.recycled
        },
        fuel_kgph=v(hb.fuel_flow_tag) * 1000 * tph_factor(u(hb.fuel_flow_tag) or "kg/h"),
        o2_nm3h=v(hb.o2_flow_tag),
        o2_purity=_fraction(v(hb.o2_purity_tag), u(hb.o2_purity_tag)),
        air_nm3h=v(hb.air_flow_tag),
        matte_grade=_fraction(v(hb.matte_grade_tag), u(hb.matte_grade_tag)),
        matte_temp_c=v(hb.matte_temp_tag),
        slag_temp_c=v(hb.slag_temp_tag),
        offgas_temp_c=v(hb.offgas_temp_tag),
        q_loss_mw=cooling_loss_mw(
            circuits, hb.shell_loss_mw, hb.water_density_kg_m3, hb.water_cp_kj_kg_k
        ),
    )


def at_basis(hb: HeatBalanceConfig, op: OperatingPoint) -> OperatingPoint:
    """The operating point with the products at the configured temperature basis."""
    if hb.temperature_basis == "measured":
        return op
    return replace(
        op,
        matte_temp_c=hb.matte_target_c,
        slag_temp_c=hb.slag_target_c,
        offgas_temp_c=hb.offgas_target_c,
    )


def live_balance(
    model: FurnaceModel, hb: HeatBalanceConfig, op: OperatingPoint
) -> tuple[OperatingPoint, Balance]:
    """The balance at `op`; with `grade_basis = "oxygen"` the grade is the one the blown
    oxygen and air produce, and the returned operating point carries it."""
    if hb.grade_basis == "assay":
        return op, solve(model, op)
    o2 = (op.o2_purity * op.o2_nm3h + O2_IN_AIR * op.air_nm3h) / NM3_PER_KMOL
    n2 = ((1 - op.o2_purity) * op.o2_nm3h + (1 - O2_IN_AIR) * op.air_nm3h) / NM3_PER_KMOL
    balance = solve_at_oxygen(model, op, o2, n2)
    return replace(op, matte_grade=balance.matte_grade), balance
