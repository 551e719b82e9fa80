"""OPC UA servers' own conditions as alarms of this agent (Kind.EXTERNAL; docs/alarms.md, "OPC UA").

For every OPC UA source with `[source.conditions] enabled = true`, a service keeps a condition
subscription (drivers/opcua_events.py) and carries each condition into the alarm set:

- identity: the condition's SourceName when it is one of our tag ids, else
  `{source}.{SourceName}`, is the alarm's tag; the alarm id is that tag plus the ConditionName in
  snake case (`fsf.matte_temp` + `MatteTempLow` -> `fsf.matte_temp.matte_temp_low`). A server
  condition appears as an alarm when the server first reports it (and is saved with the state).
- state: the server decides active and acknowledged (no delays, deadbands or limits of ours);
  shelving, out of service and the EEMUA figures are ours as for any alarm. Severity 1..1000
  becomes the priority (`Priority.from_opcua_severity`), the server's message the alarm's.
- refresh: after each connect the server's ConditionRefresh says what it retains; an alarm of this
  source it no longer retains cleared (and was acknowledged) while we were away.
- acknowledge: only where `acknowledge = true` for the source, by calling the condition's
  Acknowledge method with the latest EventId; the server's refusal is the operator's answer.
  Elsewhere the command is refused: the condition is acknowledged on the server's own HMI, and
  its acknowledgement then arrives here as an event.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Awaitable, Callable, Sequence

import structlog

from drivers.backoff import Backoff
from drivers.base import DriverConnectionError, WriteRefused
from drivers.opcua_events import ConditionEvent, ConditionSnapshot, OpcUaConditionDriver
from edge_agent.alarms.evaluator import AlarmSet
from edge_agent.alarms.machine import AlarmStatus
from edge_agent.alarms.model import (
    ActionRefused,
    AlarmDefinition,
    AlarmEvent,
    Kind,
    Priority,
)
from edge_agent.config import AgentConfig, OpcUaSource
from edge_agent.contracts.samples import now_ns
from edge_agent.supervisor import STOP_ACQUISITION, Service

log = structlog.get_logger("edge_agent.alarms")

Publish = Callable[[list[AlarmEvent]], Awaitable[None]]
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NOT_ID = re.compile(r"[^a-z0-9_]+")


def slug(name: str) -> str:
    """A server's name as one level of an alarm id: `MatteTempLow` -> `matte_temp_low`."""
    text = _NOT_ID.sub("_", _CAMEL.sub("_", name).lower()).strip("_")
    text = re.sub("_+", "_", text)
    return text if text[:1].isalpha() else f"c_{text}"


