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
from dataclasses import dataclass

import structlog

from drivers.mqtt_client import MqttClient, MqttError, Received
from edge_agent.config import ControlSection, MqttSection
from edge_agent.contracts import command_json
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
        body = command_json.loads(payload)
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
    issued_ns = command_json.timestamp_ns(body["ts"])
    if issued_ns is None:
        return CommandError(
            Refusal.MALFORMED,
            f"ts {_short(body['ts'])} must be RFC 3339 with a zone or epoch milliseconds",
            tag,
            request_id,
            body["value"],
        )
    return WriteRequest(Origin.SCADA, tag, body["value"], request_id, issued_ns)


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

    A connection of its own (client id `{instance_id}-control`, always MQTT 5 for retain as
    published) keeps the command path apart from data delivery: its session is clean (nothing
    queued while the agent was away is delivered), and the broker's ACL can grant it reading the
    set topics without granting that to anyone else. It reconnects on its own, like every
    `MqttClient`, so it is back within about a second of the broker. Results and audit records
    are QoS 1 and their PUBACK reason code is checked: a broker that refuses them is logged.
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
        self.client: MqttClient | None = None
        self.subscribed = asyncio.Event()

    async def run(self) -> None:
        password = self._password
        if password is None and self._mqtt.password is not None:
            password = self._mqtt.password.resolve()
        client = MqttClient(
            self._mqtt, client_id=self._client_id, password=password, protocol="5", name="control"
        )
        inbox: asyncio.Queue[Received] = asyncio.Queue()
        for pattern in self._handler.topics.subscriptions():
            # Retain-as-published: a command someone published with retain still carries the
            # flag when it reaches us live, so it is refused like a stored one.
            client.subscribe(pattern, inbox.put_nowait, qos=1, retain_as_published=True)
        self.client = client
        client.subscribed = self.subscribed  # one event across restarts, for whoever waits on it

        async def publish_audit(body: bytes) -> None:
            await client.publish(self._audit_topic, body, qos=1)

        self._audit.set_publisher(publish_audit)
        try:
            async with client:
                log.info(
                    "control_commands_subscribing", topics=self._handler.topics.subscriptions()
                )
                while True:
                    await self._answer(client, await inbox.get())
        finally:
            self.subscribed.clear()
            self._audit.set_publisher(None)

    async def _answer(self, client: MqttClient, message: Received) -> None:
        outcome = await self._handler.handle(
            message.topic, message.payload, retained=message.retain
        )
        reply = outcome.reply() | {"ts": iso_utc(now_ns())}
        try:
            await client.publish(message.topic + "/result", json.dumps(reply).encode(), qos=1)
        except MqttError as exc:  # refused (ACL) or the connection closed: the audit file has it
            log.error("control_result_not_published", topic=message.topic, error=str(exc))
