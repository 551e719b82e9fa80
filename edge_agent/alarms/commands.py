"""Operator actions on alarms over MQTT: acknowledge, shelve, unshelve, out of service, back.

A command is published to `{root}/{site}/_alarms/{alarm id}/{action}` (one topic per action, so
the broker's ACL can let operators acknowledge and only engineers take alarms out of service),
with the payload

    {"request_id": "…", "operator": "op.anna", "ts": "2026-…Z", "reason": "…", "duration_s": 3600}

`reason` is required for `shelve` and `out_of_service`, `duration_s` for `shelve` only. The
answer goes to the same topic plus `/result`; every command, done or refused, is audited (log
event `alarm_command`, a fsynced line in `alarm-audit.jsonl` in the state directory, and
`{root}/{site}/_alarms/_audit`). A done action is also an alarm event (with operator and
reason) on the alarm's topics, through the outbox.

The same hygiene as setpoint commands (edge_agent/control): size capped before decoding, strict
JSON (one object, each key once, no unknown keys), retained messages refused (a retained
command would act again on every restart), fresh timestamps only (older than `max_age_s` or
further than `max_clock_skew_s` ahead: refused), the operator checked against
`alarms.commands.operators`, a per-alarm rate limit, and a request id used twice refused. They
never write to the plant: the alarm engine is all they reach.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, get_args

import structlog

from drivers.mqtt_client import MqttClient, MqttError, Received
from edge_agent.alarms.engine import Action, AlarmEngine
from edge_agent.alarms.model import ActionRefused
from edge_agent.config import AgentConfig, MqttSection
from edge_agent.config.alarms import AlarmCommands
from edge_agent.contracts import command_json
from edge_agent.contracts.samples import iso_utc, now_ns
from edge_agent.state_files import append_line
from edge_agent.supervisor import STOP_CONTROL, Service

log = structlog.get_logger("edge_agent.alarms")

ACTIONS: tuple[Action, ...] = get_args(Action)
AUDIT_FILE = "alarm-audit.jsonl"
_NS = 1_000_000_000
_ID = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_OPERATOR = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
_REQUIRED = {"request_id", "operator", "ts"}
_NEEDS = {"shelve": {"reason", "duration_s"}, "out_of_service": {"reason"}}
_SEEN_REQUESTS = 1024  # request ids remembered against replays (within max_age_s they matter)


class Refusal(StrEnum):
    MALFORMED = "malformed"
    OVERSIZED = "oversized"
    RETAINED = "retained"
    NOT_AUTHORIZED = "not_authorized"
    STALE = "stale"
    FUTURE = "future"
    RATE_LIMITED = "rate_limited"
    DUPLICATE = "duplicate"
    UNKNOWN_ALARM = "unknown_alarm"
    NOT_APPLICABLE = "not_applicable"


@dataclass(frozen=True, slots=True)
class AlarmCommand:
    alarm_id: str
    action: Action
    request_id: str
    operator: str
    issued_ns: int
    reason: str | None = None
    duration_s: float | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one command: the reply, and the audit record."""

    ts: str
    alarm_id: str
    action: str
    result: str  # "done" | "refused"
    reason: str | None
    detail: str
    request_id: str | None = None
    operator: str | None = None
    why: str | None = None  # the operator's reason

    def reply(self) -> dict[str, Any]:
        keys = ("request_id", "alarm_id", "action", "result", "reason", "detail", "ts")
        return {k: getattr(self, k) for k in keys}

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class Rejected:
    """A command refused while parsing; `body` is what of the payload could be read."""

    refusal: Refusal
    detail: str
    alarm_id: str
    action: str
    body: dict[str, Any]


class CommandTopics:
    def __init__(self, root: str, site: str) -> None:
        self.prefix = f"{root}/{site}/_alarms/"

    def subscriptions(self) -> list[str]:
        return [f"{self.prefix}+/{action}" for action in ACTIONS]

    def audit_topic(self) -> str:
        return self.prefix + "_audit"

    def parse(self, topic: str) -> tuple[str, Action] | None:
        if not topic.startswith(self.prefix):
            return None
        alarm_id, _, action = topic[len(self.prefix) :].partition("/")
        for known in ACTIONS:
            if action == known and _ID.match(alarm_id):
                return alarm_id, known
        return None


