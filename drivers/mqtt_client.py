"""The one MQTT connection layer: a self-healing paho-mqtt 2 session for the asyncio loop.

Everything in the agent that speaks MQTT uses `MqttClient`: the JSON sink, the Sparkplug B edge
node, the SCADA command service and the MQTT/Sparkplug sources. It wraps paho directly (not
aiomqtt) because delivery needs what aiomqtt hides: the PUBACK reason code (an MQTT 5 "not
authorized" must not look like success) and an MQTT 5 DISCONNECT with reason 0x04 ("disconnect
with will message").

Surface::

    client = MqttClient(settings, client_id="edge-01", password=resolved,
                        will=lambda: Will("site/edge-01/status", b"offline"))
    client.on_connect(hook)                 # after every CONNACK, on the loop (sync or async)
    client.subscribe("a/+/set", handler)    # handler(Received) on the loop; renewed on reconnect
    await client.start()                    # returns at once; connects in the background
    await client.connected.wait()           # optional
    await client.publish(topic, payload, qos=1)   # after a success PUBACK, else PublishRefused
    await client.close(with_will=False)
    # or: async with MqttClient(...) as client: ...

`settings` is anything with the attributes of `MqttSettings` (the agent's `[mqtt]` section, a
source's table, or `ClientSettings` here); credentials arrive resolved (`password=`), never as
references. MQTT 3.1.1 and 5 (`settings.protocol`), TLS with a CA, a client certificate or
`insecure_skip_verify`.

Semantics:

- Network I/O runs in a paho thread while a connection is up; everything a user registers runs
  on the asyncio loop. Reconnecting is ours, not paho's: one `Backoff` (drivers/backoff.py) with
  connection probes, so that after an outage of any length the session is back within about
  half a second of the broker accepting connections again. Each failed attempt moves on to the
  next of `host:port` and `backup_servers`; a broker that refused us (CONNACK failure) is not
  probed, its backoff grows.
- `publish()` is safe while disconnected: QoS 1 messages wait in paho and are sent after the
  next CONNACK, so their futures resolve then. A QoS 0 message's future resolves once it is
  written to the socket ("written to an open connection", all that QoS 0 and therefore Sparkplug
  data can promise); one published while disconnected may never resolve, so QoS 0 callers bound
  their wait by the connection (`connected`, `connects`). Nothing survives a process restart:
  durability is the outbox's job.
- `will` is a factory called before every connection attempt, so a Sparkplug bdSeq can advance
  with each session. Hooks run after subscriptions have been renewed, in registration order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from drivers.backoff import Backoff, tcp_probe
from drivers.conditions import Condition

log = logging.getLogger("drivers.mqtt")

__all__ = [
    "ClientSettings",
    "MqttClient",
    "MqttError",
    "MqttSettings",
    "PublishRefused",
    "Received",
    "TlsSettings",
    "Will",
    "host_port",
]


class TlsSettings(Protocol):
    @property
    def ca_file(self) -> Path | None: ...
    @property
    def certificate(self) -> Path | None: ...
    @property
    def private_key(self) -> Path | None: ...
    @property
    def insecure_skip_verify(self) -> bool: ...


class MqttSettings(Protocol):
    """What a connection needs; the agent's `[mqtt]` section has these attributes."""

    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def backup_servers(self) -> Sequence[str]: ...
    @property
    def protocol(self) -> str: ...  # "3.1.1" | "5"
    @property
    def tls(self) -> TlsSettings | None: ...
    @property
    def username(self) -> str | None: ...
    @property
    def keepalive_s(self) -> int: ...
    @property
    def max_inflight(self) -> int: ...
    @property
    def reconnect_min_s(self) -> float: ...
    @property
    def reconnect_max_s(self) -> float: ...


@dataclass(frozen=True)
class ClientSettings:
    """A plain `MqttSettings` for callers without a configuration section (tests, tools)."""

    host: str = "127.0.0.1"
    port: int = 1883
    backup_servers: Sequence[str] = ()
    protocol: str = "5"
    tls: TlsSettings | None = None
    username: str | None = None
    keepalive_s: int = 30
    max_inflight: int = 1000
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 30.0


