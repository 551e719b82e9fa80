"""The agent's configuration: one TOML file, validated completely before anything starts.

Every section is a pydantic model with `extra="forbid"`, so a misspelt key is an error rather than
a silently ignored default. Cross-field rules (duplicate tag ids, overlapping Modbus registers,
KPIs naming unknown tags, writable tags without bounds) live on `AgentConfig`.

Secrets are never values in the file: a `SecretRef` names a file, an environment variable or a
systemd credential, and is resolved only when a connection is made.

Each later component owns its own section model here (sources and tags: acquisition; `kpi`:
process KPIs; `outbox`, `mqtt`, `influx`: delivery; `control`; `health`).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)


class Section(BaseModel):
    """Base for every config table: unknown keys are errors, models are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------------------- secrets


class SecretRef(Section):
    """Where a secret comes from; exactly one of the three.

    `credential` is a name under `$CREDENTIALS_DIRECTORY`, which systemd's LoadCredential= fills.
    """

    file: Path | None = None
    env: str | None = None
    credential: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _refuse_inline(cls, data: Any) -> Any:
        if isinstance(data, str):
            raise ValueError(
                "secrets are not written inline; give a reference: "
                '{ file = "/path" }, { env = "VAR" } or { credential = "name" }'
            )
        return data

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        given = [k for k in ("file", "env", "credential") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of file, env or credential")
        return self

    def resolve(self) -> str:
        """Read the secret now. Raises `SecretError` naming the reference, never the value."""
        if self.env is not None:
            value = os.environ.get(self.env)
            if value is None:
                raise SecretError(f"environment variable {self.env} is not set")
            return value
        if self.credential is not None:
            directory = os.environ.get("CREDENTIALS_DIRECTORY")
            if not directory:
                raise SecretError(
                    f"credential {self.credential!r}: $CREDENTIALS_DIRECTORY is not set "
                    "(run under systemd with LoadCredential=)"
                )
            path = Path(directory) / self.credential
        else:
            assert self.file is not None
            path = self.file
        try:
            return path.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise SecretError(f"cannot read secret file {path}: {exc.strerror}") from exc


class SecretError(Exception):
    """A secret reference could not be resolved."""


# ----------------------------------------------------------------------------------------- agent

LogLevel = Literal["debug", "info", "warning", "error"]


class AgentSection(Section):
    site: str = Field("site", pattern=r"^[A-Za-z0-9_-]+$")
    instance_id: str = Field("edge-01", pattern=r"^[A-Za-z0-9_-]+$")
    state_dir: Path = Path("state")
    timezone: str = "UTC"
    log_level: LogLevel = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    shutdown_timeout_s: float = Field(10.0, gt=0, le=300)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value


# --------------------------------------------------------------------------------- sources, tags


class TagBase(Section):
    """What every tag has, whatever its protocol."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")
    unit: str = ""
    description: str = ""
    writable: bool = False
    min: float | None = None
    max: float | None = None
    # How long a Good value stays usable for KPIs and the advisor (seconds; assays: hours).
    max_age_s: float = Field(30.0, gt=0)
    # Quality follows a device status tag: while (status & mask) != 0 this tag is not Good.
    quality_from: QualityFrom | None = None

    # "A writable tag needs bounds" is a cross-field rule on AgentConfig, so that its error names
    # the missing key even when other fields of the file are wrong too.

    @field_validator("max")
    @classmethod
    def _max_not_below_min(cls, value: float | None, info: ValidationInfo) -> float | None:
        low = info.data.get("min")
        if value is not None and low is not None and low > value:
            raise ValueError(f"max is below min ({low})")
        return value


class QualityFrom(Section):
    tag: str
    mask: int = Field(ge=1)
    quality: Literal["uncertain", "bad"] = "bad"


class OpcUaTag(TagBase):
    node: str = Field(min_length=1, description="node id (ns=, nsu=, i=, s=, g=, b=) or path")
    group: str = "default"

    @field_validator("node")
    @classmethod
    def _parsable_node(cls, value: str) -> str:
        from drivers.opcua_nodes import parse_node_ref  # imports asyncua: only when needed

        parse_node_ref(value)  # NodeRefError is a ValueError saying what is wrong
        return value


ModbusTable = Literal["coil", "discrete_input", "holding", "input"]
ModbusType = Literal[
    "bool", "bit", "int16", "uint16", "int32", "uint32", "int64", "uint64",
    "float32", "float64", "string",
]  # fmt: skip
_REGISTERS = {
    "bool": 1, "bit": 1, "int16": 1, "uint16": 1, "int32": 2, "uint32": 2,
    "int64": 4, "uint64": 4, "float32": 2, "float64": 4,
}  # fmt: skip


class ModbusTag(TagBase):
    unit_id: int = Field(1, ge=0, le=255)
    table: ModbusTable = "holding"
    address: int = Field(ge=0, le=65535)
    type: ModbusType = "uint16"
    byte_order: Literal["ABCD", "CDAB", "BADC", "DCBA"] = "ABCD"
    bit: int | None = Field(None, ge=0, le=15)
    length: int | None = Field(None, ge=1, le=125, description="registers, for strings")
    scale: float = 1.0
    offset: float = 0.0

    @model_validator(mode="after")
    def _shape(self) -> ModbusTag:
        if self.type == "bit" and self.bit is None:
            raise ValueError("type 'bit' needs bit = 0..15")
        if self.type == "string" and self.length is None:
            raise ValueError("type 'string' needs length (registers)")
        if self.table in ("coil", "discrete_input") and self.type != "bool":
            raise ValueError(f"table {self.table!r} holds bits: type must be 'bool'")
        return self

    @property
    def registers(self) -> int:
        """How many 16-bit registers (or bits, for coils) this tag occupies."""
        return self.length if self.type == "string" and self.length else _REGISTERS[self.type]


class SecurityConfig(Section):
    policy: Literal["None", "Basic256Sha256", "Aes128Sha256RsaOaep", "Aes256Sha256RsaPss"] = "None"
    mode: Literal["None", "Sign", "SignAndEncrypt"] = "None"
    certificate: Path | None = None
    private_key: Path | None = None
    trusted_server_certificates: list[Path] = []

    @model_validator(mode="after")
    def _consistent(self) -> SecurityConfig:
        if (self.policy == "None") != (self.mode == "None"):
            raise ValueError("policy and mode must both be None or both be set")
        if self.policy != "None" and (self.certificate is None or self.private_key is None):
            raise ValueError("a security policy needs certificate and private_key")
        return self


class SourceBase(Section):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    endpoint: str
    poll_interval_s: float = Field(1.0, gt=0)
    timeout_s: float = Field(2.0, gt=0)
    enabled: bool = True


class SubscriptionGroup(Section):
    name: str
    sampling_interval_ms: float = Field(1000, ge=0)
    publishing_interval_ms: float = Field(1000, gt=0)
    queue_size: int = Field(1, ge=1)
    deadband: Literal["none", "absolute", "percent"] = "none"
    deadband_value: float = Field(0.0, ge=0)


class OpcUaSource(SourceBase):
    protocol: Literal["opcua"]
    mode: Literal["poll", "subscribe"] = "poll"
    security: SecurityConfig = SecurityConfig()
    username: str | None = None
    password: SecretRef | None = None
    # X.509 user authentication (instead of username/password); distinct from the
    # application instance certificate of `security`.
    user_certificate: Path | None = None
    user_private_key: Path | None = None
    timestamps: Literal["source", "server"] = "source"
    max_nodes_per_read: int = Field(0, ge=0, description="0: use the server's limit")
    sessions: int = Field(1, ge=1, le=16)
    groups: list[SubscriptionGroup] = []
    tag: list[OpcUaTag] = []

    @model_validator(mode="after")
    def _auth(self) -> OpcUaSource:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        if (self.user_certificate is None) != (self.user_private_key is None):
            raise ValueError("user_certificate and user_private_key go together")
        if self.username is not None and self.user_certificate is not None:
            raise ValueError("choose username/password or user_certificate, not both")
        groups = {g.name for g in self.groups} | {"default"}
        for tag in self.tag:
            if tag.group not in groups:
                raise ValueError(f"tag {tag.id}: group {tag.group!r} is not among source.groups")
        return self


class ModbusSource(SourceBase):
    protocol: Literal["modbus"]
    retries: int = Field(1, ge=0, le=5)
    pacing_ms: float = Field(0.0, ge=0)
    max_gap: int = Field(8, ge=0, le=124)
    max_registers: int = Field(125, ge=1, le=125)
    tag: list[ModbusTag] = []


# ------------------------------------------------------------------------------------------ KPIs
# Owned by the KPI component; every KPI section reports the tags it reads through
# `referenced_tags()` so that AgentConfig can check them.


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
    interval_s: float = Field(5.0, gt=0)
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


# -------------------------------------------------------------------------------------- delivery


class OutboxSection(Section):
    """The on-disk queue between acquisition and the sinks (edge_agent/outbox.py)."""

    # Payload bytes kept on disk; beyond it the oldest batches are dropped (counted, logged).
    max_bytes: int = Field(1 << 30, ge=1 << 20)
    drop_policy: Literal["drop_oldest"] = "drop_oldest"
    # "full" survives power loss; "normal" survives a crash of the agent, not of the machine.
    synchronous: Literal["full", "normal"] = "full"
    # Samples held in memory while the disk refuses writes (full disk); beyond it oldest dropped.
    memory_buffer_samples: int = Field(200_000, ge=1000)
    file_name: str = Field("outbox.db", pattern=r"^[A-Za-z0-9_.-]+$")


class TlsConfig(Section):
    ca_file: Path | None = None
    certificate: Path | None = None
    private_key: Path | None = None
    insecure_skip_verify: bool = False

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if (self.certificate is None) != (self.private_key is None):
            raise ValueError("a client certificate needs both certificate and private_key")
        return self


SparkplugId = Annotated[str, Field(pattern=r"^[^+/#]+$", description="no '+', '/' or '#'")]


# ------------------------------------------------------------------ MQTT and Sparkplug sources
# What drivers/mqtt_source.py reads (docs/fleet.md). `protocol = "mqtt"` reads JSON topics (our
# own unified-namespace payloads, or any device's through a per-tag mapping); `protocol =
# "sparkplug"` reads one Sparkplug B edge node as its host application.

_SPARKPLUG_ID = r"^[^+/#]+$"
_MQTT_ENDPOINT = re.compile(r"^(mqtts?)://([^/:]+|\[[0-9a-fA-F:]+\])(?::(\d{1,5}))?/?$")
TimestampFormat = Literal["rfc3339", "unix_s", "unix_ms", "unix_us", "unix_ns"]


class MqttEndpointSettings(Section):
    """The broker connection of an MQTT or Sparkplug source.

    The attributes `host`, `port`, `backup_servers`, `tls`, `username`, `keepalive_s`,
    `max_inflight`, `reconnect_min_s` and `reconnect_max_s` are what the MQTT connection layer
    reads; `mqtt_version` is its protocol (the name `protocol` is the source's kind here).
    """

    endpoint: str
    mqtt_version: Literal["3.1.1", "5"] = "5"
    client_id: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="default: <hostname>-<source name>"
    )
    username: str | None = None
    password: SecretRef | None = None
    tls: TlsConfig | None = None
    keepalive_s: int = Field(10, ge=5, le=3600)
    qos: Literal[0, 1] = 1
    session_expiry_s: int = Field(3600, ge=0, le=4294967295, description="0: clean session")
    status_topic: str | None = Field(None, pattern=r"^[^#+]+$")
    # Messages are decoded as they arrive; this is how often they are handed on as a batch.
    poll_interval_s: float = Field(0.2, gt=0, le=10)
    timeout_s: float = Field(5.0, gt=0)

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        m = _MQTT_ENDPOINT.match(value)
        if m is None or (m.group(3) is not None and not 0 < int(m.group(3)) < 65536):
            raise ValueError("must be mqtt://host[:port] or mqtts://host[:port]")
        return value

    @model_validator(mode="after")
    def _password_needs_user(self) -> MqttEndpointSettings:
        if self.password is not None and self.username is None:
            raise ValueError("password is given without username")
        return self

    @property
    def tls_enabled(self) -> bool:
        return self.endpoint.startswith("mqtts://") or self.tls is not None

    @property
    def host(self) -> str:
        return (urlsplit(self.endpoint).hostname or "").strip("[]")

    @property
    def port(self) -> int:
        return urlsplit(self.endpoint).port or (8883 if self.tls_enabled else 1883)

    @property
    def backup_servers(self) -> list[str]:
        return []

    @property
    def max_inflight(self) -> int:
        return 20

    @property
    def reconnect_min_s(self) -> float:
        return 1.0

    @property
    def reconnect_max_s(self) -> float:
        return 5.0

    def effective_client_id(self, source_name: str) -> str:
        """Stable across restarts (a persistent session is found by it), unique per edge PC."""
        if self.client_id is not None:
            return self.client_id
        host = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:40]
        return f"{host}-{source_name}"


class JsonPoint(Section):
    """Where one tag is on the broker. Without `value_path` the payload is our own format."""

    topic: str = Field(min_length=1, pattern=r"^[^#+]+$", description="no wildcards")
    value_path: str | None = Field(None, pattern=r"^[^.]+(\.[^.]+)*$")
    timestamp_path: str | None = Field(None, pattern=r"^[^.]+(\.[^.]+)*$")
    quality_path: str | None = Field(None, pattern=r"^[^.]+(\.[^.]+)*$")
    timestamp_format: TimestampFormat = "rfc3339"

    @model_validator(mode="after")
    def _mapping(self) -> JsonPoint:
        if self.value_path is None and (self.timestamp_path or self.quality_path):
            raise ValueError(
                "timestamp_path and quality_path map a foreign payload: give value_path too "
                "(without it the payload is read as the agent's own JSON format)"
            )
        return self


class SparkplugPoint(Section):
    """One metric of the edge node: `device` omitted for a node metric; `metric` as born."""

    device: str | None = Field(None, pattern=_SPARKPLUG_ID)
    metric: str = Field(min_length=1)


class SparkplugSettings(Section):
    """Which edge node this source hosts, and how it behaves as its host application."""

    group_id: str = Field(pattern=_SPARKPLUG_ID)
    edge_node_id: str = Field(pattern=_SPARKPLUG_ID)
    # Publish STATE (retained, will = offline) as this primary host application.
    primary_host_id: str | None = Field(None, pattern=_SPARKPLUG_ID)
    # At most one rebirth request per this interval while the picture is incomplete.
    rebirth_interval_s: float = Field(5.0, gt=0)


class MqttTagMixin(TagBase):
    @model_validator(mode="after")
    def _read_only(self) -> MqttTagMixin:
        if self.writable:
            raise ValueError("MQTT and Sparkplug sources are read-only: writable must be false")
        return self


class JsonTag(MqttTagMixin, JsonPoint):
    """A tag read from a JSON topic."""


class SparkplugTag(MqttTagMixin, SparkplugPoint):
    """A tag read from a Sparkplug metric."""


class MqttSource(MqttEndpointSettings, SourceBase):
    protocol: Literal["mqtt"]
    tag: list[JsonTag] = []


class SparkplugSource(MqttEndpointSettings, SparkplugSettings, SourceBase):
    protocol: Literal["sparkplug"]
    tag: list[SparkplugTag] = []

    @model_validator(mode="after")
    def _metrics_once(self) -> SparkplugSource:
        seen: dict[tuple[str | None, str], str] = {}
        for t in self.tag:
            key = (t.device, t.metric)
            if key in seen:
                where = f"device {t.device!r}" if t.device else "the node"
                raise ValueError(
                    f"tags {seen[key]} and {t.id} both read metric {t.metric!r} of {where}"
                )
            seen[key] = t.id
        return self


Source = Annotated[
    OpcUaSource | ModbusSource | MqttSource | SparkplugSource, Field(discriminator="protocol")
]
TAG_MODELS: dict[Any, type[TagBase]] = {
    "opcua": OpcUaTag, "modbus": ModbusTag, "mqtt": JsonTag, "sparkplug": SparkplugTag,
}  # fmt: skip


class SparkplugSection(Section):
    """The Sparkplug B edge node's identity (`mqtt.format = "sparkplug_b"`; docs/sparkplug.md)."""

    group_id: SparkplugId = "smelter"
    # The edge node id; default: agent.instance_id. group_id/edge_node_id must be unique.
    edge_node_id: SparkplugId | None = None
    # Wait for this host application's STATE online=true before births; leave on offline.
    primary_host_id: SparkplugId | None = None
    # Report by exception is always on for Sparkplug, with mqtt.deadband / mqtt.deadbands.


class MqttSection(Section):
    """Broker connection (shared by the JSON and Sparkplug B formats) and JSON publishing."""

    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    backup_servers: list[str] = Field([], description="host:port, tried in turn after host")
    protocol: Literal["3.1.1", "5"] = "5"
    client_id: str | None = None
    tls: TlsConfig | None = None
    username: str | None = None
    password: SecretRef | None = None
    topic_root: str = Field("plant", pattern=r"^[^#+/][^#+]*$")
    format: Literal["json", "sparkplug_b"] = "json"
    sparkplug: SparkplugSection = SparkplugSection()
    keepalive_s: int = Field(30, ge=5, le=3600)
    reconnect_min_s: float = Field(1.0, ge=1)
    reconnect_max_s: float = Field(30.0, ge=1)
    # Unconfirmed QoS 1 messages on the wire at once: enough that the round trip is not the limit.
    max_inflight: int = Field(1000, ge=1, le=65535)
    # JSON: "tag" = one message per sample on {root}/{site}/{unit}/{name...};
    # "batch" = one message per unit per outbox batch on {root}/{site}/{unit}/_batch.
    layout: Literal["tag", "batch"] = "tag"
    retain: bool = False
    report_by_exception: bool = False
    deadband: float = Field(0.0, ge=0, description="default absolute deadband for RBE")
    deadbands: dict[str, float] = Field({}, description="tag id -> absolute deadband")
    max_samples_per_read: int = Field(5000, ge=1)

    @model_validator(mode="after")
    def _backoff(self) -> MqttSection:
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError(
                f"reconnect_min_s {self.reconnect_min_s} is above reconnect_max_s "
                f"{self.reconnect_max_s}"
            )
        if self.password is not None and self.username is None:
            raise ValueError("password given without username")
        for server in self.backup_servers:
            host, _, port = server.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"backup_servers: {server!r} is not host:port")
        return self


class InfluxSection(Section):
    api: Literal["v2", "v1"] = "v2"
    url: str = "http://127.0.0.1:8086"
    org: str | None = None
    bucket: str | None = None
    token: SecretRef | None = None
    db: str | None = None
    rp: str | None = None
    username: str | None = None
    password: SecretRef | None = None
    precision: Literal["ns", "us", "ms", "s"] = "ns"
    gzip: bool = True
    timeout_s: float = Field(10.0, gt=0)
    max_samples_per_write: int = Field(5000, ge=1)
    retry_min_s: float = Field(1.0, gt=0)
    retry_max_s: float = Field(60.0, gt=0)

    @model_validator(mode="after")
    def _api_keys(self) -> InfluxSection:
        if self.api == "v2" and not self.bucket:
            raise ValueError("api = 'v2' needs bucket")
        if self.api == "v1" and not self.db:
            raise ValueError("api = 'v1' needs db")
        if self.password is not None and self.username is None:
            raise ValueError("password given without username")
        return self


# --------------------------------------------------------------------------------------- control


# Owned by the control path (edge_agent/control, docs/control.md). Safe by default: advisory mode
# writes nothing, and even in closed loop only allowlisted tags are written, inside their bounds.

ControlOrigin = Literal["advisor", "scada"]


class ControlAllow(Section):
    """One `[[control.allow]]` entry: a setpoint the agent may write, and on whose behalf."""

    tag: str
    min: float
    max: float
    max_rate_per_min: float = Field(gt=0, description="largest total change in any 60 s window")
    origins: list[ControlOrigin] = Field(min_length=1)
    min_interval_s: float = Field(10.0, ge=0, description="per-tag rate limit between writes")
    recommendation: str | None = Field(
        None,
        pattern=r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$",
        description="tag holding the advisor's recommended value for this setpoint",
    )

    @model_validator(mode="after")
    def _consistent(self) -> ControlAllow:
        if not (math.isfinite(self.min) and math.isfinite(self.max)):
            raise ValueError(f"tag {self.tag}: min and max must be finite numbers")
        if self.min > self.max:
            raise ValueError(f"tag {self.tag}: min {self.min} is above max {self.max}")
        if len(set(self.origins)) != len(self.origins):
            raise ValueError(f"tag {self.tag}: origins {self.origins} repeat an origin")
        return self


class HeartbeatConfig(Section):
    # None: on in closed_loop mode, off in advisory mode.
    enabled: bool | None = None
    tag: str = "fsf.agent_heartbeat"
    interval_s: float = Field(1.0, gt=0, le=3600)


class ControlSection(Section):
    mode: Literal["advisory", "closed_loop"] = "advisory"
    permissive_tag: str = "fsf.advisor_permissive"
    permissive_max_age_s: float = Field(5.0, gt=0)
    heartbeat: HeartbeatConfig = HeartbeatConfig()
    # SCADA commands over MQTT ({root}/{site}/{unit}/{name}/set); need [mqtt].
    commands: bool = True
    command_max_age_s: float = Field(10.0, gt=0)
    max_clock_skew_s: float = Field(2.0, ge=0)
    max_payload_bytes: int = Field(1024, ge=64, le=65536)
    # How often the advisor's recommendations are considered for writing (closed_loop only).
    advisor_interval_s: float = Field(5.0, gt=0)
    write_timeout_s: float = Field(3.0, gt=0)
    readback_timeout_s: float = Field(5.0, gt=0)
    allow: list[ControlAllow] = []

    @property
    def heartbeat_on(self) -> bool:
        if self.heartbeat.enabled is not None:
            return self.heartbeat.enabled
        return self.mode == "closed_loop"

    @model_validator(mode="after")
    def _unique_allow(self) -> ControlSection:
        seen: set[str] = set()
        for i, entry in enumerate(self.allow):
            if entry.tag in seen:
                raise ValueError(f"allow[{i}]: tag {entry.tag!r} is allowlisted twice")
            seen.add(entry.tag)
        return self


# ---------------------------------------------------------------------------------------- health


class HealthSection(Section):
    """The local HTTP endpoint (/healthz, /metrics) and the watchdog's patience."""

    enabled: bool = True
    listen: str = Field(
        "127.0.0.1:9108", pattern=r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]*):[0-9]{1,5}$"
    )
    # A source or sink loop that completes no cycle for this long is hung: the systemd watchdog
    # heartbeat stops (and systemd restarts the agent WatchdogSec= later). Longer than any
    # reconnect backoff, so that a device that is merely down never triggers a restart.
    stall_after_s: float = Field(120.0, gt=0)


