"""Sources and their tags: each protocol's driver settings, plus what only the agent reads.

The protocol-level part of a source or tag (addresses, node references, security, pacing) is the
driver's contract (`edge_agent.contracts.modbus`, `.opcua`, `.mqtt`); these models extend it with
the agent's own fields (unit, description, freshness, quality from a status tag, enabled).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from edge_agent.config import addresses
from edge_agent.config.plausibility import NoValueMarkers, PlausibilityLimits
from edge_agent.contracts.catalogue import TagInfo, ValueType
from edge_agent.contracts.modbus import ModbusPoint, ModbusSettings
from edge_agent.contracts.mqtt import (
    JsonPoint,
    MqttEndpointSettings,
    SparkplugPoint,
    SparkplugSettings,
)
from edge_agent.contracts.opcua import OpcUaPoint, OpcUaSettings
from edge_agent.contracts.section import Section
from edge_agent.contracts.source import SourceSettings, TagPoint


class TagBase(PlausibilityLimits, TagPoint):
    """What every tag has, whatever its protocol."""

    unit: str = ""
    description: str = ""
    # How long a Good value stays usable for KPIs and the advisor (seconds; assays: hours).
    max_age_s: float = Field(30.0, gt=0)
    # Quality follows a device status tag: while (status & mask) != 0 this tag is not Good.
    quality_from: QualityFrom | None = None

    # "A writable tag needs bounds" is a cross-field rule on AgentConfig, so that its error names
    # the missing key even when other fields of the file are wrong too.

    def value_type(self) -> ValueType:
        """What the configuration says the tag carries; "number" unless a protocol type says."""
        return "number"

    def info(self) -> TagInfo:
        """The tag's entry in the catalogue every sink is given."""
        low = self.valid_min if self.valid_min is not None else self.min
        high = self.valid_max if self.valid_max is not None else self.max
        return TagInfo(
            self.id, self.unit, self.value_type(), self.description, low, high, self.writable
        )


class QualityFrom(Section):
    tag: str
    mask: int = Field(ge=1)
    quality: Literal["uncertain", "bad"] = "bad"


class OpcUaTag(TagBase, OpcUaPoint):
    """An OPC UA tag of the agent."""


class ModbusTag(TagBase, NoValueMarkers, ModbusPoint):
    """A Modbus tag of the agent."""

    def value_type(self) -> ValueType:
        if self.type in ("bool", "bit"):
            return "boolean"
        return "string" if self.type == "string" else "number"


class SourceBase(SourceSettings):
    enabled: bool = True


class OpcUaSource(SourceBase, OpcUaSettings):
    protocol: Literal["opcua"]
    tag: list[OpcUaTag] = []

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        return addresses.url(value, ("opc.tcp",))


class ModbusSource(ModbusSettings, SourceBase):
    # ModbusSettings first: its `endpoint` (optional: serial sources have none) must win.
    protocol: Literal["modbus"]
    tag: list[ModbusTag] = []

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        return addresses.url(value, ("tcp",)) if value else value  # empty: a serial line


class _ReadOnly(TagBase):
    @model_validator(mode="after")
    def _not_writable(self) -> _ReadOnly:
        if self.writable:
            raise ValueError("MQTT and Sparkplug sources are read-only: writable must be false")
        return self


class JsonTag(_ReadOnly, JsonPoint):
    """A tag read from a JSON topic (`protocol = "mqtt"`)."""


class SparkplugTag(_ReadOnly, SparkplugPoint):
    """A tag read from a Sparkplug B metric (`protocol = "sparkplug"`)."""


class MqttSource(MqttEndpointSettings, SourceBase):  # the former's defaults win
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
                raise ValueError(f"tags {seen[key]} and {t.id} read metric {t.metric!r} of {where}")
            seen[key] = t.id
        return self


# The settings a bus has once, whichever of the sources sharing it names them.
BUS_SETTINGS = ("transport", "baudrate", "bytesize", "parity", "stopbits", "inter_frame_ms",
                "pause_between_requests_ms", "pause_after_connect_ms")  # fmt: skip


def one_setting_per_bus(sources: list[ModbusSource]) -> None:
    """Sources on one serial port or gateway share its bus, so they must agree on its settings."""
    first: dict[str, ModbusSource] = {}
    for src in sources:
        other = first.setdefault(src.link, src)
        for key in BUS_SETTINGS:
            if getattr(src, key) != getattr(other, key):
                raise ValueError(
                    f"sources {other.name} and {src.name} share a bus "
                    f"({src.serial_port or src.endpoint}) but disagree on {key} "
                    f"({getattr(other, key)!r} vs {getattr(src, key)!r}): set it alike on both"
                )


Source = Annotated[
    OpcUaSource | ModbusSource | MqttSource | SparkplugSource, Field(discriminator="protocol")
]
# The tag model of each protocol, for the rules that run on raw (partly invalid) TOML.
TAG_MODELS: dict[object, type[TagBase]] = {
    "opcua": OpcUaTag, "modbus": ModbusTag, "mqtt": JsonTag, "sparkplug": SparkplugTag,
}  # fmt: skip