def parse_command(
    topics: CommandTopics, topic: str, payload: bytes, *, retained: bool, max_bytes: int
) -> AlarmCommand | Rejected:
    """The command, or why not."""
    where = topics.parse(topic)
    if where is None:
        return Rejected(Refusal.MALFORMED, f"topic {topic!r} names no alarm action", topic, "", {})
    alarm_id, action = where

    def refuse(refusal: Refusal, detail: str, body: Any = None) -> Rejected:
        return Rejected(refusal, detail, alarm_id, action, body if isinstance(body, dict) else {})

    if len(payload) > max_bytes:
        return refuse(Refusal.OVERSIZED, f"payload of {len(payload)} bytes exceeds {max_bytes}")
    try:
        body = command_json.loads(payload)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return refuse(Refusal.RETAINED if retained else Refusal.MALFORMED, f"not JSON: {exc}")
    if retained:
        return refuse(Refusal.RETAINED, "the command was published with retain", body)
    if not isinstance(body, dict):
        return refuse(
            Refusal.MALFORMED, f"payload must be a JSON object, not {type(body).__name__}"
        )
    allowed = _REQUIRED | _NEEDS.get(action, set()) | {"reason"}
    missing = sorted((_REQUIRED | _NEEDS.get(action, set())) - set(body))
    extra = sorted(set(body) - allowed)
    if missing or extra:
        detail = f"{action} needs {sorted(allowed)} (missing {missing}, unexpected {extra})"
        return refuse(Refusal.MALFORMED, detail, body)
    request_id, operator, reason = body["request_id"], body["operator"], body.get("reason")
    if not isinstance(request_id, str) or not _REQUEST_ID.match(request_id):
        return refuse(Refusal.MALFORMED, "request_id must be 1-64 of A-Z a-z 0-9 . _ : -", body)
    if not isinstance(operator, str) or not _OPERATOR.match(operator):
        return refuse(Refusal.MALFORMED, "operator must be 1-64 of A-Z a-z 0-9 . _ @ -", body)
    if reason is not None and (not isinstance(reason, str) or not 0 < len(reason.strip()) <= 200):
        return refuse(Refusal.MALFORMED, "reason must be text of 1-200 characters", body)
    issued_ns = command_json.timestamp_ns(body["ts"])
    if issued_ns is None:
        return refuse(Refusal.MALFORMED, "ts must be RFC 3339 with a zone or epoch ms", body)
    duration = body.get("duration_s")
    if action == "shelve" and (
        isinstance(duration, bool) or not isinstance(duration, int | float) or not duration > 0
    ):
        return refuse(Refusal.MALFORMED, f"duration_s must be a number above 0 (got {duration!r})")
    return AlarmCommand(
        alarm_id,
        action,
        request_id,
        operator,
        issued_ns,
        reason,
        float(duration) if isinstance(duration, int | float) else None,
    )


