"""MQTT as a source: JSON topics (`protocol = "mqtt"`) and one Sparkplug B edge node
(`protocol = "sparkplug"`, this agent as its host application).

Both are push sources behind the pull-shaped `Driver` contract: messages arrive on the MQTT
client's callbacks (on the loop) and are decoded there into pending samples; the acquisition
loop's `read()` takes what arrived since the last call (`poll_interval_s` is the batching
interval, not a sampling rate). `read()` raises `DriverConnectionError` once the broker is gone,
so acquisition marks every tag Bad and reconnects. Samples a Sparkplug node flags as historical
come out of `drain_history()` instead: they are for the outbox, never the latest value.

The connection is the shared layer's (`drivers/mqtt_client.py`), with a persistent session so
that the broker keeps what arrives while the agent is away. `status_topic` is an optional
retained liveness topic (our JSON sink's `…/status` `online`/`offline`, a Mosquitto bridge's
notification `1`/`0`) whose "down" makes every tag Bad `node_offline` at once, instead of values
that silently stop changing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog

from drivers import json_batch, json_mapping
from drivers.base import DriverConnectionError, WriteRefused
from drivers.json_mapping import JsonField, MappingError
from drivers.mqtt_client import ClientSettings, MqttClient, Received, Will
from drivers.sparkplug.host import AWAITING_BIRTH, NODE_OFFLINE, HostTag, NodeHost, Outgoing, Update
from drivers.sparkplug.topics import Topics, state_topic
from edge_agent.contracts.mqtt import TlsConfig
from edge_agent.contracts.samples import Quality, Sample, Value, now_ns

log = structlog.get_logger(__name__)

AWAITING_DATA = "awaiting_data"
_WAITING = {AWAITING_DATA, AWAITING_BIRTH}
_DOWN = {b"offline", b"0", b"false"}
_UP = {b"online", b"1", b"true"}


def make_client(source: Any, will: Callable[[], Will | None] | None) -> MqttClient:
    """The shared connection layer's client for a source: its broker, a stable client id, a
    persistent session, TLS for `mqtts://` (system CAs unless `tls` says otherwise)."""
    tls = source.tls if source.tls is not None else (TlsConfig() if source.tls_enabled else None)
    settings = ClientSettings(
        host=source.host, port=source.port, protocol=source.mqtt_version, tls=tls,
        username=source.username, keepalive_s=source.keepalive_s, max_inflight=20,
        reconnect_min_s=1.0, reconnect_max_s=5.0,
    )  # fmt: skip
    password = source.password.resolve() if source.password is not None else None
    return MqttClient(
        settings, client_id=source.effective_client_id(source.name), password=password,
        will=will, name=f"source.{source.name}", session_expiry_s=source.session_expiry_s,
    )  # fmt: skip


ClientFactory = Callable[[Any, Callable[[], Will | None] | None], MqttClient]


class NodeUnreachable(DriverConnectionError):
    """Our broker connection is gone: the edge node's tags cannot be heard."""

    reason = NODE_OFFLINE


class _Problems:
    """Loud on the first problem of a kind, quiet on repeats, loud again after recovery."""

    def __init__(self, bound: Any) -> None:
        self.log = bound
        self.seen: set[str] = set()

    def report(self, kind: str, message: str, **fields: Any) -> None:
        loud = kind not in self.seen
        self.seen.add(kind)
        (self.log.warning if loud else self.log.debug)(kind, problem=message, **fields)

    def clear(self, kind: str) -> None:
        self.seen.discard(kind)


