"""MQTT and Sparkplug B source settings: what `drivers/mqtt_source.py` needs to read a broker.

`protocol = "mqtt"` reads JSON topics (our own unified-namespace payloads, or any device's
through a per-tag mapping); `protocol = "sparkplug"` reads one Sparkplug B edge node as its host
application. Both connect with `endpoint = "mqtt://host:port"` (or `mqtts://`, TLS), MQTT 5 or
3.1.1, optional credentials from a secret reference, QoS 1 and a persistent session (the broker
keeps what arrives while the agent is away, for `session_expiry_s`). docs/fleet.md has examples.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from edge_agent.contracts.secrets import SecretRef
from edge_agent.contracts.section import Section
from edge_agent.contracts.source import SourceSettings, TagPoint

_ID = r"^[^+/#]+$"
_ENDPOINT = re.compile(r"^(mqtts?)://([^/:]+|\[[0-9a-fA-F:]+\])(?::(\d{1,5}))?/?$")
TimestampFormat = Literal["rfc3339", "unix_s", "unix_ms", "unix_us", "unix_ns"]


class TlsConfig(Section):
    """TLS for an MQTT connection: the sinks' `[mqtt.tls]` and a source's `tls`."""

    ca_file: Path | None = None
    certificate: Path | None = None
    private_key: Path | None = None
    insecure_skip_verify: bool = False

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if (self.certificate is None) != (self.private_key is None):
            raise ValueError("a client certificate needs both certificate and private_key")
        return self


class MqttEndpointSettings(SourceSettings):
    """The broker connection of an MQTT or Sparkplug source (`mqtt_version`: the name
    `protocol` is the source's kind here)."""

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
        m = _ENDPOINT.match(value)
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

    def effective_client_id(self, source_name: str) -> str:
        """Stable across restarts (a persistent session is found by it), unique per edge PC."""
        if self.client_id is not None:
            return self.client_id
        host = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:40]
        return f"{host}-{source_name}"


class JsonPoint(TagPoint):
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


class SparkplugPoint(TagPoint):
    """One metric of the edge node: `device` omitted for a node metric; `metric` as born."""

    device: str | None = Field(None, pattern=_ID)
    metric: str = Field(min_length=1)


class SparkplugSettings(Section):
    """Which edge node this source hosts, and how it behaves as its host application."""

    group_id: str = Field(pattern=_ID)
    edge_node_id: str = Field(pattern=_ID)
    # Publish STATE (retained, will = offline) as this primary host application.
    primary_host_id: str | None = Field(None, pattern=_ID)
    # At most one rebirth request per this interval while the picture is incomplete.
    rebirth_interval_s: float = Field(5.0, gt=0)