@dataclass(frozen=True)
class Will:
    """The last will the broker publishes if the session ends without a clean DISCONNECT."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


@dataclass(frozen=True, slots=True)
class Received:
    """One message from a subscription."""

    topic: str
    payload: bytes
    retain: bool = False
    qos: int = 0


class MqttError(Exception):
    """Base of the errors this module raises."""


class PublishRefused(MqttError):
    """The broker answered a publish with a failure reason code (MQTT 5)."""

    def __init__(self, topic: str, reason: str, code: int) -> None:
        super().__init__(f"broker refused publish to {topic!r}: {reason} (0x{code:02x})")
        self.topic = topic
        self.reason = reason
        self.code = code


MessageHandler = Callable[[Received], None]
ConnectHook = Callable[[], Awaitable[None] | None]


@dataclass
class _Subscription:
    qos: int
    handler: MessageHandler
    retain_as_published: bool = False


@dataclass
class _Pending:
    """Publish confirmations crossing from paho's thread to the loop (guarded by `lock`)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    waiting: dict[int, tuple[asyncio.Future[None], str, int]] = field(default_factory=dict)
    early: dict[int, ReasonCode | None] = field(default_factory=dict)
    settled: list[tuple[asyncio.Future[None], str, int, ReasonCode | None]] = field(
        default_factory=list
    )
    drain_scheduled: bool = False