class _MqttSource:
    """Connection handling shared by both sources."""

    unreachable: type[DriverConnectionError] = DriverConnectionError

    def __init__(self, source: Any, factory: ClientFactory = make_client) -> None:
        self.source = source
        self.factory = factory
        self.tag_ids = [t.id for t in source.tag]
        self.log = log.bind(source=source.name)
        self.problems = _Problems(self.log)
        self.client: MqttClient | None = None
        self.pending: list[Sample] = []
        self.history: list[Sample] = []
        self.messages = 0

    def will(self) -> Will | None:
        return None

    def topics(self) -> list[tuple[str, Callable[[Received], None]]]:
        raise NotImplementedError

    def connected(self) -> Awaitable[None] | None:
        return None

    async def connect(self) -> None:
        client = self.factory(self.source, self.will)
        for topic, handler in self.topics():
            client.subscribe(topic, handler, self.source.qos)
        if self.source.status_topic is not None:
            client.subscribe(self.source.status_topic, self._status, 1)
        client.on_connect(self.connected)
        self.client = client
        await client.start()
        try:  # subscribed too: what is retained, or queued in our session, is then on its way
            await asyncio.wait_for(client.connected.wait(), self.source.timeout_s)
            await asyncio.wait_for(client.subscribed.wait(), self.source.timeout_s)
        except TimeoutError:
            await self.close()
            raise self.unreachable(
                f"MQTT broker {self.source.endpoint} did not accept a session within "
                f"{self.source.timeout_s} s"
            ) from None

    async def read(self) -> list[Sample]:
        if self.client is None or not self.client.connected.is_set():
            raise self.unreachable(f"MQTT connection to {self.source.endpoint} is lost")
        out, self.pending = self.pending, []
        return out

    async def settled(self, timeout_s: float) -> None:
        """Wait (bounded) until every tag has heard from the broker: births, retained messages
        or queued ones. For `edge-agent probe`, which reads once; tags still silent stay Bad."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            latest = {s.tag: s for s in self.pending}
            if all(t in latest and latest[t].reason not in _WAITING for t in self.tag_ids):
                return
            await asyncio.sleep(0.02)

    def drain_history(self) -> list[Sample]:
        out, self.history = self.history, []
        return out

    async def write(self, tag_id: str, value: Value) -> None:
        raise WriteRefused(f"source {self.source.name} reads from MQTT and has no write path")

    async def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            if client.connected.is_set():
                await self.leaving(client)
            await client.close()

    async def leaving(self, client: MqttClient) -> None:
        """Last words before a clean disconnect (which suppresses the will)."""

    def send(self, out: Outgoing) -> None:
        if self.client is None:
            return
        fut = self.client.publish(out.topic, out.payload, qos=out.qos)
        fut.add_done_callback(_ignore_result)

    def _status(self, msg: Received) -> None:
        word = msg.payload.strip().lower()
        if word in _DOWN:
            self.problems.report(
                "mqtt_source_peer_offline", "status topic says the publisher is offline",
                topic=msg.topic,
            )  # fmt: skip
            self.peer_down()
        elif word in _UP:
            self.problems.clear("mqtt_source_peer_offline")
            self.peer_up()
        else:
            self.problems.report(
                "mqtt_source_bad_status", f"status payload {msg.payload[:40]!r} is neither "
                "online/1/true nor offline/0/false", topic=msg.topic,
            )  # fmt: skip

    def peer_down(self) -> None:
        acq = now_ns()
        self.pending.extend(
            Sample(t, None, Quality.BAD, acq, None, NODE_OFFLINE) for t in self.tag_ids
        )

    def peer_up(self) -> None:
        """The path to the publisher is back: values come with its next messages."""


class JsonSource(_MqttSource):
    """`protocol = "mqtt"`: JSON messages on configured topics, one or more tags per topic."""

    def __init__(self, source: Any, factory: ClientFactory = make_client) -> None:
        super().__init__(source, factory)
        self.fields: dict[str, list[JsonField]] = {}
        for t in source.tag:
            f = JsonField(t.id, t.value_path, t.timestamp_path, t.quality_path, t.timestamp_format)
            self.fields.setdefault(t.topic, []).append(f)
        self.wanted: dict[str, set[str]] = {}
        self._first = True

    def topics(self) -> list[tuple[str, Callable[[Received], None]]]:
        return [(topic, self.on_message) for topic in self.fields]

    def connected(self) -> None:
        if self._first:  # nothing retained may come: say so rather than leave the tags absent
            self._first = False
            acq = now_ns()
            self.pending[:0] = [
                Sample(t, None, Quality.BAD, acq, None, AWAITING_DATA) for t in self.tag_ids
            ]

    def on_message(self, msg: Received) -> None:
        self.messages += 1
        fields = self.fields.get(msg.topic)
        if not fields:
            return
        acq = now_ns()
        try:
            doc = json_mapping.parse(msg.topic, msg.payload)
        except MappingError as exc:
            self.problems.report("mqtt_source_bad_payload", str(exc), topic=msg.topic)
            self.pending.extend(json_mapping.bad_sample(f.tag, acq) for f in fields)
            return
        if json_batch.is_batch(doc) and all(f.native for f in fields):
            self._batch(msg.topic, doc, fields, acq)
            return
        for f in fields:
            try:
                self.pending.append(json_mapping.to_sample(msg.topic, doc, f, acq))
            except MappingError as exc:
                self.problems.report(
                    "mqtt_source_bad_payload", str(exc), topic=msg.topic, tag=f.tag
                )
                self.pending.append(json_mapping.bad_sample(f.tag, acq))

    def _batch(self, topic: str, doc: Any, fields: list[JsonField], acq: int) -> None:
        """Our sink's batch layout (either schema): each tag's samples of that batch, in order;
        a tag the batch does not carry this time is left as it is."""
        wanted = self.wanted.get(topic)
        if wanted is None:
            wanted = self.wanted[topic] = {f.tag for f in fields}
        try:
            samples, errors = json_batch.decode(topic, doc, wanted, acq)
        except MappingError as exc:
            self.problems.report("mqtt_source_bad_payload", str(exc), topic=topic)
            self.pending.extend(json_mapping.bad_sample(f.tag, acq) for f in fields)
            return
        self.pending.extend(samples)
        for tag, error in errors:
            self.problems.report("mqtt_source_bad_payload", str(error), topic=topic, tag=tag)
            self.pending.append(json_mapping.bad_sample(tag, acq))


class SparkplugSource(_MqttSource):
    """`protocol = "sparkplug"`: one edge node, read as its Sparkplug 3.0 host application."""

    unreachable = NodeUnreachable

    def __init__(self, source: Any, factory: ClientFactory = make_client) -> None:
        super().__init__(source, factory)
        tags = [HostTag(t.id, t.device, t.metric) for t in source.tag]
        self.host = NodeHost(
            Topics(source.group_id, source.edge_node_id),
            tags,
            rebirth_interval_ns=int(source.rebirth_interval_s * 1e9),
        )
        self._state_ts_ms = 0

    def will(self) -> Will | None:
        """STATE offline with this connection's timestamp, re-chosen before every attempt."""
        if self.source.primary_host_id is None:
            return None
        self._state_ts_ms = now_ns() // 1_000_000
        return Will(state_topic(self.source.primary_host_id), _state(False, self._state_ts_ms))

    def topics(self) -> list[tuple[str, Callable[[Received], None]]]:
        return [(topic, self.on_message) for topic in self.host.subscriptions()]

    async def leaving(self, client: MqttClient) -> None:
        """A clean disconnect sends no will: say STATE offline ourselves (same timestamp)."""
        if self.source.primary_host_id is None:
            return
        topic = state_topic(self.source.primary_host_id)
        with contextlib.suppress(Exception):
            publish = client.publish(topic, _state(False, self._state_ts_ms), qos=1, retain=True)
            await asyncio.wait_for(publish, 2.0)

    async def connected(self) -> None:
        """Nothing is known until births: say so, announce ourselves, ask for them."""
        self.pending.extend(self.host.awaiting(now_ns()))
        if self.client is None:
            return
        if self.source.primary_host_id is not None:
            topic = state_topic(self.source.primary_host_id)
            await self.client.publish(topic, _state(True, self._state_ts_ms), qos=1, retain=True)
        self.send(self.host.rebirth_request(now_ns()))
        self.log.info("sparkplug_rebirth_requested", node=self.source.edge_node_id, why="connect")

    def on_message(self, msg: Received) -> None:
        self.messages += 1
        update = self.host.feed(msg.topic, msg.payload, now_ns())
        self.pending.extend(update.live)
        self.history.extend(update.history)
        self._report(update)
        for out in update.outgoing:
            self.send(out)

    def _report(self, update: Update) -> None:
        if update.event is not None:
            self.log.info(
                f"sparkplug_{update.event}", node=self.source.edge_node_id,
                bd_seq=self.host.bd_seq, devices=self.host.devices_online,
            )  # fmt: skip
            if update.event == "node_birth":
                self.problems.seen.clear()
        for problem in update.problems:
            self.problems.report("sparkplug_host_problem", problem, node=self.source.edge_node_id)
        if update.outgoing:
            self.log.info(
                "sparkplug_rebirth_requested", node=self.source.edge_node_id,
                why=update.problems[-1] if update.problems else "",
            )  # fmt: skip

    def peer_down(self) -> None:
        self.pending.extend(self.host.offline(now_ns()))

    def peer_up(self) -> None:
        self.send(self.host.rebirth_request(now_ns()))  # whatever happened meanwhile is unknown


def _state(online: bool, timestamp_ms: int) -> bytes:
    return json.dumps({"online": online, "timestamp": timestamp_ms}).encode()


def _ignore_result(fut: asyncio.Future[None]) -> None:
    with contextlib.suppress(Exception, asyncio.CancelledError):
        fut.result()


def make_source(source: Any, factory: ClientFactory = make_client) -> JsonSource | SparkplugSource:
    return (
        SparkplugSource(source, factory)
        if source.protocol == "sparkplug"
        else JsonSource(source, factory)
    )


__all__: Sequence[str] = [
    "ClientFactory",
    "JsonSource",
    "NodeUnreachable",
    "SparkplugSource",
    "make_client",
    "make_source",
]
