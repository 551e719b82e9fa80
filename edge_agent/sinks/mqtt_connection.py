"""One MQTT session kept alive, with publish confirmation; no payload format in here.

`MqttConnection` is shared by the JSON sink (`mqtt_json.py`) and the Sparkplug B edge node
(`edge_agent/sparkplug/`). It wraps paho-mqtt 2.x directly rather than aiomqtt because delivery
needs two things aiomqtt hides: the PUBACK reason code (an MQTT 5 "not authorized" must not look
like success) and an MQTT 5 DISCONNECT with reason code 0x04, "disconnect with will message".

How to use it::

    conn = MqttConnection(section, client_id="edge-01", will=lambda: Will(topic, b"offline"))
    conn.on_connect(lambda: conn.publish(status_topic, b"online", retain=True))
    conn.subscribe("spBv1.0/g/NCMD/edge-01", handle)   # handle(topic, payload) on the loop
    await conn.start()              # returns at once; connects and reconnects in the background
    await conn.connected.wait()     # optional
    await conn.publish(topic, payload, qos=1)   # returns after a PUBACK with a success code
    await conn.close(with_will=False)

Semantics worth knowing:

- Network I/O runs in paho's own thread (`loop_start`); every callback a user registers runs on
  the asyncio loop. `publish()` is safe to call while disconnected: paho queues the message and
  sends it after the next CONNACK, so its future resolves then. Nothing survives a restart; that
  is the outbox's job.
- The future of a QoS 1 message resolves on PUBACK and raises `PublishRefused` when the reason
  code is a failure (MQTT 5 only; 3.1.1 has no reason codes). A QoS 0 message's future resolves
  once paho has written it to the socket: "written to an open connection", which is all QoS 0
  (and therefore Sparkplug data) can promise.
- `will` is a factory called before every connection attempt, so a Sparkplug bdSeq can advance
  with each new session. `on_connect` hooks run (on the loop) after every successful CONNACK, in
  registration order, after subscriptions have been renewed.
- Reconnects use paho's capped exponential backoff (`reconnect_min_s` .. `reconnect_max_s`) and
  rotate through `host:port` and then `backup_servers` on each failed attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent.config import MqttSection

log = structlog.get_logger("edge_agent.sinks.mqtt")

MessageHandler = Callable[[str, bytes], None]
ConnectHook = Callable[[], Awaitable[None] | None]


@dataclass(frozen=True)
class Will:
    """The last will the broker publishes if this session ends without a clean DISCONNECT."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


class MqttError(Exception):
    """Base of the errors this module raises."""


class PublishRefused(MqttError):
    """The broker answered a publish with a failure reason code (MQTT 5)."""

    def __init__(self, topic: str, reason: str, code: int) -> None:
        super().__init__(f"broker refused publish to {topic!r}: {reason} (0x{code:02x})")
        self.topic = topic
        self.reason = reason
        self.code = code