# ------------------------------------------------------------------------------------ whole file


class AgentConfig(Section):
    agent: AgentSection = AgentSection()
    source: list[Source] = []
    kpi: KpiSection = KpiSection()
    outbox: OutboxSection = OutboxSection()
    mqtt: MqttSection | None = None
    influx: InfluxSection | None = None
    control: ControlSection = ControlSection()
    health: HealthSection = HealthSection()

    def tags(self) -> dict[str, TagBase]:
        return {t.id: t for s in self.source for t in s.tag}

    @model_validator(mode="after")
    def _cross_field_rules(self) -> AgentConfig:
        sources = [
            _SourceView(("source", i), src.name, isinstance(src, ModbusSource), [
                _TagView(("source", i, "tag", j), t.id, t) for j, t in enumerate(src.tag)
            ])
            for i, src in enumerate(self.source)
        ]  # fmt: skip
        violations = _check_rules(sources, self.kpi.sections(), self.control)
        if violations:
            raise RuleViolations(violations)
        return self


# ------------------------------------------------------------------------------ cross-field rules
# They run twice: as AgentConfig's validator (so no invalid AgentConfig can exist), and on the raw
# TOML data when field validation failed (pydantic skips model validators then, but an operator
# wants every problem of the file in one go). Each violation carries the exact key path.

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class RuleViolation:
    """One broken cross-field rule. `loc` indexes the raw data (list positions, not names)."""

    loc: Loc
    message: str
    value: Any


