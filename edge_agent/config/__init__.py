"""The agent's configuration: one TOML file, validated completely before anything starts.

Every section is a pydantic model with `extra="forbid"`, so a misspelt key is an error rather than
a silently ignored default. Each section lives in a module of its own (`agent`, `sources`, `kpi`,
`delivery`, `control`, `health`), composed into `AgentConfig` by `root`; cross-field rules
(duplicate tag ids, overlapping Modbus registers, KPIs naming unknown tags, writable tags without
bounds) are `rules`; reading the file, `--set` overrides and operator-facing errors are `loader`.
The protocol-level part of sources and tags is the drivers' contract (`edge_agent.contracts`).

Secrets are never values in the file: a `SecretRef` names a file, an environment variable or a
systemd credential, and is resolved only when a connection is made.

This module is the package's face: `from edge_agent.config import X` for every public name.
"""

from edge_agent.config.agent import AgentSection, LogLevel
from edge_agent.config.control import ControlAllow, ControlOrigin, ControlSection, HeartbeatConfig
from edge_agent.config.delivery import (
    InfluxSection,
    MqttSection,
    OutboxSection,
    SparkplugId,
    SparkplugSection,
)
from edge_agent.config.health import HealthSection
from edge_agent.config.kpi import (
    AdvisorConfig,
    Co2Config,
    Co2Fuel,
    ConcentrateConfig,
    CoolingCircuit,
    FeedSetpoint,
    Fraction,
    HeatBalanceConfig,
    KpiSection,
    KpiSectionBase,
    OrganicsConfig,
    OxygenSetpoint,
    RatioStream,
    RecycledRatioConfig,
    RecycledStreamConfig,
    SensibleHeatConfig,
    SetpointLimits,
    StreamName,
    TagId,
)
from edge_agent.config.loader import ConfigError, load_config
from edge_agent.config.root import AgentConfig
from edge_agent.config.rules import Loc, RuleViolation, RuleViolations, raw_rule_violations
from edge_agent.config.sources import (
    JsonTag,
    ModbusSource,
    ModbusTag,
    MqttSource,
    OpcUaSource,
    OpcUaTag,
    QualityFrom,
    Source,
    SourceBase,
    SparkplugSource,
    SparkplugTag,
    TagBase,
)
from edge_agent.config.web import WebSection
from edge_agent.contracts.modbus import ByteOrder, ModbusTable, ModbusType
from edge_agent.contracts.mqtt import TlsConfig
from edge_agent.contracts.opcua import SecurityConfig, SubscriptionGroup
from edge_agent.contracts.secrets import SecretError, SecretRef
from edge_agent.contracts.section import Section

__all__ = [
    "AdvisorConfig",
    "AgentConfig",
    "AgentSection",
    "ByteOrder",
    "Co2Config",
    "Co2Fuel",
    "ConcentrateConfig",
    "ConfigError",
    "ControlAllow",
    "ControlOrigin",
    "ControlSection",
    "CoolingCircuit",
    "FeedSetpoint",
    "Fraction",
    "HealthSection",
    "HeartbeatConfig",
    "HeatBalanceConfig",
    "InfluxSection",
    "JsonTag",
    "KpiSection",
    "KpiSectionBase",
    "Loc",
    "LogLevel",
    "ModbusSource",
    "ModbusTable",
    "ModbusTag",
    "ModbusType",
    "MqttSection",
    "MqttSource",
    "OpcUaSource",
    "OpcUaTag",
    "OrganicsConfig",
    "OutboxSection",
    "OxygenSetpoint",
    "QualityFrom",
    "RatioStream",
    "RecycledRatioConfig",
    "RecycledStreamConfig",
    "RuleViolation",
    "RuleViolations",
    "SecretError",
    "SecretRef",
    "Section",
    "SecurityConfig",
    "SensibleHeatConfig",
    "SetpointLimits",
    "Source",
    "SourceBase",
    "SparkplugId",
    "SparkplugSection",
    "SparkplugSource",
    "SparkplugTag",
    "StreamName",
    "SubscriptionGroup",
    "TagBase",
    "TagId",
    "TlsConfig",
    "WebSection",
    "load_config",
    "raw_rule_violations",
]
