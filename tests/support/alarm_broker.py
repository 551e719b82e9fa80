"""A broker and a running agent for the alarm tests over MQTT: the Mosquitto fixture, the agent
wired as `edge-agent run` wires it, and readers of what the subscriber saw."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent import runtime
from edge_agent.config import AgentConfig
from edge_agent.supervisor import Supervisor
from tests.support.mqtt_subscriber import Subscriber
from tests.support.services import Mosquitto

ROOT = "plant/demo/_alarms"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    # Persistence: the test subscriber's session (and what is queued for it) survives a restart.
    with Mosquitto(tmp_path / "broker", extra_config=["user root", "persistence true"]) as server:
        assert isinstance(server, Mosquitto)
        yield server


@asynccontextmanager
async def running(cfg: AgentConfig) -> AsyncIterator[runtime.Agent]:
    """The agent's services under the product's supervisor, stopped as `edge-agent run` stops
    them: by stop order, a cancellation lost inside a protocol library cancelled again, all
    within the shutdown timeout. A service that cannot stop fails the test instead of hanging it."""
    agent = runtime.Agent(cfg, await runtime.open_writer(cfg))
    supervisor = Supervisor(
        runtime.build_services(agent), shutdown_timeout_s=cfg.agent.shutdown_timeout_s
    )
    supervisor.start()
    try:
        yield agent
    finally:
        clean = await supervisor.stop()
        if agent.outbox is not None:
            await agent.outbox.close()
        assert clean, f"services still running after the shutdown timeout: {supervisor.running()}"


def bodies(sub: Subscriber, topic: str) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in sub.snapshot() if m.topic == topic]


def transitions(sub: Subscriber, alarm_id: str) -> list[str]:
    return [b["transition"] for b in bodies(sub, f"{ROOT}/{alarm_id}/event")]


def publish(broker: Mosquitto, topic: str, body: dict[str, Any]) -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="test-hmi")
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        client.publish(topic, json.dumps(body), qos=1).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()