class RuleViolations(ValueError):
    """Raised by AgentConfig's validator; carries the violations with their locations."""

    def __init__(self, violations: list[RuleViolation]) -> None:
        self.violations = violations
        super().__init__("; ".join(f"{'.'.join(map(str, v.loc))}: {v.message}" for v in violations))


@dataclass(frozen=True)
class _TagView:
    loc: Loc
    id: Any
    tag: TagBase | None  # None: the entry itself is invalid (its errors are reported already)


@dataclass(frozen=True)
class _SourceView:
    loc: Loc
    name: Any
    modbus: bool
    tags: list[_TagView]


def raw_rule_violations(data: Any) -> list[RuleViolation]:
    """The cross-field rules over raw (possibly partly invalid) data: what can be checked is."""
    if not isinstance(data, dict):
        return []
    raw_sources = data.get("source")
    sources: list[_SourceView] = []
    for i, src in enumerate(raw_sources if isinstance(raw_sources, list) else []):
        if not isinstance(src, dict):
            continue
        model = TAG_MODELS.get(src.get("protocol"), OpcUaTag)
        raw_tags = src.get("tag")
        tags = [
            _TagView(("source", i, "tag", j), t.get("id"), _valid_or_none(model, t))
            for j, t in enumerate(raw_tags if isinstance(raw_tags, list) else [])
            if isinstance(t, dict)
        ]
        sources.append(_SourceView(("source", i), src.get("name"), model is ModbusTag, tags))
    kpi_sections: dict[str, KpiSectionBase] = {}
    raw_kpi = data.get("kpi")
    for name, raw in raw_kpi.items() if isinstance(raw_kpi, dict) else []:
        field = KpiSection.model_fields.get(name)
        if field is None or field.annotation is None or not isinstance(raw, dict):
            continue
        with contextlib.suppress(ValidationError):
            section = TypeAdapter(field.annotation).validate_python(raw)
            if isinstance(section, KpiSectionBase):
                kpi_sections[name] = section
    control: ControlSection | None = None
    with contextlib.suppress(ValidationError):
        control = ControlSection.model_validate(data.get("control", {}))
    return _check_rules(sources, kpi_sections, control)


