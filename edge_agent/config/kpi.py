"""The `[kpi]` tables: recycled-feed ratio, heat balance, advisor, CO2.

Owned by the KPI component; every KPI section reports the tags it reads through
`referenced_tags()` so that the cross-field rules can check them.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from edge_agent.contracts.section import Section


class KpiSectionBase(Section):
    enabled: bool = True

    def referenced_tags(self) -> list[tuple[str, str]]:
        """(key path inside this section, tag id) for every tag the KPI reads."""
        return []


Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
TagId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")]
StreamName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]


class RatioStream(Section):
    """One feed stream as the recycled-feed ratio sees it."""

    name: StreamName
    role: Literal["primary", "recycled", "excluded"]
    rate_tag: TagId
    total_tag: TagId | None = None
    cu_fraction: Fraction | None = None  # for the optional copper-content basis


class RecycledRatioConfig(KpiSectionBase):
    stream: list[RatioStream] = Field(min_length=1)
    shifts: list[str] = ["06:00", "14:00", "22:00"]
    fiscal_year_start_month: int = Field(4, ge=1, le=12)
    max_gap_s: float = Field(300.0, gt=0)
    min_coverage: Fraction = 0.9
    targets: dict[int, float] = {2020: 12.0, 2030: 25.0, 2040: 50.0}
    cu_basis: bool = False

    @field_validator("shifts")
    @classmethod
    def _shift_times(cls, value: list[str]) -> list[str]:
        from datetime import time as dtime

        if not value:
            raise ValueError("give at least one shift start (HH:MM)")
        for item in value:
            try:
                dtime.fromisoformat(item)
            except ValueError as exc:
                raise ValueError(f"shift start {item!r} is not HH:MM") from exc
        return sorted(value)

    @model_validator(mode="after")
    def _roles(self) -> RecycledRatioConfig:
        roles = {s.role for s in self.stream}
        if not {"primary", "recycled"} <= roles:
            raise ValueError("the ratio needs at least one primary and one recycled stream")
        if len({s.name for s in self.stream}) != len(self.stream):
            raise ValueError("stream names must be unique")
        if self.cu_basis:
            missing = [
                s.name for s in self.stream if s.role != "excluded" and s.cu_fraction is None
            ]
            if missing:
                raise ValueError(f"cu_basis = true needs cu_fraction for streams {missing}")
        if len(self.targets) < 1:
            raise ValueError("give at least one target milestone")
        return self

    def referenced_tags(self) -> list[tuple[str, str]]:
        refs = [(f"stream.{i}.rate_tag", s.rate_tag) for i, s in enumerate(self.stream)]
        refs += [
            (f"stream.{i}.total_tag", s.total_tag)
            for i, s in enumerate(self.stream)
            if s.total_tag is not None
        ]
        return refs


class SensibleHeatConfig(Section):
    """Enthalpy above 25 °C at `ref_c`, linear in T (`per_k` per kelvin)."""

    at_ref: float = Field(gt=0)
    ref_c: float
    per_k: float = Field(ge=0)


class ConcentrateConfig(Section):
    cu: Fraction
    fe: Fraction
    s: Fraction
    sio2: Fraction
    other: Fraction

    @model_validator(mode="after")
    def _sum(self) -> ConcentrateConfig:
        total = self.cu + self.fe + self.s + self.sio2 + self.other
        if abs(total - 1.0) > 0.02:
            raise ValueError(f"concentrate fractions add up to {total:.3f}, not 1")
        return self


class OrganicsConfig(Section):
    c: Fraction
    h: Fraction
    o: Fraction = 0.0
    lhv_mj_per_kg: float = Field(gt=0, le=60)


class RecycledStreamConfig(Section):
    """Composition of one recycled stream (mass fractions; the rest is inert oxides/glass)."""

    name: StreamName
    rate_tag: TagId
    cu_metal: Fraction = 0.0
    fe_metal: Fraction = 0.0
    al_metal: Fraction = 0.0
    sio2: Fraction = 0.0
    organics: Fraction = 0.0
    moisture: Fraction = 0.0
    organic_matter: OrganicsConfig = OrganicsConfig(c=0.62, h=0.06, o=0.12, lhv_mj_per_kg=28.0)

    @model_validator(mode="after")
    def _sum(self) -> RecycledStreamConfig:
        total = (
            self.cu_metal
            + self.fe_metal
            + self.al_metal
            + self.sio2
            + self.organics
            + self.moisture
        )
        if total > 1.0 + 1e-9:
            raise ValueError(f"stream {self.name}: fractions add up to {total:.3f} > 1")
        return self


class CoolingCircuit(Section):
    name: StreamName
    flow_tag: TagId
    t_in_tag: TagId
    t_out_tag: TagId


class HeatBalanceConfig(KpiSectionBase):
    conc_feed_tag: TagId
    o2_flow_tag: TagId
    o2_purity_tag: TagId
    air_flow_tag: TagId
    fuel_flow_tag: TagId
    matte_grade_tag: TagId
    matte_temp_tag: TagId
    slag_temp_tag: TagId
    offgas_temp_tag: TagId
    concentrate: ConcentrateConfig
    fuel: OrganicsConfig = OrganicsConfig(c=0.854, h=0.12, o=0.026, lhv_mj_per_kg=40.4)
    recycled: list[RecycledStreamConfig] = []
    cooling_circuit: list[CoolingCircuit] = []
    shell_loss_mw: float = Field(3.0, ge=0)
    water_density_kg_m3: float = Field(992.0, gt=0)
    water_cp_kj_kg_k: float = Field(4.18, gt=0)
    slag_fe_sio2: float = Field(1.2, gt=0)
    slag_cu: Fraction = 0.01
    fe3o4_share: Fraction = 0.15
    flux_sio2: float = Field(0.90, gt=0, le=1)
    dust_fraction: Fraction = 0.07
    excess_o2: Fraction = 0.0
    matte_heat: SensibleHeatConfig = SensibleHeatConfig(at_ref=0.82, ref_c=1250, per_k=0.00060)
    slag_heat: SensibleHeatConfig = SensibleHeatConfig(at_ref=1.45, ref_c=1280, per_k=0.00120)
    dust_heat: SensibleHeatConfig = SensibleHeatConfig(at_ref=1.00, ref_c=1300, per_k=0.00085)
    gas_heat: dict[Literal["SO2", "N2", "O2", "CO2", "H2O"], SensibleHeatConfig] = {}
    # Products leave at the target temperatures ("target": the margin is the heat left over while
    # holding them) or at the measured ones ("measured": at steady state that margin is ~0).
    temperature_basis: Literal["target", "measured"] = "target"
    # Matte grade from the assay (hours old) or from the oxygen actually blown (the grade the
    # furnace is heading for now; the assay then checks the model).
    grade_basis: Literal["assay", "oxygen"] = "assay"
    matte_target_c: float = Field(1250.0, gt=0)
    slag_target_c: float = Field(1280.0, gt=0)
    offgas_target_c: float = Field(1300.0, gt=0)
    # On-site calibration: while the furnace is steady, the balance at the measured temperatures
    # should close; what it does not explain is learnt (first-order filter, time constant
    # `calibration_tau_s`, 0 = off) and taken off the margin. Steady: matte temperature within
    # `calibration_band_k` over `calibration_window_s`.
    calibration_tau_s: float = Field(1800.0, ge=0)
    calibration_band_k: float = Field(8.0, gt=0)
    calibration_window_s: float = Field(600.0, gt=0)
    # Values for `edge-agent balance` (tag id -> value in the tag's unit); live tags override.
    operating_point: dict[str, float] = {}

    @model_validator(mode="after")
    def _unique_streams(self) -> HeatBalanceConfig:
        names = [r.name for r in self.recycled]
        if len(set(names)) != len(names):
            raise ValueError("recycled stream names must be unique")
        return self

    def input_tags(self) -> dict[str, str]:
        """Role -> tag for the scalar inputs of the balance."""
        return {
            "conc_feed": self.conc_feed_tag,
            "o2_flow": self.o2_flow_tag,
            "o2_purity": self.o2_purity_tag,
            "air_flow": self.air_flow_tag,
            "fuel_flow": self.fuel_flow_tag,
            "matte_grade": self.matte_grade_tag,
            "matte_temp": self.matte_temp_tag,
            "slag_temp": self.slag_temp_tag,
            "offgas_temp": self.offgas_temp_tag,
        }

    def referenced_tags(self) -> list[tuple[str, str]]:
        refs = [(f"{role}_tag", tag) for role, tag in self.input_tags().items()]
        refs += [(f"recycled.{i}.rate_tag", r.rate_tag) for i, r in enumerate(self.recycled)]
        for i, c in enumerate(self.cooling_circuit):
            refs += [
                (f"cooling_circuit.{i}.flow_tag", c.flow_tag),
                (f"cooling_circuit.{i}.t_in_tag", c.t_in_tag),
                (f"cooling_circuit.{i}.t_out_tag", c.t_out_tag),
            ]
        refs += [("operating_point", tag) for tag in self.operating_point]
        return refs


class SetpointLimits(Section):
    """Where a recommendation may go: clamped to [min, max], at most `max_step` per advice."""

    setpoint_tag: TagId
    measured_tag: TagId | None = None
    min: float
    max: float
    max_step: float = Field(gt=0)

    @model_validator(mode="after")
    def _order(self) -> SetpointLimits:
        if self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class FeedSetpoint(SetpointLimits):
    stream: StreamName


class OxygenSetpoint(SetpointLimits):
    capacity_nm3h: float = Field(gt=0)


class AdvisorConfig(KpiSectionBase):
    policy: Literal["hold_matte_grade", "hold_oxygen"] = "hold_matte_grade"
    reserve_mw: float = Field(3.0, ge=0)
    running_tag: TagId
    steady_window_s: float = Field(600.0, gt=0)
    steady_tolerance: Fraction = 0.05  # (max - min) / mean of the concentrate feed rate
    deficit_order: list[Literal["oxygen", "fuel"]] = ["oxygen", "fuel"]
    feed: list[FeedSetpoint] = []
    fuel: SetpointLimits | None = None
    oxygen: OxygenSetpoint | None = None
    derivative_step_tph: float = Field(1.0, gt=0)

    def referenced_tags(self) -> list[tuple[str, str]]:
        refs = [("running_tag", self.running_tag)]
        for i, f in enumerate(self.feed):
            refs.append((f"feed.{i}.setpoint_tag", f.setpoint_tag))
            if f.measured_tag:
                refs.append((f"feed.{i}.measured_tag", f.measured_tag))
        for key, sp in (("fuel", self.fuel), ("oxygen", self.oxygen)):
            if sp is not None:
                refs.append((f"{key}.setpoint_tag", sp.setpoint_tag))
                if sp.measured_tag:
                    refs.append((f"{key}.measured_tag", sp.measured_tag))
        return refs


class Co2Fuel(Section):
    """A fuel flow and its emission factor: t CO2 per t (mass flows) or kg per Nm³ (gas)."""

    name: StreamName
    tag: TagId
    t_co2_per_t: float | None = Field(None, gt=0)
    kg_co2_per_nm3: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one_factor(self) -> Co2Fuel:
        if (self.t_co2_per_t is None) == (self.kg_co2_per_nm3 is None):
            raise ValueError(f"fuel {self.name}: give exactly one of t_co2_per_t, kg_co2_per_nm3")
        return self


class Co2Config(KpiSectionBase):
    fuel: list[Co2Fuel] = []
    kiln_feed_tag: TagId | None = None
    kiln_residue_tag: TagId | None = None
    burnoff_carbon: Fraction = 0.62  # C in the matter the kiln burns off (PCB resin 55-70 %)
    kiln_feed_moisture: Fraction = 0.0  # mass loss that is water, not organics

    @model_validator(mode="after")
    def _kiln_pair(self) -> Co2Config:
        if (self.kiln_feed_tag is None) != (self.kiln_residue_tag is None):
            raise ValueError("give both kiln_feed_tag and kiln_residue_tag, or neither")
        return self

    def referenced_tags(self) -> list[tuple[str, str]]:
        refs = [(f"fuel.{i}.tag", f.tag) for i, f in enumerate(self.fuel)]
        if self.kiln_feed_tag and self.kiln_residue_tag:
            refs += [
                ("kiln_feed_tag", self.kiln_feed_tag),
                ("kiln_residue_tag", self.kiln_residue_tag),
            ]
        return refs


class KpiSection(Section):
    interval_s: float = Field(5.0, ge=0.05, le=3600)  # 50 ms .. 1 h
    recycled_ratio: RecycledRatioConfig | None = None
    heat_balance: HeatBalanceConfig | None = None
    advisor: AdvisorConfig | None = None
    co2: Co2Config | None = None

    @model_validator(mode="after")
    def _advisor_needs_balance(self) -> KpiSection:
        if self.advisor is None:
            return self
        if self.heat_balance is None:
            raise ValueError("kpi.advisor needs kpi.heat_balance (it advises from the balance)")
        known = {r.name for r in self.heat_balance.recycled}
        for i, feed in enumerate(self.advisor.feed):
            if feed.stream not in known:
                raise ValueError(
                    f"kpi.advisor.feed.{i}.stream: {feed.stream!r} is not a recycled stream of "
                    f"kpi.heat_balance (known: {sorted(known)})"
                )
        return self

    def sections(self) -> dict[str, KpiSectionBase]:
        candidates = {
            "recycled_ratio": self.recycled_ratio,
            "heat_balance": self.heat_balance,
            "advisor": self.advisor,
            "co2": self.co2,
        }
        return {name: s for name, s in candidates.items() if s is not None}
