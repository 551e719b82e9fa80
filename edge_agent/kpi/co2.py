"""CO2 from the furnace's and the kiln's fuels and from the resins the kiln burns off e-scrap.

`CO2 [t/h] = Σ fuel_f · EF_f + (kiln feed − kiln residue − moisture) · C · 44/12`
The kiln's mass loss is the organics it burns (plus water, if configured): counted once here, and
not again at the furnace, where the treated e-scrap arrives with what is left of them.
"""

from __future__ import annotations

from dataclasses import dataclass

CO2_PER_C = 44.0095 / 12.011


@dataclass(frozen=True)
class FuelFactor:
    """Converts a fuel flow in its tag's unit into t CO2/h (`t_co2_per_h_per_unit`)."""

    name: str
    t_co2_per_h_per_unit: float


@dataclass(frozen=True)
class Co2Rate:
    total_tph: float
    by_source_tph: dict[str, float]


def co2_rate(
    fuel_flows: dict[str, float],
    factors: list[FuelFactor],
    kiln_feed_tph: float | None = None,
    kiln_residue_tph: float | None = None,
    burnoff_carbon: float = 0.62,
    kiln_feed_moisture: float = 0.0,
) -> Co2Rate:
    """CO2 emission rate; fuel flows are keyed by fuel name, in their tags' units."""
    by_source = {f.name: fuel_flows[f.name] * f.t_co2_per_h_per_unit for f in factors}
    if kiln_feed_tph is not None and kiln_residue_tph is not None:
        burnt = max(0.0, kiln_feed_tph - kiln_residue_tph - kiln_feed_tph * kiln_feed_moisture)
        by_source["kiln_burnoff"] = burnt * burnoff_carbon * CO2_PER_C
    return Co2Rate(sum(by_source.values()), by_source)


def fuel_factor(
    name: str, unit: str, t_co2_per_t: float | None, kg_co2_per_nm3: float | None
) -> FuelFactor:
    """Emission factor per unit of the fuel tag: mass flows need t/t, gas flows kg/Nm³."""
    from edge_agent.kpi.units import UnitError, is_volume_flow, tph_factor

    if is_volume_flow(unit):
        if kg_co2_per_nm3 is None:
            raise UnitError(f"fuel {name}: tag unit {unit!r} is a gas flow; give kg_co2_per_nm3")
        return FuelFactor(name, kg_co2_per_nm3 / 1000)
    if t_co2_per_t is None:
        raise UnitError(f"fuel {name}: tag unit {unit!r} is a mass flow; give t_co2_per_t")
    return FuelFactor(name, tph_factor(unit) * t_co2_per_t)
