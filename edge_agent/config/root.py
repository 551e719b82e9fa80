"""The whole configuration file: one line per section, and the cross-field rules over them.

A new section goes in a module of its own in this package and is composed here with one line.
"""

from __future__ import annotations

from pydantic import model_validator

from edge_agent.config.agent import AgentSection
from edge_agent.config.alarms import AlarmConfig, AlarmsSection
from edge_agent.config.control import ControlSection
from edge_agent.config.delivery import InfluxSection, MqttSection, OutboxSection
from edge_agent.config.health import HealthSection
from edge_agent.config.kpi import KpiSection
from edge_agent.config.rules import RuleViolations, SourceView, TagView, check_rules
from edge_agent.config.sources import ModbusSource, Source, TagBase, one_setting_per_bus
from edge_agent.config.web import WebSection, check_login, check_trends
from edge_agent.contracts.section import Section


class AgentConfig(Section):
    agent: AgentSection = AgentSection()
    source: list[Source] = []
    kpi: KpiSection = KpiSection()
    outbox: OutboxSection = OutboxSection()
    mqtt: MqttSection | None = None
    influx: InfluxSection | None = None
    control: ControlSection = ControlSection()
    health: HealthSection = HealthSection()
    web: WebSection = WebSection()
    alarm: list[AlarmConfig] = []
    alarms: AlarmsSection = AlarmsSection()

    def tags(self) -> dict[str, TagBase]:
        return {t.id: t for s in self.source for t in s.tag}

    @model_validator(mode="after")
    def _cross_field_rules(self) -> AgentConfig:
        sources = [
            SourceView(("source", i), src.name, isinstance(src, ModbusSource), [
                TagView(("source", i, "tag", j), t.id, t) for j, t in enumerate(src.tag)
            ], src.endpoint or getattr(src, "serial_port", None))  # a serial bus: its port
            for i, src in enumerate(self.source)
        ]  # fmt: skip
        alarms = list(enumerate(self.alarm))
        violations = check_rules(sources, self.kpi.sections(), self.control, alarms)
        if violations:
            raise RuleViolations(violations)
        one_setting_per_bus([s for s in self.source if isinstance(s, ModbusSource)])
        check_login(self.web, self.health.listen)
        check_trends(self.web, self.influx)
        return self
