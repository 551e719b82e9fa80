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

Around this module, along its seams: `mqtt_settings.py` (settings, will, errors, the paho client
built from them), `mqtt_publishing.py` (the in-flight window and confirmations crossing from
paho's thread), `mqtt_inbox.py` (subscriptions and the messages they bring to the loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from drivers.backoff import Backoff, tcp_probe
from drivers.conditions import Condition
from drivers.mqtt_inbox import Inbox, MessageHandler, Subscription
from drivers.mqtt_publishing import Publications
from drivers.mqtt_settings import (
    ClientSettings,
    MqttError,
    MqttSettings,
    PublishRefused,
    Received,
    TlsSettings,
    Will,
    disconnect_args,
    host_port,
    paho_client,
)

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

ConnectHook = Callable[[], Awaitable[None] | None]


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
        self._publications = Publications(settings.max_inflight, lambda: self._client,
                                          self._call_soon)  # fmt: skip
        self._inbox = Inbox(self._call_soon)
        self._hooks: list[ConnectHook] = []

    @property
    def v5(self) -> bool:
        return self.protocol == "5"

    @property
    def in_flight(self) -> int:
        """QoS 1 messages handed to paho and not yet confirmed: at most `max_inflight`."""
        return self._publications.in_flight

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
        subscription = Subscription(qos, handler, retain_as_published)
        self._inbox.add(topic, subscription)
        if self._client is not None and self._client.is_connected():
            self._send_subscribe(self._client, topic, subscription)

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

        QoS 1 messages beyond `max_inflight` unconfirmed ones wait in the client, in order,
        not in paho (`drivers/mqtt_publishing.py` says why).
        """
        if self._client is None or self._loop is None:
            raise MqttError("MqttClient is not started (or already closed)")
        fut: asyncio.Future[None] = self._loop.create_future()
        self._publications.publish(fut, topic, payload, qos, retain, properties)
        return fut

    def next_server(self, *, with_will: bool = False) -> None:
        """Leave this server now and connect to the next one (Sparkplug "Next Server").

        `with_will=True` asks an MQTT 5 broker to publish the will as the session ends.
        """
        if self._client is None or not self._client.is_connected():
            return
        self._index = (self._index + 1) % len(self._servers)
        self._moving = True
        self._client.disconnect(*disconnect_args(with_will and self.v5))

    async def close(self, *, with_will: bool = False) -> None:
        """Disconnect cleanly; `with_will=True` asks an MQTT 5 broker to publish the will anyway.

        A caller cancelled meanwhile (a source stopping while it reconnects) still gets the
        network thread stopped, and its cancellation goes on afterwards, never swallowed.
        """
        client, self._client = self._client, None
        if client is None:
            return
        ending = asyncio.ensure_future(self._end(client, with_will))
        try:
            await asyncio.shield(ending)
        except asyncio.CancelledError:
            await asyncio.wait([ending])
            raise

    async def _end(self, client: mqtt.Client, with_will: bool) -> None:
        keeper, self._keeper = self._keeper, None
        attempt = self._attempt  # a connect() in its thread cannot be cancelled: let it end
        if keeper is not None:
            keeper.cancel()
            await asyncio.wait([keeper])  # its cancellation is its own: nothing to re-raise
        if attempt is not None and not attempt.done():
            await asyncio.wait([attempt], timeout=_CLOSE_WAITS_FOR_CONNECT_S)
        client.disconnect(*disconnect_args(with_will and self.v5))
        await asyncio.to_thread(client.loop_stop)
        self.connected.clear()
        self._publications.fail_all()

    async def __aenter__(self) -> MqttClient:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

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
        client = paho_client(
            self.settings, self.client_id, v5=self.v5,
            session_expiry_s=self.session_expiry_s, password=self._password,
        )  # fmt: skip
        client.on_pre_connect = self._on_pre_connect
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        client.on_message = lambda _client, _userdata, message: self._inbox.received(message)
        return client

    def _send_subscribe(self, client: mqtt.Client, topic: str, sub: Subscription) -> None:
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
        for topic, sub in self._inbox.subscriptions.items():
            self._send_subscribe(client, topic, sub)
        self._call_soon(self._connected)
        if not self._inbox.subscriptions:
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
        self._publications.confirmed(mid, reason)

    def _call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # loop closed during shutdown
                self._loop.call_soon_threadsafe(fn, *args)

    # The methods below run on the event loop.

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