class MqttClient:
    """A self-healing MQTT session for the asyncio loop. See the module docstring."""

    def __init__(
        self,
        settings: MqttSettings,
        *,
        client_id: str,
        password: str | None = None,
        will: Callable[[], Will | None] | None = None,
        protocol: str | None = None,
        name: str = "mqtt",
        session_expiry_s: int = 0,
    ) -> None:
        self.settings = settings
        self.client_id = client_id
        self.protocol = protocol or settings.protocol
        # > 0: a persistent session (what a subscriber needs so that nothing published while it
        # was away is lost): MQTT 5 clean start off with this Session Expiry Interval, MQTT
        # 3.1.1 clean session off. 0: a fresh session on every connect.
        self.session_expiry_s = session_expiry_s
        self._password = password
        self._will = will
        self.connected = asyncio.Event()
        self.subscribed = asyncio.Event()  # every subscription of this session has its SUBACK
        self.connects = 0
        self.disconnects = 0
        self.last_error = ""
        self._servers = [(settings.host, settings.port)] + [
            host_port(s, settings.port) for s in settings.backup_servers
        ]
        self._index = 0
        self.backoff = Backoff(settings.reconnect_min_s, settings.reconnect_max_s)
        self._log_fields = {"client": name, "client_id": client_id}
        self.unreachable = Condition("mqtt_unreachable", self._emit)
        self.refused = Condition("mqtt_connect_refused", self._emit, level="error")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: mqtt.Client | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._attempt: asyncio.Future[None] | None = None
        self._session_over = asyncio.Event()
        self._refused = False
        self._moving = False
        self._suback_due: set[int] = set()  # paho's thread only
        self._pending = _Pending()
        self._window = settings.max_inflight  # unconfirmed QoS 1 messages handed to paho
        self._in_flight = 0
        self._held: deque[tuple[asyncio.Future[None], str, bytes, int, bool, Properties | None]]
        self._held = deque()
        self._subscriptions: dict[str, _Subscription] = {}
        self._wildcards: tuple[str, ...] = ()
        self._inbox_lock = threading.Lock()
        self._inbox: list[tuple[MessageHandler, Received]] = []
        self._inbox_scheduled = False
        self._hooks: list[ConnectHook] = []

    @property
    def v5(self) -> bool:
        return self.protocol == "5"

    @property
    def in_flight(self) -> int:
        """QoS 1 messages handed to paho and not yet confirmed: at most `max_inflight`."""
        return self._in_flight

    @property
    def server(self) -> str:
        host, port = self._servers[self._index]
        return f"{host}:{port}"

    # ------------------------------------------------------------------------------ public API

    def on_connect(self, hook: ConnectHook) -> None:
        """Run `hook` on the loop after every successful (re)connect."""
        self._hooks.append(hook)

    def subscribe(
        self,
        topic: str,
        handler: MessageHandler,
        qos: int = 1,
        *,
        retain_as_published: bool = False,
    ) -> None:
        """Subscribe now if connected, and again after every reconnect.

        `retain_as_published` (MQTT 5) keeps the retain flag of a message forwarded live, so that
        a receiver can refuse what a sender published with retain.
        """
        self._subscriptions[topic] = _Subscription(qos, handler, retain_as_published)
        if ("+" in topic or "#" in topic) and topic not in self._wildcards:
            self._wildcards = (*self._wildcards, topic)  # replaced whole: paho's thread reads it
        if self._client is not None and self._client.is_connected():
            self._send_subscribe(self._client, topic, self._subscriptions[topic])

    async def start(self) -> None:
        """Begin connecting in the background; never raises for an unreachable broker."""
        if self._keeper is not None:
            raise MqttError("MqttClient.start() called twice")
        self._loop = asyncio.get_running_loop()
        self._client = self._make_client()
        self._keeper = asyncio.create_task(self._keep_connected(), name=f"mqtt:{self.client_id}")

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> asyncio.Future[None]:
        """Hand a message to paho; the future resolves on confirmation (see module docstring).

        QoS 1 messages beyond `max_inflight` unconfirmed ones wait here, not in paho: paho's
        own in-flight limit rescans every message it holds on each PUBACK, which made a
        5 000-message read cost about three times what paho costs without it (bench/mqtt_per_tag).
        """
        if self._client is None or self._loop is None:
            raise MqttError("MqttClient is not started (or already closed)")
        fut: asyncio.Future[None] = self._loop.create_future()
        if qos and (self._held or self._in_flight >= self._window):
            self._held.append((fut, topic, payload, qos, retain, properties))
            return fut
        self._hand(fut, topic, payload, qos, retain, properties)
        return fut

    def _hand(
        self, fut: asyncio.Future[None], topic: str, payload: bytes, qos: int, retain: bool,
        properties: Properties | None,
    ) -> None:  # fmt: skip
        assert self._client is not None
        info = self._client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            fut.set_exception(
                MqttError(f"publish to {topic!r} failed: {mqtt.error_string(info.rc)}")
            )
            return
        if qos:
            self._in_flight += 1
        p = self._pending
        with p.lock:
            if info.mid in p.early:  # paho confirmed before publish() returned to us
                p.settled.append((fut, topic, qos, p.early.pop(info.mid)))
                self._schedule_drain()
            else:
                p.waiting[info.mid] = (fut, topic, qos)

    def _release(self) -> None:
        """On the loop, after confirmations: hand held messages to paho while there is room."""
        held = self._held
        while held and self._in_flight < self._window and self._client is not None:
            self._hand(*held.popleft())

    def next_server(self, *, with_will: bool = False) -> None:
        """Leave this server now and connect to the next one (Sparkplug "Next Server").

        `with_will=True` asks an MQTT 5 broker to publish the will as the session ends.
        """
        if self._client is None or not self._client.is_connected():
            return
        self._index = (self._index + 1) % len(self._servers)
        self._moving = True
        self._client.disconnect(*_disconnect_args(with_will and self.v5))

    async def close(self, *, with_will: bool = False) -> None:
        """Disconnect cleanly; `with_will=True` asks an MQTT 5 broker to publish the will anyway."""
        client, self._client = self._client, None
        keeper, self._keeper = self._keeper, None
        if client is None:
            return
        attempt = self._attempt  # a connect() in its thread cannot be cancelled: let it end
        if keeper is not None:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        if attempt is not None and not attempt.done():
            await asyncio.wait([attempt], timeout=_CLOSE_WAITS_FOR_CONNECT_S)
        client.disconnect(*_disconnect_args(with_will and self.v5))
        await asyncio.to_thread(client.loop_stop)
        self.connected.clear()
        with self._pending.lock:
            waiting, self._pending.waiting = self._pending.waiting, {}
        held, self._held = self._held, deque()
        unconfirmed = [(f, t) for f, t, _ in waiting.values()] + [(h[0], h[1]) for h in held]
        for fut, topic in unconfirmed:
            if not fut.done():
                fut.set_exception(MqttError(f"connection closed before {topic!r} was confirmed"))

    async def __aenter__(self) -> MqttClient:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.shield(self.close())

    # --------------------------------------------------------------------- the reconnect loop

    async def _keep_connected(self) -> None:
        """Connect, wait for the session to end, wait out the backoff, move on; forever."""
        assert self._client is not None
        client = self._client
        while True:
            host, port = self._servers[self._index]
            self._session_over.clear()
            self._refused = False
            self._attempt = asyncio.ensure_future(asyncio.to_thread(self._connect, host, port))
            try:
                await asyncio.shield(self._attempt)
            except Exception as exc:  # refused, unreachable, TLS handshake, DNS; never fatal here
                self.last_error = f"cannot connect to {host}:{port}: {exc}"
                self.unreachable.occurred(server=self.server, error=str(exc))
            else:
                client.loop_start()
                await self._session_over.wait()
                await asyncio.to_thread(client.loop_stop)
            finally:
                self._attempt = None
            if self.connected.is_set():
                self._disconnected("network thread ended")
            if self._moving:  # next_server(): straight on, no backoff
                self._moving = False
                continue
            if len(self._servers) > 1 and not self._had_session():
                self._index = (self._index + 1) % len(self._servers)
            await self.backoff.wait(None if self._refused else self._probe)

    async def _probe(self) -> bool:
        return await tcp_probe(*self._servers[self._index])

    def _had_session(self) -> bool:
        """True right after a session that was up (then the same server is tried first)."""
        return self.backoff.failures == 0

    def _connect(self, host: str, port: int) -> None:
        """In a worker thread: TCP (+TLS) connect and send CONNECT; CONNACK comes later."""
        assert self._client is not None
        properties = None
        persistent = self.v5 and self.session_expiry_s > 0
        clean_start = False if persistent else True if self.v5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY
        if persistent:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = self.session_expiry_s
        self._client.connect(
            host,
            port,
            keepalive=self.settings.keepalive_s,
            clean_start=clean_start,
            properties=properties,
        )

    # ---------------------------------------------------------------------------- paho plumbing

    def _make_client(self) -> mqtt.Client:
        s = self.settings
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=MQTTProtocolVersion.MQTTv5 if self.v5 else MQTTProtocolVersion.MQTTv311,
            clean_session=None if self.v5 else self.session_expiry_s == 0,
            reconnect_on_failure=False,  # ours: see _keep_connected
        )
        client.suppress_exceptions = True  # a bug in a callback must not kill the network thread
        client.max_inflight_messages_set(0)  # unlimited in paho: our window, see publish()
        client.max_queued_messages_set(0)
        if s.tls is not None:
            client.tls_set(
                ca_certs=str(s.tls.ca_file) if s.tls.ca_file else None,
                certfile=str(s.tls.certificate) if s.tls.certificate else None,
                keyfile=str(s.tls.private_key) if s.tls.private_key else None,
                cert_reqs=ssl.CERT_NONE if s.tls.insecure_skip_verify else ssl.CERT_REQUIRED,
            )
            if s.tls.insecure_skip_verify:
                client.tls_insecure_set(True)
        if s.username is not None:
            client.username_pw_set(s.username, self._password)
        client.on_pre_connect = self._on_pre_connect
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    def _send_subscribe(self, client: mqtt.Client, topic: str, sub: _Subscription) -> None:
        if self.v5:
            options = SubscribeOptions(qos=sub.qos, retainAsPublished=sub.retain_as_published)
            _, mid = client.subscribe(topic, options=options)
        else:
            _, mid = client.subscribe(topic, sub.qos)
        if mid is not None:
            self._suback_due.add(mid)

    # The callbacks below run in paho's threads.

    def _on_pre_connect(self, client: mqtt.Client, userdata: Any) -> None:
        will = self._will() if self._will is not None else None
        if will is None:
            client.will_clear()
        else:
            client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: Any,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            self._refused = True
            self.last_error = f"broker refused the connection: {reason}"
            self._call_soon(lambda: self.refused.occurred(server=self.server, reason=str(reason)))
            return
        self._suback_due.clear()
        for topic, sub in self._subscriptions.items():
            self._send_subscribe(client, topic, sub)
        self._call_soon(self._connected)
        if not self._subscriptions:
            self._call_soon(self.subscribed.set)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        refused = [str(r) for r in reasons if r.is_failure]
        if refused:
            self._call_soon(self._refusal, "mqtt_subscribe_refused", ", ".join(refused))
        self._suback_due.discard(mid)
        if not self._suback_due:
            self._call_soon(self.subscribed.set)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: Any,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._call_soon(self._disconnected, str(reason))

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason: ReasonCode | None,
        properties: Properties | None,
    ) -> None:
        p = self._pending
        with p.lock:
            entry = p.waiting.pop(mid, None)
            if entry is None:
                p.early[mid] = reason
                return
            p.settled.append((entry[0], entry[1], entry[2], reason))
            self._schedule_drain()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        received = Received(
            message.topic, bytes(message.payload), bool(message.retain), message.qos
        )
        # A topic without wildcards matches only itself: one look-up, not a scan of every
        # subscription (a JSON source may subscribe to thousands of topics).
        handlers = [self._subscriptions[p].handler for p in self._wildcards
                    if mqtt.topic_matches_sub(p, message.topic)]  # fmt: skip
        exact = self._subscriptions.get(message.topic)
        if exact is not None:
            handlers.insert(0, exact.handler)
        if not handlers:
            return
        # Messages cross to the loop in batches: one wake-up for all that arrived meanwhile,
        # not one per message (at 10 000 messages/s the wake-ups would cost more than the work).
        with self._inbox_lock:
            self._inbox.extend((h, received) for h in handlers)
            if self._inbox_scheduled:
                return
            self._inbox_scheduled = True
        self._call_soon(self._deliver)

    def _deliver(self) -> None:
        """On the loop: hand every message received since the last call to its handler."""
        with self._inbox_lock:
            inbox, self._inbox = self._inbox, []
            self._inbox_scheduled = False
        for handler, received in inbox:
            try:
                handler(received)
            except Exception:  # one handler's bug must not lose the others' messages
                log.exception("mqtt_message_handler_failed", extra={"topic": received.topic})

    def _schedule_drain(self) -> None:
        """Called with the lock held: wake the loop once for all confirmations since last time."""
        if not self._pending.drain_scheduled:
            self._pending.drain_scheduled = True
            self._call_soon(self._drain)

    def _call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # loop closed during shutdown
                self._loop.call_soon_threadsafe(fn, *args)

    # The methods below run on the event loop.

    def _drain(self) -> None:
        p = self._pending
        with p.lock:
            settled, p.settled = p.settled, []
            p.drain_scheduled = False
        for fut, topic, qos, reason in settled:
            if qos:
                self._in_flight -= 1
            if fut.done():
                continue
            if reason is not None and reason.is_failure:
                fut.set_exception(PublishRefused(topic, str(reason), reason.value))
            else:
                fut.set_result(None)
        if self._held:
            self._release()

    def _connected(self) -> None:
        self.connects += 1
        self.last_error = ""
        self.backoff.reset()
        self.connected.set()
        self.unreachable.cleared(server=self.server)
        self.refused.cleared(server=self.server)
        self._emit("info", "mqtt_connected", server=self.server)
        for hook in self._hooks:
            result = hook()
            if asyncio.iscoroutine(result):
                asyncio.ensure_future(result).add_done_callback(self._hook_done)

    def _disconnected(self, reason: str) -> None:
        self._session_over.set()
        self.subscribed.clear()
        if self.connected.is_set():
            self.connected.clear()
            if self._client is None or self._moving:  # close() or next_server(): we asked
                self._emit("info", "mqtt_disconnected", server=self.server, reason=reason)
                return
            self.disconnects += 1
            self.last_error = f"disconnected from {self.server}: {reason}"
            self._emit("warning", "mqtt_disconnected", server=self.server, reason=reason)

    def _hook_done(self, task: asyncio.Future[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._emit("error", "mqtt_on_connect_hook_failed", error=repr(task.exception()))

    def _refusal(self, event: str, reason: str) -> None:
        self._emit("error", event, server=self.server, reason=reason)

    def _emit(self, level: str, event: str, **fields: Any) -> None:
        """Through stdlib logging (drivers stand alone); the agent renders `extra` as keys."""
        log.log(logging.getLevelNamesMapping()[level.upper()], event,
                extra={**self._log_fields, **fields})  # fmt: skip


# A connect() blocked on an unanswering address holds close() this long at most (paho's own
# connect timeout is 5 s): shutdown has a bound, and the process is ending anyway.
_CLOSE_WAITS_FOR_CONNECT_S = 1.0


def _disconnect_args(with_will: bool) -> tuple[ReasonCode | None, Properties | None]:
    """MQTT 5 reason 0x04, "disconnect with will message"; otherwise a normal DISCONNECT."""
    if not with_will:
        return None, None
    props = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
    return ReasonCode(PacketTypes.DISCONNECT, identifier=0x04), props


def host_port(server: str, default_port: int) -> tuple[str, int]:
    """`host:port` or `host` as (host, port): the one parser for server lists."""
    host, sep, port = server.rpartition(":")
    if not sep or not host or not port.isdigit():
        return server, default_port
    return host, int(port)