def _valid_or_none(model: type[TagBase], raw: dict[str, Any]) -> TagBase | None:
    try:
        return model.model_validate(raw)
    except ValidationError:
        return None


def _check_rules(
    sources: list[_SourceView],
    kpi_sections: dict[str, KpiSectionBase],
    control: ControlSection | None = None,
) -> list[RuleViolation]:
    known = {view.id for src in sources for view in src.tags}
    found = _duplicates(sources)
    for src in sources:
        for view in src.tags:
            found.extend(_tag_rules(view, known))
        if src.modbus:
            found.extend(_overlapping_registers(src))
    for section_name, section in kpi_sections.items():
        for path, tag_id in section.referenced_tags():
            if tag_id not in known:
                loc = ("kpi", section_name, *path.split("."))
                found.append(RuleViolation(loc, "unknown tag", tag_id))
    if control is not None:
        tags = {v.id: v.tag for src in sources for v in src.tags if v.tag is not None}
        found.extend(_control_rules(control, tags))
    return found


def _duplicates(sources: list[_SourceView]) -> list[RuleViolation]:
    found: list[RuleViolation] = []
    source_names: set[Any] = set()
    tag_owner: dict[Any, Any] = {}
    for src in sources:
        if src.name in source_names:
            found.append(RuleViolation((*src.loc, "name"), "duplicate source name", src.name))
        source_names.add(src.name)
        for view in src.tags:
            if view.id in tag_owner:
                message = f"duplicate tag id (also in source {tag_owner[view.id]!r})"
                found.append(RuleViolation((*view.loc, "id"), message, view.id))
            else:
                tag_owner[view.id] = src.name
    return found


