"""Sinks know their wire formats and nothing of smelting: they drain the outbox and confirm.

`sink_names(cfg)` names the outbox cursors the configured sinks read (the runtime opens the
outbox with them); `build_services(cfg, outbox, catalogue)` returns the supervised services: the
outbox's maintenance tick and one service per sink (`mqtt` for either MQTT format, `influx`). The
catalogue (units, types of every tag) is the runtime's, built once. Each sink's `SinkState` and
the outbox's status are added to the health board when one is given.
"""

from __future__ import annotations

from edge_agent.config import AgentConfig
from edge_agent.contracts.catalogue import TagCatalogue
from edge_agent.contracts.status import StatusRegistry
from edge_agent.outbox import Outbox
from edge_agent.sinks.influx import InfluxSink
from edge_agent.sinks.mqtt_json import MqttJsonSink
from edge_agent.sinks.state import OutboxStatus, SinkState
from edge_agent.supervisor import STOP_SINKS, Service

__all__ = ["build_services", "sink_names"]


def sink_names(cfg: AgentConfig) -> list[str]:
    """The outbox cursors this configuration needs (a format change keeps the `mqtt` cursor)."""
    names = []
    if cfg.mqtt is not None:
        names.append(MqttJsonSink.name)
    if cfg.influx is not None:
        names.append(InfluxSink.name)
    return names


def build_services(
    cfg: AgentConfig,
    outbox: Outbox,
    catalogue: TagCatalogue,
    board: StatusRegistry | None = None,
) -> list[Service]:
    services = [Service("outbox", outbox.run_maintenance, STOP_SINKS)]
    states: list[SinkState] = []
    if cfg.mqtt is not None and cfg.mqtt.format == "json":
        mqtt = MqttJsonSink(cfg, outbox, catalogue)
        services.append(Service(f"sink:{mqtt.name}", mqtt.run, STOP_SINKS))
        states.append(mqtt.state)
    # format = "sparkplug_b": the Sparkplug edge node (edge_agent/sparkplug) reads the same
    # `mqtt` cursor and adds its own service.
    if cfg.influx is not None:
        influx = InfluxSink(cfg, outbox)
        services.append(Service(f"sink:{influx.name}", influx.run, STOP_SINKS))
        states.append(influx.state)
    if board is not None:
        board.add(OutboxStatus(outbox.state))
        for state in states:
            board.add(state)
    return services