class AlarmAudit:
    """Every alarm command, done or refused: log event, fsynced JSONL line, MQTT message."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.publisher: Callable[[bytes], Any] | None = None
        self.counts = {"done": 0, "refused": 0}

    async def record(self, outcome: Outcome) -> None:
        event = log.info if outcome.result == "done" else log.warning
        event("alarm_command", **{k: v for k, v in asdict(outcome).items() if k != "ts"})
        self.counts[outcome.result] += 1
        line = outcome.to_json()
        try:
            await asyncio.to_thread(append_line, self.path, line)
        except OSError as exc:
            log.error("alarm_audit_failed", path=str(self.path), error=str(exc))
        if self.publisher is not None:
            try:
                await self.publisher(line.encode())
            except Exception as exc:  # the file line is the record; MQTT is best effort
                log.warning("alarm_audit_publish_failed", error=str(exc))

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out


class AlarmCommandHandler:
    """Parses, checks, acts and audits; the part of the service that needs no broker."""

    def __init__(
        self,
        settings: AlarmCommands,
        topics: CommandTopics,
        engine: AlarmEngine,
        audit: AlarmAudit,
        clock: Callable[[], int] = now_ns,
    ) -> None:
        self.settings = settings
        self.topics = topics
        self.engine = engine
        self.audit = audit
        self.clock = clock
        self._last_action: dict[str, int] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()

    async def handle(self, topic: str, payload: bytes, *, retained: bool) -> Outcome:
        now = self.clock()
        parsed = parse_command(
            self.topics,
            topic,
            payload,
            retained=retained,
            max_bytes=self.settings.max_payload_bytes,
        )
        if isinstance(parsed, AlarmCommand):
            outcome = await self._judge(parsed, now)
        else:
            body = parsed.body
            outcome = Outcome(
                iso_utc(now),
                parsed.alarm_id,
                parsed.action,
                "refused",
                parsed.refusal.value,
                parsed.detail,
                _text(body.get("request_id")),
                _text(body.get("operator")),
                _text(body.get("reason")),
            )
        await self.audit.record(outcome)
        return outcome

    async def _judge(self, cmd: AlarmCommand, now: int) -> Outcome:
        s = self.settings

        def result(refusal: Refusal | None, detail: str) -> Outcome:
            return Outcome(
                iso_utc(now),
                cmd.alarm_id,
                cmd.action,
                "refused" if refusal else "done",
                refusal.value if refusal else None,
                detail,
                cmd.request_id,
                cmd.operator,
                cmd.reason,
            )

        if s.operators and cmd.operator not in s.operators:
            return result(Refusal.NOT_AUTHORIZED, f"operator {cmd.operator!r} is not listed")
        age_s = (now - cmd.issued_ns) / _NS
        if age_s > s.max_age_s:
            return result(Refusal.STALE, f"issued {age_s:.1f} s ago (max {s.max_age_s:g} s)")
        if -age_s > s.max_clock_skew_s:
            return result(Refusal.FUTURE, f"issued {-age_s:.1f} s in the future")
        if cmd.request_id in self._seen:
            return result(Refusal.DUPLICATE, f"request_id {cmd.request_id!r} was already used")
        self._remember(cmd.request_id)
        if cmd.alarm_id not in self.engine.alarms:
            return result(Refusal.UNKNOWN_ALARM, f"no alarm {cmd.alarm_id!r} is configured")
        last = self._last_action.get(cmd.alarm_id)
        if last is not None and (now - last) / _NS < s.min_interval_s:
            return result(Refusal.RATE_LIMITED, f"at most one action per {s.min_interval_s:g} s")
        if cmd.duration_s is not None and cmd.duration_s > s.max_shelve_s:
            detail = f"duration_s {cmd.duration_s:g} exceeds max_shelve_s {s.max_shelve_s:g}"
            return result(Refusal.MALFORMED, detail)
        try:
            events = await self.engine.act(
                cmd.action, cmd.alarm_id, cmd.operator, cmd.reason, cmd.duration_s, now
            )
        except ActionRefused as exc:
            return result(Refusal.NOT_APPLICABLE, str(exc))
        self._last_action[cmd.alarm_id] = now
        return result(None, f"now {events[-1].state.value}")

    def _remember(self, request_id: str) -> None:
        self._seen[request_id] = None
        while len(self._seen) > _SEEN_REQUESTS:
            self._seen.popitem(last=False)


def _text(value: object) -> str | None:
    return value[:200] if isinstance(value, str) else None


class AlarmCommandService:
    """Subscribes to the action topics on a connection of its own (MQTT 5, clean session: nothing
    queued while the agent was away is acted on) and answers each command."""

    def __init__(self, mqtt: MqttSection, client_id: str, handler: AlarmCommandHandler) -> None:
        self._mqtt = mqtt
        self._client_id = client_id
        self.handler = handler
        self.subscribed = asyncio.Event()

    async def run(self) -> None:
        password = self._mqtt.password.resolve() if self._mqtt.password is not None else None
        client = MqttClient(
            self._mqtt, client_id=self._client_id, password=password, protocol="5", name="alarms"
        )
        inbox: asyncio.Queue[Received] = asyncio.Queue()
        for pattern in self.handler.topics.subscriptions():
            client.subscribe(pattern, inbox.put_nowait, qos=1, retain_as_published=True)
        client.subscribed = self.subscribed
        audit_topic = self.handler.topics.audit_topic()

        async def publish_audit(body: bytes) -> None:
            await client.publish(audit_topic, body, qos=1)

        self.handler.audit.publisher = publish_audit
        try:
            async with client:
                log.info("alarm_commands_subscribing", topics=self.handler.topics.subscriptions())
                while True:
                    message = await inbox.get()
                    outcome = await self.handler.handle(
                        message.topic, message.payload, retained=message.retain
                    )
                    reply = json.dumps(outcome.reply(), ensure_ascii=False).encode()
                    try:
                        await client.publish(message.topic + "/result", reply, qos=1)
                    except MqttError as exc:
                        log.error("alarm_result_not_published", topic=message.topic, error=str(exc))
        finally:
            self.subscribed.clear()
            self.handler.audit.publisher = None


def build_services(cfg: AgentConfig, engine: AlarmEngine | None) -> list[Service]:
    """The command service, where alarms, `[mqtt]` and `alarms.commands.enabled` all are."""
    settings = cfg.alarms.commands
    if engine is None or cfg.mqtt is None or not settings.enabled:
        return []
    topics = CommandTopics(cfg.mqtt.topic_root, cfg.agent.site)
    audit = AlarmAudit(Path(cfg.agent.state_dir) / AUDIT_FILE)
    handler = AlarmCommandHandler(settings, topics, engine, audit)
    service = AlarmCommandService(cfg.mqtt, f"{cfg.agent.instance_id}-alarms", handler)
    engine.commands = service
    return [Service("alarms.commands", service.run, STOP_CONTROL)]