def _tag_rules(view: _TagView, known: set[Any]) -> list[RuleViolation]:
    tag = view.tag
    if tag is None:
        return []
    found: list[RuleViolation] = []
    if tag.writable:
        found.extend(
            RuleViolation((*view.loc, bound), "a writable tag needs both min and max bounds", None)
            for bound in ("min", "max")
            if getattr(tag, bound) is None
        )
    if tag.quality_from is not None and tag.quality_from.tag not in known:
        loc = (*view.loc, "quality_from", "tag")
        found.append(RuleViolation(loc, "unknown tag", tag.quality_from.tag))
    return found


def _overlapping_registers(src: _SourceView) -> list[RuleViolation]:
    spans = sorted(
        (
            (t.unit_id, t.table, t.address, t.address + t.registers - 1, t, view.loc)
            for view in src.tags
            if isinstance(t := view.tag, ModbusTag)
        ),
        key=lambda s: (s[0], s[1], s[2]),
    )
    found: list[RuleViolation] = []
    for a, b in itertools.pairwise(spans):
        if a[:2] == b[:2] and b[2] <= a[3] and not _shared_bit_register(a[4], b[4]):
            found.append(
                RuleViolation(
                    (*b[5], "address"),
                    f"overlaps tag {a[4].id!r} ({a[1]} {a[2]}..{a[3]}) on unit {a[0]}",
                    b[2],
                )
            )
    return found


