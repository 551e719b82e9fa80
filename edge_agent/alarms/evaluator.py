"""All alarms of one agent, indexed by tag: a sample touches only the alarms that watch its tag.

`AlarmSet` is pure (no I/O, no clock of its own): the engine feeds it samples as they reach the
bus, calls `tick(now)` about once a second for what time alone decides (delays running out,
stale tags, shelves expiring), and forwards operator actions. Each returns the `AlarmEvent`s it
caused, in order.

Cost per sample: one dict look-up when no alarm watches the tag (the common case); otherwise a
few comparisons per watching alarm. `tick` visits only the alarms with something scheduled
plus the stale alarms.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from edge_agent.alarms.conditions import ConditionMemory, raw_condition, stale_due
from edge_agent.alarms.machine import AlarmStatus
from edge_agent.alarms.model import (
    ActionRefused,
    AlarmDefinition,
    AlarmEvent,
    Kind,
    Priority,
    State,
)
from edge_agent.contracts.samples import Quality, Sample

NS = 1_000_000_000
_OWN, _REFERENCE, _SUPPRESSION = 1, 2, 4
_GOOD = Quality.GOOD
_UP, _DOWN, _RATE = 1, 2, 3
_CHECKS = {Kind.HIGH: _UP, Kind.HIGH_HIGH: _UP, Kind.LOW: _DOWN, Kind.LOW_LOW: _DOWN,
           Kind.RATE_OF_CHANGE: _RATE}  # fmt: skip
# A tag watched by one limit or rate-of-change alarm only, on its own tag (the common case):
# (status, memory, check, limit, limit while active, alarm), what `on_samples` settles inline.
Inline = tuple[AlarmStatus, ConditionMemory, int, float, float, "_Alarm"]


class LatestValues(Protocol):
    """Where reference and suppression tags are read (the TagStore, updated before alarms run)."""

    def get(self, tag: str) -> Sample | None: ...


@dataclass(slots=True)
class _Alarm:
    status: AlarmStatus
    memory: ConditionMemory

    @property
    def defn(self) -> AlarmDefinition:
        return self.status.defn


class AlarmSet:
    def __init__(
        self,
        definitions: Sequence[AlarmDefinition],
        latest: LatestValues,
        started_ns: int,
        inline: bool = True,  # False: every sample through `_on_sample` (the tests' reference)
    ) -> None:
        self._latest = latest
        self._alarms: dict[str, _Alarm] = {}
        # tag -> (alarm, role) with the role decided once: the alarm's own tag (the hot path),
        # its deviation reference, or one of its suppression tags; or, for a tag only one limit
        # or rate-of-change alarm watches, its `Inline` entry.
        by_tag: dict[str, list[tuple[_Alarm, int]]] = {}
        for defn in definitions:
            alarm = _Alarm(AlarmStatus(defn), ConditionMemory(started_ns))
            self._alarms[defn.id] = alarm
            for tag in sorted(defn.watched_tags()):
                role = _OWN if tag == defn.tag else _REFERENCE if tag == defn.reference else 0
                if any(w.tag == tag for w in defn.suppress_when):
                    role |= _SUPPRESSION
                by_tag.setdefault(tag, []).append((alarm, role))
        self._by_tag: dict[str, list[tuple[_Alarm, int]] | Inline] = {
            tag: (_inline(entries) if inline else None) or entries
            for tag, entries in by_tag.items()
        }
        self._stale = [a for a in self._alarms.values() if a.defn.kind is Kind.STALE]
        self._scheduled: set[str] = set()  # ids with a pending delay or a shelf

    # --------------------------------------------------------------------------- reading

    def __len__(self) -> int:
        return len(self._alarms)

    def __contains__(self, alarm_id: object) -> bool:
        return alarm_id in self._alarms

    def watches(self, tag: str) -> bool:
        return tag in self._by_tag

    def watched_tags(self) -> frozenset[str]:
        """Every tag whose samples `on_samples` looks at (fixed when the set is built)."""
        return frozenset(self._by_tag)

    def status(self, alarm_id: str) -> AlarmStatus:
        return self._alarms[alarm_id].status

    def add_external(self, defn: AlarmDefinition) -> AlarmStatus:
        """An alarm a server raises (Kind.EXTERNAL): known once it reports it, fed no samples."""
        alarm = self._alarms.get(defn.id)
        if alarm is None:
            alarm = self._alarms[defn.id] = _Alarm(AlarmStatus(defn), ConditionMemory(0))
        return alarm.status

    def statuses(self) -> Iterable[AlarmStatus]:
        return (a.status for a in self._alarms.values())

    def counts(self) -> dict[State, int]:
        counts = dict.fromkeys(State, 0)
        for alarm in self._alarms.values():
            counts[alarm.status.state] += 1
        return counts

    # ---------------------------------------------------------------------------- process

    def on_samples(self, samples: Iterable[Sample]) -> list[AlarmEvent]:
        """The events these samples cause.

        The common case is settled inline, without a call (what the alarm benchmark measures):
        a tag watched by one limit or rate-of-change alarm, a Good finite number, no delay
        running, and the condition stays as it was. It does what `_on_sample` would (the value
        kept, the rate's previous point moved on); anything else goes through `_on_sample`.
        """
        events: list[AlarmEvent] = []
        by_tag, good = self._by_tag, _GOOD
        for sample in samples:
            entry = by_tag.get(sample.tag)
            if entry is None:
                continue
            if entry.__class__ is tuple:
                status, memory, check, limit, held, alarm = entry  # type: ignore[misc]
                if status.pending_since_ns is None and sample.quality is good:
                    value: Any = sample.value  # typed by the class checks
                    cls = value.__class__  # exactly float or int: bool takes the full path
                    if (cls is float and value - value == 0.0) or cls is int:  # finite
                        number = value if cls is float else float(value)
                        active = status.active
                        edge = held if active else limit
                        if check == _UP:
                            if (number > edge) is active:
                                status.value = number
                                continue
                        elif check == _DOWN:
                            if (number < edge) is active:
                                status.value = number
                                continue
                        else:  # rate of change, as conditions._rate computes it
                            ts = sample.source_ns
                            if ts is None:
                                ts = sample.acq_ns
                            prev = memory.prev
                            if prev is None or ts <= prev[0]:
                                memory.prev = (ts, number)
                                continue
                            per_min = abs(number - prev[1]) / ((ts - prev[0]) / NS) * 60.0
                            if (per_min > edge) is active:
                                memory.prev = (ts, number)
                                status.value = number
                                continue
                found = self._on_sample(alarm, _OWN, sample)
            else:
                found = []
                for alarm, role in entry:  # type: ignore[misc,union-attr]
                    found += self._on_sample(alarm, role, sample)
            if found:
                events += found
        return events

    def _on_sample(self, alarm: _Alarm, role: int, sample: Sample) -> list[AlarmEvent]:
        defn, status = alarm.status.defn, alarm.status
        events: list[AlarmEvent] = []
        if role & _SUPPRESSION:
            events += status.set_suppressed(self._suppressed(defn), sample.ts_ns)
        if role & _OWN:
            reference = self._latest.get(defn.reference) if defn.reference else None
            raw, value = raw_condition(defn, sample, reference, status.active, alarm.memory)
            events += status.observe(raw, sample.ts_ns, value)
        elif role & _REFERENCE:
            own = self._latest.get(defn.tag)
            if own is not None:
                raw, value = raw_condition(defn, own, sample, status.active, alarm.memory)
                events += status.observe(raw, max(own.ts_ns, sample.ts_ns), value)
        if status.pending_since_ns is not None or defn.id in self._scheduled:
            self._schedule(status)  # only what has or had a delay running, not every sample
        return events

    def _suppressed(self, defn: AlarmDefinition) -> bool:
        for cond in defn.suppress_when:
            sample = self._latest.get(cond.tag)
            if sample is not None and sample.good and cond.holds(sample.value):
                return True
        return False

    def tick(self, now_ns: int) -> list[AlarmEvent]:
        events: list[AlarmEvent] = []
        for alarm in self._stale:
            if stale_due(alarm.defn, now_ns, alarm.memory):
                assert alarm.defn.limit is not None
                due = alarm.memory.last_advance_ns + int(alarm.defn.limit * NS)
                events += alarm.status.observe(True, due, alarm.status.value)
                self._schedule(alarm.status)
        for alarm_id in sorted(self._scheduled, key=self._due_key):
            status = self._alarms[alarm_id].status
            next_due = status.next_due_ns()
            if next_due is not None and next_due <= now_ns:
                events += status.tick(now_ns)
            self._schedule(status)
        events.sort(key=lambda e: e.ts_ns)
        return events

    def _due_key(self, alarm_id: str) -> int:
        return self._alarms[alarm_id].status.next_due_ns() or 0

    def _schedule(self, status: AlarmStatus) -> None:
        if status.next_due_ns() is None:
            self._scheduled.discard(status.defn.id)
        else:
            self._scheduled.add(status.defn.id)

    # ---------------------------------------------------------------------------- operator

    def acknowledge(
        self, alarm_id: str, ts_ns: int, operator: str, reason: str | None
    ) -> list[AlarmEvent]:
        return [self._get(alarm_id).acknowledge(ts_ns, operator, reason)]

    def shelve(
        self, alarm_id: str, ts_ns: int, duration_s: float, operator: str, reason: str
    ) -> list[AlarmEvent]:
        status = self._get(alarm_id)
        event = status.shelve(ts_ns, ts_ns + int(duration_s * NS), operator, reason)
        self._schedule(status)
        return [event]

    def unshelve(
        self, alarm_id: str, ts_ns: int, operator: str, reason: str | None
    ) -> list[AlarmEvent]:
        status = self._get(alarm_id)
        events = status.unshelve(ts_ns, operator, reason)
        self._schedule(status)
        return events

    def remove_from_service(
        self, alarm_id: str, ts_ns: int, operator: str, reason: str
    ) -> list[AlarmEvent]:
        status = self._get(alarm_id)
        event = status.remove_from_service(ts_ns, operator, reason)
        self._schedule(status)
        return [event]

    def return_to_service(
        self, alarm_id: str, ts_ns: int, operator: str, reason: str | None
    ) -> list[AlarmEvent]:
        return self._get(alarm_id).return_to_service(ts_ns, operator, reason)

    def _get(self, alarm_id: str) -> AlarmStatus:
        alarm = self._alarms.get(alarm_id)
        if alarm is None:
            raise ActionRefused(f"no alarm {alarm_id!r} is configured")
        return alarm.status

    # ------------------------------------------------------------------------- persistence

    def snapshot(self) -> dict[str, Any]:
        return {alarm_id: a.status.snapshot() for alarm_id, a in self._alarms.items()}

    def restore(self, data: dict[str, Any]) -> list[str]:
        """Take back saved states, quietly (no events: nothing changed while we were down that
        fresh samples will not tell). Returns the ids that could not be restored (the
        definition's tag or kind changed, or the entry is unreadable): they start normal."""
        skipped: list[str] = []
        for alarm_id, saved in data.items():
            alarm = self._alarms.get(alarm_id)
            if alarm is None and isinstance(saved, dict) and saved.get("kind") == Kind.EXTERNAL:
                defn = _external(alarm_id, saved)
                alarm = self._alarms[alarm_id] = _Alarm(AlarmStatus(defn), ConditionMemory(0))
            if alarm is None:
                continue
            if not isinstance(saved, dict) or not alarm.status.restore(saved):
                skipped.append(alarm_id)
            self._schedule(alarm.status)
        return skipped


def _inline(entries: list[tuple[_Alarm, int]]) -> Inline | None:
    """The inline entry of a tag only one limit or rate-of-change alarm watches, as its own."""
    if len(entries) != 1 or entries[0][1] != _OWN:
        return None
    alarm = entries[0][0]
    d = alarm.defn
    check = _CHECKS.get(d.kind)
    if check is None or d.limit is None:
        return None
    held = d.limit + d.deadband if check == _DOWN else d.limit - d.deadband
    return alarm.status, alarm.memory, check, d.limit, held, alarm


def _external(alarm_id: str, saved: dict[str, Any]) -> AlarmDefinition:
    """A server's condition as it was saved (its state follows from the snapshot)."""
    level = saved.get("priority")
    source = saved.get("source")
    return AlarmDefinition(
        id=alarm_id,
        tag=str(saved.get("tag")),
        kind=Kind.EXTERNAL,
        priority=Priority(level) if level in set(Priority) else Priority.MEDIUM,
        message=str(saved.get("message") or alarm_id),
        source=source if isinstance(source, str) else None,
    )
