"""Interim: the MQTT/Sparkplug sources on today's `MqttConnection` until the shared connection
layer moves to drivers/ (then `drivers/mqtt_source.py` builds its client itself)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from drivers.mqtt_source import Received, Will
from edge_agent.config import MqttSection, MqttSource, SparkplugSource
from edge_agent.sinks import mqtt_connection as mc


class _Adapter:
    def __init__(self, conn: mc.MqttConnection) -> None:
        self.conn = conn
        self.connected = conn.connected

    def on_connect(self, hook: Callable[[], Awaitable[None] | None]) -> None:
        self.conn.on_connect(hook)

    def subscribe(self, topic: str, handler: Callable[[Received], None], qos: int = 1) -> None:
        self.conn.subscribe(topic, lambda t, p: handler(Received(t, p)), qos)

    async def start(self) -> None:
        await self.conn.start()

    def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> asyncio.Future[None]:
        return self.conn.publish(topic, payload, qos=qos, retain=retain)

    async def close(self) -> None:
        await self.conn.close()


def client_for(source: MqttSource | SparkplugSource, will: Callable[[], Will | None] | None) -> Any:
    section = MqttSection(
        host=source.host, port=source.port, protocol=source.mqtt_version,
        tls=source.tls, username=source.username, keepalive_s=source.keepalive_s,
        reconnect_min_s=1, reconnect_max_s=5,
    )  # fmt: skip
    password = source.password.resolve() if source.password is not None else None

    def legacy_will() -> mc.Will | None:
        w = will() if will is not None else None
        return None if w is None else mc.Will(w.topic, w.payload, w.qos, w.retain)

    conn = mc.MqttConnection(
        section, client_id=source.effective_client_id(source.name), will=legacy_will,
        password=password,
    )  # fmt: skip
    return _Adapter(conn)
