"""What an MQTT connection is made of: its settings, its will, what it delivers and raises, and
the paho client built from them. `drivers/mqtt_client.py` re-exports the public names."""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode


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


def paho_client(
    settings: MqttSettings, client_id: str, *, v5: bool, session_expiry_s: int,
    password: str | None,
) -> mqtt.Client:  # fmt: skip
    """A paho client for one `MqttClient`: protocol, session, TLS, credentials; no callbacks."""
    s = settings
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
        clean_session=None if v5 else session_expiry_s == 0,
        reconnect_on_failure=False,  # ours: MqttClient._keep_connected
    )
    client.suppress_exceptions = True  # a bug in a callback must not kill the network thread
    client.max_inflight_messages_set(0)  # unlimited in paho: the window is ours (mqtt_publishing)
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
        client.username_pw_set(s.username, password)
    return client


def disconnect_args(with_will: bool) -> tuple[ReasonCode | None, Properties | None]:
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
