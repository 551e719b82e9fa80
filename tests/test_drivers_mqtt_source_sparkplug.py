"""The `protocol = "sparkplug"` source on a real Mosquitto, fed by a scripted edge node (our
EdgeNode state machine on a bare paho client) that can drop a message, die or replay history."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from drivers.sparkplug.host import AWAITING_BIRTH, NODE_OFFLINE
from drivers.sparkplug.topics import Topics
from edge_agent.acquisition import SourcePoller
from edge_agent.commands.probe import probe
from edge_agent.config import AgentConfig, SparkplugSource
from edge_agent.contracts.catalogue import TagInfo
from edge_agent.contracts.samples import Quality, Sample, now_ns
from edge_agent.pipeline import SampleBus
from edge_agent.sparkplug.catalogue import Catalogue
from edge_agent.sparkplug.node import EdgeNode, Message
from edge_agent.tagstore import TagStore
from tests.support.services import Mosquitto
from tests.support.waiting import eventually

pytestmark = pytest.mark.services

GROUP, NODE = "smelter", "unit-test"
S = 1_000_000_000


class ScriptedNode:
    """An edge node under the test's control: births on demand, data, a chosen seq gap."""

    def __init__(self, port: int) -> None:
        self.node = EdgeNode(Topics(GROUP, NODE), Catalogue([TagInfo("kiln.feed_rate", "t/h")]))
        self.commands: list[str] = []
        self.rebirth = threading.Event()
        will = self.node.new_session(7)
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"n-{uuid.uuid4().hex[:6]}"
        )
        self.client.will_set(will.topic, will.payload, qos=1)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=5)
        self.client.subscribe(f"spBv1.0/{GROUP}/NCMD/{NODE}", 1)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.commands.append(msg.topic)
        self.rebirth.set()

    async def rebirth_requested(self) -> None:
        """The host asked for births (NCMD); clears the flag for the next request."""
        assert await asyncio.to_thread(self.rebirth.wait, 10), "no rebirth request (NCMD)"
        self.rebirth.clear()

    def send(self, messages: list[Message]) -> None:
        for m in messages:
            self.client.publish(m.topic, m.payload, qos=m.qos).wait_for_publish(5)

    def births(self, value: float) -> None:
        t = now_ns()
        self.send(
            self.node.births(
                {"kiln.feed_rate": Sample("kiln.feed_rate", value, Quality.GOOD, t, t)}
            )
        )

    def data(self, value: float, *, drop: bool = False, ts_ns: int | None = None) -> None:
        t = ts_ns or now_ns()
        messages = self.node.data([Sample("kiln.feed_rate", value, Quality.GOOD, t, t)])
        if not drop:
            self.send(messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Collected:
    """The bus the source publishes to: live values in the store, every batch recorded."""

    store: TagStore = field(default_factory=TagStore)
    live: list[Sample] = field(default_factory=list)
    outbox: list[Sample] = field(default_factory=list)

    async def append(self, samples: Any) -> None:
        self.outbox.extend(samples)

    def value(self, tag: str = "kiln.feed_rate") -> Any:
        s = self.store.get(tag)
        return None if s is None else (s.value, s.quality, s.reason)


def source(port: int, **extra: Any) -> SparkplugSource:
    return SparkplugSource.model_validate({
        "name": "kiln", "protocol": "sparkplug", "endpoint": f"mqtt://127.0.0.1:{port}",
        "group_id": GROUP, "edge_node_id": NODE, "poll_interval_s": 0.05,
        "client_id": f"plant-{uuid.uuid4().hex[:6]}", "rebirth_interval_s": 0.5,
        "tag": [{"id": "kiln.feed_rate", "device": "kiln", "metric": "feed_rate"}], **extra,
    })  # fmt: skip


@asynccontextmanager
async def hosting(src: SparkplugSource) -> AsyncIterator[Collected]:
    got = Collected()
    bus = SampleBus(got.store, got)
    task = asyncio.create_task(SourcePoller(src, bus).run())
    try:
        yield got
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def wait_value(got: Collected, expected: Callable[[Any], bool], what: str) -> None:
    await eventually(lambda: expected(got.value()), 10, what)


async def test_seq_gap_requests_a_rebirth_and_the_source_recovers(mosquitto: Mosquitto) -> None:
    node = ScriptedNode(mosquitto.port)
    try:
        async with hosting(source(mosquitto.port)) as got:
            await wait_value(got, lambda v: v is not None and v[2] == AWAITING_BIRTH, "awaiting")
            await node.rebirth_requested()  # asked for births on connect
            node.births(8.0)
            await wait_value(got, lambda v: v == (8.0, Quality.GOOD, None), "born value")
            node.data(8.5, drop=True)  # lost on the way: the next one shows the gap
            node.data(9.0)
            await node.rebirth_requested()
            assert node.commands[-1] == f"spBv1.0/{GROUP}/NCMD/{NODE}"
            await wait_value(got, lambda v: v == (9.0, Quality.GOOD, None), "value after the gap")
            node.births(9.0)
            node.data(9.5)
            await wait_value(got, lambda v: v == (9.5, Quality.GOOD, None), "recovered")
    finally:
        node.close()


async def test_death_of_the_node_and_of_our_connection_are_node_offline(
    mosquitto: Mosquitto,
) -> None:
    node = ScriptedNode(mosquitto.port)
    async with hosting(source(mosquitto.port)) as got:
        await node.rebirth_requested()
        node.births(8.0)
        await wait_value(got, lambda v: v == (8.0, Quality.GOOD, None), "born")
        node.client.socket().close()  # no DISCONNECT: the broker publishes the NDEATH will
        await wait_value(got, lambda v: v == (None, Quality.BAD, NODE_OFFLINE), "NDEATH")
        node.client.loop_stop()

        node = ScriptedNode(mosquitto.port)
        node.births(8.2)
        await wait_value(got, lambda v: v == (8.2, Quality.GOOD, None), "reborn")
        mosquitto.stop(kill=True)  # our own connection: the node cannot be heard any more
        await wait_value(got, lambda v: v == (None, Quality.BAD, NODE_OFFLINE), "broker lost")
    node.client.loop_stop()


async def test_historical_metrics_reach_the_outbox_but_not_the_live_value(
    mosquitto: Mosquitto,
) -> None:
    node = ScriptedNode(mosquitto.port)
    try:
        async with hosting(source(mosquitto.port)) as got:
            await node.rebirth_requested()
            node.births(9.0)
            await wait_value(got, lambda v: v == (9.0, Quality.GOOD, None), "born")
            past = now_ns() - 120 * S  # produced before this session's births: historical
            for i in range(3):
                node.data(5.0 + i, ts_ns=past + i * S)
            await eventually(
                lambda: len([s for s in got.outbox if s.value in (5.0, 6.0, 7.0)]) == 3, 10,
                "history in the outbox",
            )  # fmt: skip
            history = [s for s in got.outbox if s.value in (5.0, 6.0, 7.0)]
            assert [s.source_ns // 1_000_000 for s in history] == [
                (past + i * S) // 1_000_000 for i in range(3)
            ]
            assert got.value() == (9.0, Quality.GOOD, None)  # the live value did not move
    finally:
        node.close()


async def test_primary_host_state_is_retained_and_ends_offline(mosquitto: Mosquitto) -> None:
    seen: list[dict[str, Any]] = []
    watcher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="watcher")
    watcher.on_message = lambda c, u, m: seen.append(json.loads(m.payload))
    watcher.connect("127.0.0.1", mosquitto.port)
    watcher.subscribe("spBv1.0/STATE/plant", 1)
    watcher.loop_start()
    try:
        async with hosting(source(mosquitto.port, primary_host_id="plant")):
            await eventually(lambda: seen and seen[-1]["online"] is True, 10, "STATE online")
        await eventually(lambda: seen[-1]["online"] is False, 10, "STATE offline")
        assert seen[-1]["timestamp"] == seen[-2]["timestamp"]  # same session, same timestamp
    finally:
        watcher.disconnect()
        watcher.loop_stop()


