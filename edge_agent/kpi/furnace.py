"""The flash smelting furnace as data: what is configuration (compositions, slag practice,
heat contents), what is measured (the operating point) and what the heat balance returns.

The solver is kpi/heat_balance.py; the configuration and tag values become these dataclasses in
kpi/balance_inputs.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from edge_agent.kpi.thermochemistry import O2_IN_AIR, Organics, SensibleHeat


class BalanceError(ValueError):
    """The inputs describe no physically possible steady state (e.g. grade above Cu2S)."""


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
