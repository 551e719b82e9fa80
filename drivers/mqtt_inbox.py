"""Subscriptions and the messages they bring: routed to their handlers in paho's thread, handed
to them on the asyncio loop in batches (one wake-up for all that arrived meanwhile)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt

from drivers.mqtt_settings import Received

log = logging.getLogger("drivers.mqtt")

MessageHandler = Callable[[Received], None]


@dataclass
class Subscription:
    qos: int
    handler: MessageHandler
    retain_as_published: bool = False


class Inbox:
    """Owned by one `MqttClient`; `received` runs in paho's thread, the rest on the loop."""

    def __init__(self, call_soon: Callable[..., None]) -> None:
        self.subscriptions: dict[str, Subscription] = {}
        self._wildcards: tuple[str, ...] = ()
        self._call_soon = call_soon
        self._lock = threading.Lock()
        self._items: list[tuple[MessageHandler, Received]] = []
        self._scheduled = False

    def add(self, topic: str, subscription: Subscription) -> None:
        self.subscriptions[topic] = subscription
        if ("+" in topic or "#" in topic) and topic not in self._wildcards:
            self._wildcards = (*self._wildcards, topic)  # replaced whole: paho's thread reads it

    def received(self, message: mqtt.MQTTMessage) -> None:
        """In paho's thread: queue the message for every subscription it matches."""
        received = Received(
            message.topic, bytes(message.payload), bool(message.retain), message.qos
        )
        # A topic without wildcards matches only itself: one look-up, not a scan of every
        # subscription (a JSON source may subscribe to thousands of topics).
        handlers = [self.subscriptions[p].handler for p in self._wildcards
                    if mqtt.topic_matches_sub(p, message.topic)]  # fmt: skip
        exact = self.subscriptions.get(message.topic)
        if exact is not None:
            handlers.insert(0, exact.handler)
        if not handlers:
            return
        # Messages cross to the loop in batches: one wake-up for all that arrived meanwhile,
        # not one per message (at 10 000 messages/s the wake-ups would cost more than the work).
        with self._lock:
            self._items.extend((h, received) for h in handlers)
            if self._scheduled:
                return
            self._scheduled = True
        self._call_soon(self._deliver)

    def _deliver(self) -> None:
        """On the loop: hand every message received since the last call to its handler."""
        with self._lock:
            items, self._items = self._items, []
            self._scheduled = False
        for handler, received in items:
            try:
                handler(received)
            except Exception:  # one handler's bug must not lose the others' messages
                log.exception("mqtt_message_handler_failed", extra={"topic": received.topic})


__all__ = ["Inbox", "MessageHandler", "Subscription"]