async def test_status_topic_down_makes_the_tags_offline_and_up_asks_for_births(
    mosquitto: Mosquitto,
) -> None:
    node = ScriptedNode(mosquitto.port)
    bridge = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bridge-notice")
    bridge.connect("127.0.0.1", mosquitto.port)
    bridge.loop_start()
    try:
        async with hosting(source(mosquitto.port, status_topic="bridges/unit/state")) as got:
            await node.rebirth_requested()
            node.births(8.0)
            await wait_value(got, lambda v: v == (8.0, Quality.GOOD, None), "born")
            bridge.publish("bridges/unit/state", b"0", qos=1, retain=True).wait_for_publish(5)
            await wait_value(got, lambda v: v == (None, Quality.BAD, NODE_OFFLINE), "offline")
            bridge.publish("bridges/unit/state", b"1", qos=1, retain=True).wait_for_publish(5)
            await node.rebirth_requested()
            node.births(8.0)
            await wait_value(got, lambda v: v == (8.0, Quality.GOOD, None), "back")
    finally:
        bridge.disconnect()
        bridge.loop_stop()
        node.close()


async def test_probe_waits_for_the_births_and_reports_each_tag(mosquitto: Mosquitto) -> None:
    node = ScriptedNode(mosquitto.port)
    src = source(mosquitto.port)
    doc = src.model_dump(mode="json", exclude_none=True)
    doc["tag"].append({"id": "kiln.nope", "device": "kiln", "metric": "nope"})
    cfg = AgentConfig.model_validate({"source": [doc]})
    try:
        answered = asyncio.create_task(probe(cfg, errors := []))
        await node.rebirth_requested()  # the probe connected and asked for births
        node.births(8.75)
        rows = {r.sample.tag: r.sample for r in await answered}
        assert errors == []
        assert (rows["kiln.feed_rate"].value, rows["kiln.feed_rate"].quality) == (
            8.75,
            Quality.GOOD,
        )
        assert rows["kiln.nope"].reason == "metric_not_in_birth"
    finally:
        node.close()