class ConditionSource:
    """One OPC UA source's conditions: the subscription loop and the acknowledge call."""

    def __init__(
        self,
        source: OpcUaSource,
        alarms: AlarmSet,
        publish: Publish,
        driver: OpcUaConditionDriver | None = None,
        clock: Callable[[], int] = now_ns,
    ) -> None:
        self.source = source
        self.alarms = alarms
        self.publish = publish
        self.driver = driver or OpcUaConditionDriver(source)
        self.clock = clock
        self.tags = {t.id for t in source.tag}
        self.latest: dict[str, ConditionEvent] = {}  # alarm id -> the server's latest event
        self.connected = asyncio.Event()
        self.log = log.bind(source=source.name)

    def owns(self, alarm_id: str) -> bool:
        return (
            alarm_id in self.alarms and self.alarms.status(alarm_id).defn.source == self.source.name
        )

    # -------------------------------------------------------------------------- the loop

    async def run(self) -> None:
        backoff = Backoff()
        failures = 0
        me = asyncio.current_task()
        try:
            while True:
                # asyncua's wait_for (Python 3.11) can swallow a cancellation that races a
                # response; the task stays cancelling, so honour it (as SourcePoller does).
                if me is not None and me.cancelling():
                    raise asyncio.CancelledError
                try:
                    await self.driver.connect()
                    self.connected.set()
                    if failures:
                        self.log.info("opcua_conditions_reconnected", after_failures=failures)
                    failures = 0
                    backoff.reset()
                    while True:
                        if me is not None and me.cancelling():
                            raise asyncio.CancelledError
                        for update in await self.driver.read():
                            await self.publish(self.apply(update))
                except DriverConnectionError as exc:
                    self.connected.clear()
                    failures += 1
                    if failures == 1:  # loud once, quiet on repeats
                        self.log.warning("opcua_conditions_lost", error=str(exc))
                    await self.driver.close()
                    await backoff.wait()
        finally:
            self.connected.clear()
            await self.driver.close()

    def apply(self, update: ConditionEvent | ConditionSnapshot) -> list[AlarmEvent]:
        if isinstance(update, ConditionEvent):
            return self._follow(update)
        events: list[AlarmEvent] = []
        seen: set[str] = set()
        for condition in update.conditions:
            events += self._follow(condition)
            seen.add(self._identify(condition)[0])
        now = self.clock()
        for status in list(self.alarms.statuses()):
            d = status.defn
            if d.source == self.source.name and d.id not in seen:
                self.latest.pop(d.id, None)
                why = "no longer retained by the server"
                events += self._mark(status.follow(False, True, now, None, why), d, None)
        return events

    def _identify(self, c: ConditionEvent) -> tuple[str, str]:
        """(alarm id, tag) of a condition; see the module docstring."""
        name = c.source_name
        if name in self.tags:
            tag = name
        else:
            tag = ".".join([self.source.name, *(slug(p) for p in name.split(".") if p)])
        return f"{tag}.{slug(c.condition_name)}", tag

    def _follow(self, c: ConditionEvent) -> list[AlarmEvent]:
        alarm_id, tag = self._identify(c)
        priority = Priority.from_opcua_severity(c.severity)
        message = c.message or c.condition_name
        known = alarm_id in self.alarms
        if known and self.alarms.status(alarm_id).defn.kind is not Kind.EXTERNAL:
            self.log.warning("opcua_condition_id_taken", alarm=alarm_id, condition=c.condition_id)
            return []
        status = self.alarms.add_external(
            AlarmDefinition(
                alarm_id, tag, Kind.EXTERNAL, priority, message, source=self.source.name
            )
        )
        if (status.defn.priority, status.defn.message) != (priority, message):
            status.defn = dataclasses.replace(status.defn, priority=priority, message=message)
        self.latest[alarm_id] = c
        active = bool(c.active) and c.enabled
        acknowledged = c.acknowledged is not False or not c.enabled
        ts = c.time_ns or self.clock()
        events = status.follow(active, acknowledged, ts, c.client_user, c.comment)
        return self._mark(events, status.defn, c)

    def _mark(
        self, events: list[AlarmEvent], d: AlarmDefinition, c: ConditionEvent | None
    ) -> list[AlarmEvent]:
        """Each event says where it comes from: the source, the ConditionId, the severity."""
        extra: dict[str, object] = {"source": d.source, "origin": "opcua"}
        if c is not None:
            extra.update(condition_id=c.condition_id, severity=c.severity)
        return [dataclasses.replace(e, extra=extra) for e in events]

    # ------------------------------------------------------------------------- acknowledge

    async def acknowledge(self, status: AlarmStatus, operator: str, reason: str | None) -> None:
        """Call the condition's Acknowledge method; raises ActionRefused saying why not."""
        name = self.source.name
        if not self.source.conditions.acknowledge:
            raise ActionRefused(
                f"source {name} does not let the agent acknowledge its server's conditions "
                f"(source.conditions.acknowledge is false): acknowledge it on the server"
            )
        if status.removed or status.acknowledged:
            raise ActionRefused(f"nothing to acknowledge: the alarm is {status.state.value}")
        latest = self.latest.get(status.defn.id)
        if latest is None:
            raise ActionRefused(
                f"the server of source {name} has not reported it since we connected"
            )
        comment = f"{operator}: {reason}" if reason else operator
        try:
            await self.driver.acknowledge(latest.condition_id, latest.event_id, comment)
        except WriteRefused as exc:
            raise ActionRefused(str(exc)) from exc
        except DriverConnectionError as exc:
            raise ActionRefused(f"source {name} is not connected: {exc}") from exc


class ExternalAlarms:
    """The condition sources of one agent (those that opt in), and who owns which alarm."""

    def __init__(self, sources: Sequence[ConditionSource]) -> None:
        self.sources = list(sources)

    def owner(self, alarm_id: str) -> ConditionSource | None:
        return next((s for s in self.sources if s.owns(alarm_id)), None)

    def services(self) -> list[Service]:
        return [
            Service(f"alarms.opcua.{s.source.name}", s.run, STOP_ACQUISITION) for s in self.sources
        ]


def condition_sources(cfg: AgentConfig) -> list[OpcUaSource]:
    return [
        s for s in cfg.source if isinstance(s, OpcUaSource) and s.enabled and s.conditions.enabled
    ]


def build(cfg: AgentConfig, alarms: AlarmSet, publish: Publish) -> ExternalAlarms:
    return ExternalAlarms([ConditionSource(s, alarms, publish) for s in condition_sources(cfg)])
