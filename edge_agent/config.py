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

import itertools
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


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

    @model_validator(mode="after")
    def _bounds(self) -> TagBase:
        if self.writable and (self.min is None or self.max is None):
            raise ValueError(f"writable tag {self.id} needs both min and max bounds")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class QualityFrom(Section):
    tag: str
    mask: int = Field(ge=1)
    quality: Literal["uncertain", "bad"] = "bad"


class OpcUaTag(TagBase):
    node: str = Field(min_length=1, description="node id (ns=, nsu=, i=, s=, g=, b=) or path")
    group: str = "default"


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
    timestamps: Literal["source", "server"] = "source"
    max_nodes_per_read: int = Field(0, ge=0, description="0: use the server's limit")
    sessions: int = Field(1, ge=1, le=16)
    groups: list[SubscriptionGroup] = []
    tag: list[OpcUaTag] = []


class ModbusSource(SourceBase):
    protocol: Literal["modbus"]
    retries: int = Field(1, ge=0, le=5)
    pacing_ms: float = Field(0.0, ge=0)
    max_gap: int = Field(8, ge=0, le=124)
    max_registers: int = Field(125, ge=1, le=125)
    tag: list[ModbusTag] = []


Source = Annotated[OpcUaSource | ModbusSource, Field(discriminator="protocol")]


# ------------------------------------------------------------------------------------------ KPIs
# Owned by the KPI component; every KPI section reports the tags it reads through
# `referenced_tags()` so that AgentConfig can check them.


class KpiSectionBase(Section):
    enabled: bool = True

    def referenced_tags(self) -> list[tuple[str, str]]:
        """(key path inside this section, tag id) for every tag the KPI reads."""
        return []


class RecycledRatioConfig(KpiSectionBase):
    pass


class HeatBalanceConfig(KpiSectionBase):
    pass


class AdvisorConfig(KpiSectionBase):
    pass


class Co2Config(KpiSectionBase):
    pass


class KpiSection(Section):
    interval_s: float = Field(5.0, gt=0)
    recycled_ratio: RecycledRatioConfig | None = None
    heat_balance: HeatBalanceConfig | None = None
    advisor: AdvisorConfig | None = None
    co2: Co2Config | None = None

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
    max_bytes: int = Field(1 << 30, ge=1 << 20)
    drop_policy: Literal["drop_oldest"] = "drop_oldest"


class TlsConfig(Section):
    ca_file: Path | None = None
    certificate: Path | None = None
    private_key: Path | None = None
    insecure_skip_verify: bool = False


SparkplugId = Annotated[str, Field(pattern=r"^[^+/#]+$", description="no '+', '/' or '#'")]


class SparkplugSection(Section):
    """The Sparkplug B edge node's identity (`mqtt.format = "sparkplug_b"`; docs/sparkplug.md)."""

    group_id: SparkplugId = "smelter"
    # The edge node id; default: agent.instance_id. group_id/edge_node_id must be unique.
    edge_node_id: SparkplugId | None = None
    # Wait for this host application's STATE online=true before births; leave on offline.
    primary_host_id: SparkplugId | None = None
    # Absolute deadband for report by exception, default and per tag id (0: every change).
    deadband: float = Field(0.0, ge=0)
    deadbands: dict[str, float] = {}


class MqttSection(Section):
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    backup_servers: list[str] = []
    protocol: Literal["3.1.1", "5"] = "5"
    client_id: str | None = None
    tls: TlsConfig | None = None
    username: str | None = None
    password: SecretRef | None = None
    topic_root: str = "plant"
    format: Literal["json", "sparkplug_b"] = "json"
    sparkplug: SparkplugSection = SparkplugSection()
    keepalive_s: int = Field(30, ge=5, le=3600)


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

    @model_validator(mode="after")
    def _api_keys(self) -> InfluxSection:
        if self.api == "v2" and not self.bucket:
            raise ValueError("api = 'v2' needs bucket")
        if self.api == "v1" and not self.db:
            raise ValueError("api = 'v1' needs db")
        return self


# --------------------------------------------------------------------------------------- control


class ControlSection(Section):
    mode: Literal["advisory", "closed_loop"] = "advisory"


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

    def tags(self) -> dict[str, OpcUaTag | ModbusTag]:
        return {t.id: t for s in self.source for t in s.tag}

    @model_validator(mode="after")
    def _unique_names(self) -> AgentConfig:
        seen: set[str] = set()
        for src in self.source:
            if src.name in seen:
                raise ValueError(f"duplicate source name {src.name!r}")
            seen.add(src.name)
        return self

    @model_validator(mode="after")
    def _unique_tag_ids(self) -> AgentConfig:
        seen: dict[str, str] = {}
        for src in self.source:
            for tag in src.tag:
                if tag.id in seen:
                    raise ValueError(
                        f"duplicate tag id {tag.id!r} (in source {seen[tag.id]!r} "
                        f"and source {src.name!r})"
                    )
                seen[tag.id] = src.name
        return self

    @model_validator(mode="after")
    def _no_overlapping_registers(self) -> AgentConfig:
        for src in self.source:
            if not isinstance(src, ModbusSource):
                continue
            spans = sorted(
                ((t.unit_id, t.table, t.address, t.address + t.registers - 1, t) for t in src.tag),
                key=lambda s: (s[0], s[1], s[2]),
            )
            for a, b in itertools.pairwise(spans):
                if a[:2] == b[:2] and b[2] <= a[3] and not _shared_bit_register(a[4], b[4]):
                    raise ValueError(
                        f"source {src.name!r}: tag {b[4].id!r} ({b[1]} {b[2]}) overlaps tag "
                        f"{a[4].id!r} ({a[1]} {a[2]}..{a[3]}) on unit {a[0]}"
                    )
        return self

    @model_validator(mode="after")
    def _known_references(self) -> AgentConfig:
        known = self.tags().keys()
        for section_name, section in self.kpi.sections().items():
            for path, tag in section.referenced_tags():
                if tag not in known:
                    raise ValueError(f"kpi.{section_name}.{path}: unknown tag {tag!r}")
        for t in self.tags().values():
            if t.quality_from is not None and t.quality_from.tag not in known:
                raise ValueError(
                    f"tag {t.id}: quality_from names unknown tag {t.quality_from.tag!r}"
                )
        return self


def _shared_bit_register(a: ModbusTag, b: ModbusTag) -> bool:
    """Several `bit` tags may share one status register; nothing else may share."""
    return a.type == "bit" and b.type == "bit" and a.address == b.address and a.bit != b.bit
