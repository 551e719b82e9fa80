"""SCADA setpoint commands over MQTT JSON, and the entry point for Sparkplug DCMD.

A command is published to `{root}/{site}/{unit}/{name}/set` (the tag id's dots become topic
levels, as for data) with the payload `{"request_id": "…", "value": 1234.5, "ts": "…Z"}`; `ts` is
RFC 3339 with a zone, or epoch milliseconds. The answer goes to the same topic plus `/result`.

Parsing trusts nothing: the size is capped before decoding, the topic must name a tag, the payload
must be one JSON object with exactly those keys, and retained messages are refused (a retained
command would be replayed to every new subscriber, including this agent after a restart). The
command's age is checked by the guard, like a DCMD's, so nothing queued during an outage is
replayed into the furnace.
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiomqtt
import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from edge_agent.config import ControlSection, MqttSection, TlsConfig
from edge_agent.contracts.samples import iso_utc, now_ns
from edge_agent.control.audit import AuditLog
from edge_agent.control.executor import Executor, Outcome
from edge_agent.control.guard import Origin, Refusal, WriteRequest

log = structlog.get_logger("edge_agent.control")

_LEVEL = re.compile(r"^[a-z0-9_]+$")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_KEYS = {"request_id", "value", "ts"}


@dataclass(frozen=True, slots=True)
class CommandError:
    """A command refused before it became a write request. `tag` is the topic when the topic
    itself is the problem; `request_id` is set when the payload got far enough to give one."""

    refusal: Refusal
    detail: str
    tag: str
    request_id: str | None = None
    value: object = None

    def outcome(self) -> Outcome:
        req = WriteRequest(Origin.SCADA, self.tag, self.value, self.request_id)
        return Outcome(req, "refused", self.refusal.value, self.detail)


class CommandTopics:
    """Maps between tag ids and the command topics of one site."""

    def __init__(self, root: str, site: str) -> None:
        self.prefix = f"{root}/{site}/"

    def set_topic(self, tag: str) -> str:
        return self.prefix + tag.replace(".", "/") + "/set"

    def subscriptions(self) -> list[str]:
        """Two-level tag ids (`unit.name`, all of the demo plant's setpoints) and three-level ones;
        the `…/set/result` replies match neither."""
        return [self.prefix + "+/+/set", self.prefix + "+/+/+/set"]

    def tag_of(self, topic: str) -> str | None:
        if not topic.startswith(self.prefix) or not topic.endswith("/set"):
            return None
        levels = topic[len(self.prefix) : -len("/set")].split("/")
        if len(levels) < 2 or not all(_LEVEL.match(level) for level in levels):
            return None
        return ".".join(levels)


def parse_command(
    topics: CommandTopics, topic: str, payload: bytes, *, retained: bool, max_bytes: int
) -> WriteRequest | CommandError:
    """Turn one MQTT message into a write request for the guard, or say why not."""
    tag = topics.tag_of(topic)
    if tag is None:
        return CommandError(Refusal.MALFORMED, f"topic {topic!r} does not name a tag", topic)
    if len(payload) > max_bytes:
        return CommandError(
            Refusal.OVERSIZED, f"payload of {len(payload)} bytes exceeds {max_bytes} bytes", tag
        )
    try:
        body = json.loads(payload.decode("utf-8"), object_pairs_hook=_unique_keys)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        if retained:
            return CommandError(Refusal.RETAINED, "the command was published with retain", tag)
        return CommandError(Refusal.MALFORMED, f"payload is not JSON: {exc}", tag)
    if retained:  # refused whatever it says; its request id (if any) lets the sender correlate
        given = body.get("request_id") if isinstance(body, dict) else None
        request_id = given if isinstance(given, str) and _REQUEST_ID.match(given) else None
        return CommandError(
            Refusal.RETAINED, "the command was published with retain", tag, request_id
        )
    if not isinstance(body, dict):
        return CommandError(
            Refusal.MALFORMED, f"payload must be a JSON object, not {type(body).__name__}", tag
        )
    request_id = body.get("request_id")
    if not isinstance(request_id, str) or not _REQUEST_ID.match(request_id):
        return CommandError(
            Refusal.MALFORMED,
            f"request_id {_short(request_id)} must be 1-64 characters of A-Z a-z 0-9 . _ : -",
            tag,
        )
    keys = set(body)
    if keys != _KEYS:
        missing, extra = sorted(_KEYS - keys), sorted(keys - _KEYS)
        return CommandError(
            Refusal.MALFORMED,
            f"payload keys must be request_id, value, ts (missing {missing}, unexpected {extra})",
            tag,
            request_id,
        )
    issued_ns = _timestamp_ns(body["ts"])
    if issued_ns is None:
        return CommandError(
            Refusal.MALFORMED,
            f"ts {_short(body['ts'])} must be RFC 3339 with a zone or epoch milliseconds",
            tag,
            request_id,
            body["value"],
        )
    return WriteRequest(Origin.SCADA, tag, body["value"], request_id, issued_ns)


class DuplicateKeyError(ValueError):
    """A JSON object names one key twice: the payload is ambiguous, whichever copy wins."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """`json.loads` keeps the last of repeated keys; `{"value": 1e9, "value": 31600}` would
    pass a reviewer's eye with one value and reach the guard with the other. Refuse it."""
    body = dict(pairs)
    if len(body) != len(pairs):
        keys = [k for k, _ in pairs]
        repeated = sorted({k for k in keys if keys.count(k) > 1})
        raise DuplicateKeyError(f"duplicate key {', '.join(map(repr, repeated))}")
    return body


def _timestamp_ns(ts: Any) -> int | None:
    if isinstance(ts, bool):
        return None
    if isinstance(ts, int | float):
        try:
            return int(ts * 1_000_000)
        except (OverflowError, ValueError):
            return None
    if isinstance(ts, str) and len(ts) <= 40:
        try:
            when = datetime.fromisoformat(ts)
        except ValueError:
            return None
        if when.tzinfo is None:
            return None
        return int(when.timestamp()) * 1_000_000_000 + when.microsecond * 1000
    return None


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class CommandHandler:
    """Parses, submits and answers; the part of the MQTT service that needs no broker."""

    def __init__(self, section: ControlSection, topics: CommandTopics, executor: Executor) -> None:
        self._section = section
        self.topics = topics
        self._executor = executor

    async def handle(self, topic: str, payload: bytes, *, retained: bool) -> Outcome:
        parsed = parse_command(
            self.topics,
            topic,
            payload,
            retained=retained,
            max_bytes=self._section.max_payload_bytes,
        )
        if isinstance(parsed, CommandError):
            outcome = parsed.outcome()
            await self._executor.record(outcome)
            return outcome
        return await self._executor.submit(parsed)

    async def dcmd(
        self, tag: str, value: object, ts_ns: int | None, request_id: str | None
    ) -> Outcome:
        """Entry point for the Sparkplug edge node: a DCMD metric write, judged like any command."""
        return await self._executor.submit(
            WriteRequest(Origin.SCADA, tag, value, request_id, ts_ns)
        )


class CommandService:
    """Subscribes to the set topics on its own MQTT connection and answers each command.

    A connection of its own (client id `{instance_id}-control`) keeps the command path apart from
    data delivery: its session is clean (nothing queued while the agent was away is delivered),
    and the broker's ACL can grant it reading the set topics without granting that to anyone else.
    """

    def __init__(
        self,
        mqtt: MqttSection,
        client_id: str,
        handler: CommandHandler,
        audit: AuditLog,
        audit_topic: str,
        password: str | None = None,
    ) -> None:
        self._mqtt = mqtt
        self._client_id = client_id
        self._handler = handler
        self._audit = audit
        self._audit_topic = audit_topic
        self._password = password
        self.subscribed = asyncio.Event()
        backups = [_host_port(server, mqtt.port) for server in mqtt.backup_servers]
        self._servers = [(mqtt.host, mqtt.port), *backups]
        self._attempts = 0

    async def run(self) -> None:
        password = self._password
        if password is None and self._mqtt.password is not None:
            password = self._mqtt.password.resolve()
        connect_props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        connect_props.SessionExpiryInterval = 0
        host, port = self._servers[self._attempts % len(self._servers)]
        self._attempts += 1  # the supervisor restarts us after a failure: try the next server
        tls = self._mqtt.tls
        client = aiomqtt.Client(
            host,
            port,
            tls_params=_tls_params(tls) if tls is not None else None,
            tls_insecure=tls.insecure_skip_verify if tls is not None else None,
            identifier=self._client_id,
            username=self._mqtt.username,
            password=password,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=True,
            properties=connect_props,
            keepalive=self._mqtt.keepalive_s,
        )
        async with client:

            async def publish_audit(body: bytes) -> None:
                await client.publish(self._audit_topic, body, qos=1)

            self._audit.set_publisher(publish_audit)
            self._attempts = 0  # connected: after a loss, the primary server is tried first
            try:
                # Retain-as-published: a command someone published with retain still carries the
                # flag when it reaches us live, so it is refused like a stored one.
                options = SubscribeOptions(qos=1, retainAsPublished=True)
                for pattern in self._handler.topics.subscriptions():
                    await client.subscribe(pattern, options=options)
                log.info("control_commands_subscribed", topics=self._handler.topics.subscriptions())
                self.subscribed.set()
                async for message in client.messages:
                    topic = message.topic.value
                    payload = message.payload if isinstance(message.payload, bytes) else b""
                    outcome = await self._handler.handle(
                        topic, payload, retained=bool(message.retain)
                    )
                    reply = outcome.reply() | {"ts": iso_utc(now_ns())}
                    await client.publish(topic + "/result", json.dumps(reply), qos=1)
            finally:
                self.subscribed.clear()
                self._audit.set_publisher(None)


def _tls_params(tls: TlsConfig) -> aiomqtt.TLSParameters:
    """The same [mqtt.tls] settings the data connection uses."""
    return aiomqtt.TLSParameters(
        ca_certs=str(tls.ca_file) if tls.ca_file else None,
        certfile=str(tls.certificate) if tls.certificate else None,
        keyfile=str(tls.private_key) if tls.private_key else None,
        cert_reqs=ssl.CERT_NONE if tls.insecure_skip_verify else ssl.CERT_REQUIRED,
    )


def _host_port(server: str, default_port: int) -> tuple[str, int]:
    host, _, port = server.rpartition(":")
    return (host, int(port)) if host and port.isdigit() else (server, default_port)