class MqttConnection:
    """A self-healing MQTT client session for the asyncio loop. See the module docstring."""

    def __init__(
        self,
        settings: MqttSection,
        *,
        client_id: str,
        will: Callable[[], Will | None] | None = None,
        password: str | None = None,
    ) -> None:
        self.settings = settings
        self.client_id = client_id
        self._will = will
        self._password = password
        self.connected = asyncio.Event()
        self.connects = 0
        self.disconnects = 0
        self.last_error = ""
        self._servers = [(settings.host, settings.port)] + [
            _host_port(s, settings.port) for s in settings.backup_servers
        ]
        self._server_index = 0
        self._attempt_failed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: mqtt.Client | None = None
        self._lock = threading.Lock()
        self._waiting: dict[int, tuple[asyncio.Future[None], str]] = {}
        self._early: dict[int, ReasonCode | None] = {}
        self._settled: list[tuple[asyncio.Future[None], str, ReasonCode | None]] = []
        self._drain_scheduled = False
        self._subscriptions: dict[str, tuple[int, MessageHandler]] = {}
        self._hooks: list[ConnectHook] = []

    @property
    def v5(self) -> bool:
        return self.settings.protocol == "5"

    @property
    def server(self) -> str:
        host, port = self._servers[self._server_index]
        return f"{host}:{port}"

    # ------------------------------------------------------------------------------ public API

    def on_connect(self, hook: ConnectHook) -> None:
        """Run `hook` on the loop after every successful (re)connect."""
        self._hooks.append(hook)

    def subscribe(self, topic: str, handler: MessageHandler, qos: int = 1) -> None:
        """Subscribe now if connected, and again after every reconnect."""
        self._subscriptions[topic] = (qos, handler)
        if self._client is not None and self._client.is_connected():
            self._client.subscribe(topic, qos)

    async def start(self) -> None:
        """Begin connecting in the background; never raises for an unreachable broker."""
        self._loop = asyncio.get_running_loop()
        self._client = self._make_client()
        host, port = self._servers[0]
        self._client.connect_async(
            host,
            port,
            keepalive=self.settings.keepalive_s,
            clean_start=True if self.v5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
        )
        self._client.loop_start()
        log.info("mqtt_connecting", server=self.server, client_id=self.client_id)

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> asyncio.Future[None]:
        """Hand a message to paho; the future resolves on confirmation (see module docstring)."""
        client, loop = self._require_running()
        fut: asyncio.Future[None] = loop.create_future()
        info = client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            reason = mqtt.error_string(info.rc)
            fut.set_exception(MqttError(f"publish to {topic!r} failed: {reason}"))
            return fut
        with self._lock:
            if info.mid in self._early:  # paho confirmed before publish() returned to us
                self._settled.append((fut, topic, self._early.pop(info.mid)))
                self._schedule_drain()
            else:
                self._waiting[info.mid] = (fut, topic)
        return fut

    async def close(self, *, with_will: bool = False) -> None:
        """Disconnect cleanly; `with_will=True` asks an MQTT 5 broker to publish the will anyway."""
        client, self._client = self._client, None
        if client is None:
            return
        props = None
        reason = None
        if with_will and self.v5:
            reason = ReasonCode(PacketTypes.DISCONNECT, identifier=0x04)
            props = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
        client.disconnect(reasoncode=reason, properties=props)
        await asyncio.to_thread(client.loop_stop)
        self.connected.clear()
        with self._lock:
            waiting, self._waiting = self._waiting, {}
        for fut, topic in waiting.values():
            if not fut.done():
                fut.set_exception(MqttError(f"connection closed before {topic!r} was confirmed"))

    # ---------------------------------------------------------------------------- paho plumbing

    def _require_running(self) -> tuple[mqtt.Client, asyncio.AbstractEventLoop]:
        if self._client is None or self._loop is None:
            raise MqttError("MqttConnection is not started (or already closed)")
        return self._client, self._loop

    def _make_client(self) -> mqtt.Client:
        s = self.settings
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=MQTTProtocolVersion.MQTTv5 if self.v5 else MQTTProtocolVersion.MQTTv311,
            reconnect_on_failure=True,
        )
        client.suppress_exceptions = True  # a bug in a callback must not kill the network thread
        client.max_inflight_messages_set(s.max_inflight)
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(int(s.reconnect_min_s), int(s.reconnect_max_s))
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
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    # The callbacks below run in paho's network thread.

    def _on_pre_connect(self, client: mqtt.Client, userdata: Any) -> None:
        if self._attempt_failed and len(self._servers) > 1:
            self._server_index = (self._server_index + 1) % len(self._servers)
            # paho has no list of servers, and its `host` setter refuses while a connection
            # attempt is under way (which is where this callback runs): set what the attempt
            # is about to use, as connect_async() itself does.
            client._host, client._port = self._servers[self._server_index]
        self._attempt_failed = True  # until a CONNACK says otherwise
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
            self.last_error = f"CONNACK {reason}"
            self._call_soon(self._log_refused, str(reason))
            return
        self._attempt_failed = False
        for topic, (qos, _) in self._subscriptions.items():
            client.subscribe(topic, qos)
        self._call_soon(self._connected)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self.last_error = f"cannot connect to {self.server}"
        self._call_soon(self._log_connect_failed)

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
        with self._lock:
            entry = self._waiting.pop(mid, None)
            if entry is None:
                self._early[mid] = reason
                return
            self._settled.append((entry[0], entry[1], reason))
            self._schedule_drain()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        for pattern, (_, handler) in self._subscriptions.items():
            if mqtt.topic_matches_sub(pattern, message.topic):
                self._call_soon(handler, message.topic, bytes(message.payload))

    def _schedule_drain(self) -> None:
        """Called with the lock held: wake the loop once for all confirmations since last time."""
        if not self._drain_scheduled:
            self._drain_scheduled = True
            self._call_soon(self._drain)

    def _call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # loop closed during shutdown
                self._loop.call_soon_threadsafe(fn, *args)

    # The methods below run on the event loop.

    def _drain(self) -> None:
        with self._lock:
            settled, self._settled = self._settled, []
            self._drain_scheduled = False
        for fut, topic, reason in settled:
            if fut.done():
                continue
            if reason is not None and reason.is_failure:
                fut.set_exception(PublishRefused(topic, str(reason), reason.value))
            else:
                fut.set_result(None)

    def _connected(self) -> None:
        self.connects += 1
        self.last_error = ""
        self.connected.set()
        log.info("mqtt_connected", server=self.server, client_id=self.client_id)
        for hook in self._hooks:
            result = hook()
            if asyncio.iscoroutine(result):
                task = asyncio.ensure_future(result)
                task.add_done_callback(_log_hook_failure)

    def _disconnected(self, reason: str) -> None:
        was_connected = self.connected.is_set()
        self.connected.clear()
        if was_connected:
            self.disconnects += 1
            self.last_error = f"disconnected: {reason}"
            log.warning("mqtt_disconnected", server=self.server, reason=reason)

    def _log_refused(self, reason: str) -> None:
        log.error("mqtt_connect_refused", server=self.server, reason=reason)

    def _log_connect_failed(self) -> None:
        log.warning("mqtt_connect_failed", server=self.server, retry="with backoff")


def _log_hook_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("mqtt_on_connect_hook_failed", error=repr(task.exception()))


def _host_port(server: str, default_port: int) -> tuple[str, int]:
    host, _, port = server.rpartition(":")
    if not host:
        return server, default_port
    return host, int(port)