def _control_rules(control: ControlSection, tags: dict[Any, TagBase]) -> list[RuleViolation]:
    """Every allowlisted tag is a configured, writable tag, and its allowlist bounds lie within the
    tag's own bounds: the allowlist can only narrow what the tag definition permits."""
    found: list[RuleViolation] = []
    for i, entry in enumerate(control.allow):
        loc: Loc = ("control", "allow", i)
        tag = tags.get(entry.tag)
        if tag is None:
            found.append(RuleViolation((*loc, "tag"), "no source defines this tag", entry.tag))
            continue
        if not tag.writable or tag.min is None or tag.max is None:
            message = "the tag is not writable = true (with min and max) in its source"
            found.append(RuleViolation((*loc, "tag"), message, entry.tag))
            continue
        for bound, value in (("min", entry.min), ("max", entry.max)):
            if value < tag.min or value > tag.max:
                message = f"lies outside the tag's own bounds [{tag.min:g}, {tag.max:g}]"
                found.append(RuleViolation((*loc, bound), message, value))
    needs_permissive = control.mode == "closed_loop" or bool(control.allow)
    if needs_permissive and control.permissive_tag not in tags:
        loc = ("control", "permissive_tag")
        found.append(RuleViolation(loc, "unknown tag", control.permissive_tag))
    if control.heartbeat_on:
        loc = ("control", "heartbeat", "tag")
        hb = tags.get(control.heartbeat.tag)
        if hb is None:
            found.append(RuleViolation(loc, "unknown tag", control.heartbeat.tag))
        elif not hb.writable:
            found.append(RuleViolation(loc, "the tag is not writable = true", hb.id))
        elif any(entry.tag == hb.id for entry in control.allow):
            found.append(RuleViolation(loc, "must not also be allowlisted", hb.id))
    return found


def _shared_bit_register(a: ModbusTag, b: ModbusTag) -> bool:
    """Several `bit` tags may share one status register; nothing else may share."""
    return a.type == "bit" and b.type == "bit" and a.address == b.address and a.bit != b.bit
