"""Sources and their tags: each protocol's driver settings, plus what only the agent reads.

The protocol-level part of a source or tag (addresses, node references, security, pacing) is the
driver's contract (`edge_agent.contracts.modbus`, `.opcua`, `.mqtt`); these models extend it with
the agent's own fields (unit, description, freshness, quality from a status tag, enabled).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

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


class ModbusSource(SourceBase, ModbusSettings):
    protocol: Literal["modbus"]
    tag: list[ModbusTag] = []


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


class MqttSource(SourceBase, MqttEndpointSettings):
    protocol: Literal["mqtt"]
    tag: list[JsonTag] = []


class SparkplugSource(SourceBase, MqttEndpointSettings, SparkplugSettings):
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


Source = Annotated[
    OpcUaSource | ModbusSource | MqttSource | SparkplugSource, Field(discriminator="protocol")
]
# The tag model of each protocol, for the rules that run on raw (partly invalid) TOML.
TAG_MODELS: dict[object, type[TagBase]] = {
    "opcua": OpcUaTag, "modbus": ModbusTag, "mqtt": JsonTag, "sparkplug": SparkplugTag,
}  # fmt: skip
