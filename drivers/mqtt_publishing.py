"""Publishes on their way: the window of unconfirmed QoS 1 messages, the messages waiting for
room in it, and the confirmations crossing from paho's network thread to the asyncio loop.

Why a window of our own: paho's in-flight limit (`max_inflight_messages_set`) rescans every
message it holds on each PUBACK, so handing it a 5 000-message read cost about three times what
paho costs without it (bench/mqtt_per_tag.py). paho gets no limit of its own; at most `window`
unconfirmed QoS 1 messages are handed to it, the rest wait here in order and follow as PUBACKs
arrive. QoS 0 messages (Sparkplug data) have no confirmation to wait for and bypass the window.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from drivers.mqtt_settings import MqttError, PublishRefused

_Held = tuple[asyncio.Future[None], str, bytes, int, bool, Properties | None]


class Publications:
    """Owned by one `MqttClient`; `confirmed` runs in paho's thread, everything else on the loop."""

    def __init__(
        self,
        window: int,
        client: Callable[[], mqtt.Client | None],
        call_soon: Callable[..., None],
    ) -> None:
        self.window = window
        self.in_flight = 0  # QoS 1 messages handed to paho and not yet confirmed
        self._client = client
        self._call_soon = call_soon
        self._held: deque[_Held] = deque()
        self._lock = threading.Lock()  # guards the three below, shared with paho's thread
        self._waiting: dict[int, tuple[asyncio.Future[None], str, int]] = {}
        self._early: dict[int, ReasonCode | None] = {}
        self._settled: list[tuple[asyncio.Future[None], str, int, ReasonCode | None]] = []
        self._drain_scheduled = False

    def publish(
        self, fut: asyncio.Future[None], topic: str, payload: bytes, qos: int, retain: bool,
        properties: Properties | None,
    ) -> None:  # fmt: skip
        if qos and (self._held or self.in_flight >= self.window):
            self._held.append((fut, topic, payload, qos, retain, properties))
        else:
            self._hand(fut, topic, payload, qos, retain, properties)

    def _hand(
        self, fut: asyncio.Future[None], topic: str, payload: bytes, qos: int, retain: bool,
        properties: Properties | None,
    ) -> None:  # fmt: skip
        client = self._client()
        if client is None:
            fut.set_exception(MqttError(f"connection closed before {topic!r} was sent"))
            return
        try:
            info = client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        except (ValueError, TypeError) as exc:  # a wildcard or oversized topic, a bad payload
            fut.set_exception(MqttError(f"publish to {topic!r} refused by paho: {exc}"))
            return  # here, not raised: a held message is handed on from the drain callback
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            fut.set_exception(
                MqttError(f"publish to {topic!r} failed: {mqtt.error_string(info.rc)}")
            )
            return
        if qos:
            self.in_flight += 1
        with self._lock:
            if info.mid in self._early:  # paho confirmed before publish() returned to us
                self._settled.append((fut, topic, qos, self._early.pop(info.mid)))
                self._schedule_drain()
            else:
                self._waiting[info.mid] = (fut, topic, qos)

    def confirmed(self, mid: int, reason: ReasonCode | None) -> None:
        """In paho's thread: a PUBACK (QoS 1) or the write to the socket (QoS 0)."""
        with self._lock:
            entry = self._waiting.pop(mid, None)
            if entry is None:
                self._early[mid] = reason
                return
            self._settled.append((*entry, reason))
            self._schedule_drain()

    def _schedule_drain(self) -> None:
        """Called with the lock held: wake the loop once for all confirmations since last time."""
        if not self._drain_scheduled:
            self._drain_scheduled = True
            self._call_soon(self._drain)

    def _drain(self) -> None:
        with self._lock:
            settled, self._settled = self._settled, []
            self._drain_scheduled = False
        for fut, topic, qos, reason in settled:
            if qos:
                self.in_flight -= 1
            if fut.done():
                continue
            if reason is not None and reason.is_failure:
                fut.set_exception(PublishRefused(topic, str(reason), reason.value))
            else:
                fut.set_result(None)
        held = self._held
        while held and self.in_flight < self.window:
            self._hand(*held.popleft())

    def fail_all(self) -> None:
        """The connection is closed for good: nothing unconfirmed will be."""
        with self._lock:
            waiting, self._waiting = self._waiting, {}
        held, self._held = self._held, deque()
        unconfirmed: list[Any] = [(f, t) for f, t, _ in waiting.values()]
        unconfirmed += [(h[0], h[1]) for h in held]
        for fut, topic in unconfirmed:
            if not fut.done():
                fut.set_exception(MqttError(f"connection closed before {topic!r} was confirmed"))
