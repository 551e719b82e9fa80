"""Delivery: the outbox on disk, and the MQTT and InfluxDB sinks that drain it."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from edge_agent.config import addresses
from edge_agent.contracts.mqtt import TlsConfig
from edge_agent.contracts.secrets import SecretRef
from edge_agent.contracts.section import Section


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


SparkplugId = Annotated[str, Field(pattern=r"^[^+/#]+$", description="no '+', '/' or '#'")]


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
    # "batch" = one message per unit per outbox batch on {root}/{site}/_batch/{unit}.
    layout: Literal["tag", "batch"] = "tag"
    # Batch payload: 2 = "edge-agent/batch/2" (compact, default); 1 = the previous
    # "edge-agent/batch/1", kept for one release for subscribers not yet reading 2.
    batch_schema: Literal[1, 2] = 2
    retain: bool = False
    report_by_exception: bool = False
    deadband: float = Field(0.0, ge=0, description="default absolute deadband for RBE")
    deadbands: dict[str, float] = Field({}, description="tag id -> absolute deadband")
    max_samples_per_read: int = Field(5000, ge=1)

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        return addresses.host(value)

    @field_validator("backup_servers")
    @classmethod
    def _servers(cls, value: list[str]) -> list[str]:
        return [addresses.host_port(server) for server in value]

    @model_validator(mode="after")
    def _backoff(self) -> MqttSection:
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError(
                f"reconnect_min_s {self.reconnect_min_s} is above reconnect_max_s "
                f"{self.reconnect_max_s}"
            )
        if self.password is not None and self.username is None:
            raise ValueError("password given without username")
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

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return addresses.url(value, ("http", "https"))

    @model_validator(mode="after")
    def _api_keys(self) -> InfluxSection:
        if self.api == "v2" and not self.bucket:
            raise ValueError("api = 'v2' needs bucket")
        if self.api == "v1" and not self.db:
            raise ValueError("api = 'v1' needs db")
        if self.password is not None and self.username is None:
            raise ValueError("password given without username")
        return self
