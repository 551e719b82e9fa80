"""A minimal Sparkplug host application for the tests: records and decodes what an edge node
publishes (with our generated protobuf), publishes STATE, NCMD and DCMD."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from drivers.sparkplug import payload as codec
from drivers.sparkplug import sparkplug_b_pb2 as pb
from drivers.sparkplug.payload import DataType, MetricOut
from drivers.sparkplug.topics import state_topic
from edge_agent.sparkplug.primary_host import state_payload


@dataclass(frozen=True)
class Seen:
    """One received message: `verb` NBIRTH/DDATA/..., `device` for device messages."""

    topic: str
    verb: str
    device: str | None
    payload: pb.Payload
    qos: int
    retain: bool

    def metric(self, name: str) -> pb.Payload.Metric:
        for m in self.payload.metrics:
            if m.name == name:
                return m
        raise KeyError(name)

    @property
    def bd_seq(self) -> int:
        return int(self.metric("bdSeq").long_value)


class Host:
    def __init__(self, host: str, port: int, group: str, node: str) -> None:
        self.group, self.node = group, node
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"host-{uuid.uuid4().hex[:8]}"
        )
        self._client.on_connect = lambda c, *_: c.subscribe(f"spBv1.0/{group}/#", 1)
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_disconnect = lambda *_: self._subscribed.clear()
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(1, 1)
        self._address = (host, port)
        self.connect()
        self._client.loop_start()

    def connect(self) -> None:
        self._subscribed.clear()
        self._client.connect(*self._address)

    def wait_subscribed(self) -> None:
        if not self._subscribed.wait(10):
            raise TimeoutError("host subscription not confirmed")

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        parts = msg.topic.split("/")
        if parts[1] == "STATE":
            return
        seen = Seen(
            msg.topic,
            parts[2],
            parts[4] if len(parts) > 4 else None,
            codec.decode(bytes(msg.payload)),
            msg.qos,
            bool(msg.retain),
        )
        with self._lock:
            self.seen.append(seen)

    def messages(self) -> list[Seen]:
        with self._lock:
            return list(self.seen)

    def wait_until(
        self, what: str, predicate: Callable[[list[Seen]], bool], timeout_s: float = 15.0
    ) -> list[Seen]:
        """Poll the received messages until `predicate` holds (the condition is the assertion)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            got = self.messages()
            if predicate(got):
                return got
            time.sleep(0.02)
        verbs = [(s.verb, s.device, s.payload.seq) for s in self.messages()]
        raise AssertionError(f"timed out waiting for {what}; received {verbs[-30:]}")

    def wait_for(self, verb: str, count: int = 1, device: str | None = None) -> list[Seen]:
        def enough(got: list[Seen]) -> bool:
            return len([s for s in got if s.verb == verb and s.device == device]) >= count

        self.wait_until(f"{count} x {verb} {device or ''}", enough)
        return [s for s in self.messages() if s.verb == verb and s.device == device]

    def publish_state(self, online: bool, timestamp_ms: int) -> None:
        info = self._client.publish(
            state_topic("scada"), state_payload(online, timestamp_ms), qos=1, retain=True
        )
        info.wait_for_publish(5)

    def ncmd(self, name: str, value: bool = True) -> None:
        metric = MetricOut(_now_ms(), value, DataType.BOOLEAN, name=name)
        body = codec.encode(_now_ms(), [metric], 0)
        topic = f"spBv1.0/{self.group}/NCMD/{self.node}"
        self._client.publish(topic, body, qos=0).wait_for_publish(5)

    def dcmd(self, device: str, alias: int, value: float) -> None:
        metric = MetricOut(_now_ms(), value, DataType.DOUBLE, alias=alias)
        body = codec.encode(_now_ms(), [metric], 0)
        topic = f"spBv1.0/{self.group}/DCMD/{self.node}/{device}"
        self._client.publish(topic, body, qos=0).wait_for_publish(5)

    def close(self) -> None:
        self._client.disconnect()
        # paho clears its thread attribute when the network thread ends on its own after the
        # DISCONNECT; loop_stop() then trips over it.
        with contextlib.suppress(AttributeError):
            self._client.loop_stop()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


SEQUENCED = {"NBIRTH", "DBIRTH", "NDATA", "DDATA", "DDEATH"}


def assert_seq_continuous(messages: list[Seen]) -> None:
    """Every message after an NBIRTH carries the previous seq + 1, wrapping 255 -> 0."""
    previous = None
    for m in messages:
        if m.verb not in SEQUENCED:
            continue
        if m.verb == "NBIRTH":
            assert m.payload.seq == 0
        else:
            assert previous is not None, f"{m.verb} before any NBIRTH"
            assert m.payload.seq == (previous + 1) % 256, f"{m.verb} seq {m.payload.seq}"
        previous = m.payload.seq


def count(got: list[Seen], verb: str, device: str | None = None) -> int:
    return len([s for s in got if s.verb == verb and (device is None or s.device == device)])
