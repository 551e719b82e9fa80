"""The alarm vocabulary: what an alarm is (definition), where it stands (state), what happened.

Follows ISA-18.2 / IEC 62682. An alarm watches one tag (or KPI); its *condition* is the process
side (is the value beyond the limit, after deadband and delays?), its *state* combines that with
the operator side (acknowledged?) and with the three ways an alarm is taken out of annunciation:
shelved by an operator (with a reason and an expiry), suppressed by design (a configured plant
condition, e.g. the furnace is not running), or out of service (maintenance).

Priorities are a four-step scale, 1 the most urgent, as ISA-18.2 recommends (three or four
priorities; EEMUA 191 expects roughly 5 % / 15 % / 80 % of alarms in the upper three):

    1 urgent   act at once (< 5 min): the process is close to a trip or a safety limit
    2 high     act soon (< 15 min)
    3 medium   act within the shift's routine (< 30 min)
    4 low      for information; no consequence if handled late
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any

from edge_agent.contracts.samples import Value, iso_utc


class Priority(IntEnum):
    URGENT = 1
    HIGH = 2
    MEDIUM = 3
    LOW = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def from_opcua_severity(cls, severity: int) -> Priority:
        """OPC UA severity 1..1000 in four equal-ish bands (Part 9 suggests the same split)."""
        if severity > 800:
            return cls.URGENT
        if severity > 600:
            return cls.HIGH
        if severity > 400:
            return cls.MEDIUM
        return cls.LOW


class Kind(StrEnum):
    """What the condition compares. Limits are in the tag's own unit; see `AlarmDefinition`."""

    HIGH = "high"
    HIGH_HIGH = "high_high"
    LOW = "low"
    LOW_LOW = "low_low"
    DEVIATION = "deviation"  # |value − reference tag| above limit
    RATE_OF_CHANGE = "rate_of_change"  # |Δvalue| per minute above limit
    BAD_QUALITY = "bad_quality"  # the tag's sample is Bad
    STALE = "stale"  # no new sample (advancing timestamp) for `limit` seconds
    DISCRETE = "discrete"  # the value equals `state`
    EXTERNAL = "external"  # a condition the OPC UA server raises (Alarms & Conditions)

    @property
    def needs_limit(self) -> bool:
        return self not in (Kind.BAD_QUALITY, Kind.DISCRETE, Kind.EXTERNAL)


class State(StrEnum):
    """ISA-18.2's alarm states (its figure 5 letters in comments)."""

    NORMAL = "normal"  # A
    ACTIVE_UNACK = "active_unack"  # B
    ACTIVE_ACK = "active_ack"  # C
    RETURNED_UNACK = "returned_unack"  # D
    SHELVED = "shelved"  # E
    SUPPRESSED = "suppressed"  # F, suppressed by design
    OUT_OF_SERVICE = "out_of_service"  # G


class Transition(StrEnum):
    ACTIVATED = "activated"
    CLEARED = "cleared"
    ACKNOWLEDGED = "acknowledged"
    SHELVED = "shelved"
    UNSHELVED = "unshelved"
    SHELVE_EXPIRED = "shelve_expired"
    SUPPRESSED = "suppressed"
    UNSUPPRESSED = "unsuppressed"
    REMOVED_FROM_SERVICE = "removed_from_service"
    RETURNED_TO_SERVICE = "returned_to_service"


@dataclass(frozen=True, slots=True)
class Suppression:
    """Suppress by design while the latest Good sample of `tag` equals / is below / above a value.

    A Bad or missing sample of `tag` does not suppress: when in doubt, the alarm stays live.
    """

    tag: str
    equals: Value | None = None
    below: float | None = None
    above: float | None = None

    def holds(self, value: Value | None) -> bool:
        if value is None:
            return False
        if self.equals is not None:
            return value == self.equals
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.below is not None and value < self.below:
            return True
        return self.above is not None and value > self.above


@dataclass(frozen=True, slots=True)
class AlarmDefinition:
    """One configured alarm.

    `limit`: high/low kinds in the tag's unit; deviation in the tag's unit; rate of change in the
    tag's unit per minute; stale in seconds. `deadband` (same unit) must be crossed back before
    the condition clears, `on_delay_s` / `off_delay_s` are how long the raw condition must hold
    before the alarm activates / clears: together they keep a noisy signal from chattering.
    """

    id: str
    tag: str
    kind: Kind
    priority: Priority
    message: str
    limit: float | None = None
    deadband: float = 0.0
    on_delay_s: float = 0.0
    off_delay_s: float = 0.0
    reference: str | None = None  # deviation: the tag compared against (a setpoint)
    state: Value | None = None  # discrete: the value that is the alarm
    suppress_when: tuple[Suppression, ...] = ()
    unit: str | None = None
    source: str | None = None  # external: the OPC UA source whose server raises it

    def watched_tags(self) -> set[str]:
        """Every tag whose samples can change this alarm (what the index is built from)."""
        tags = {self.tag, *(s.tag for s in self.suppress_when)}
        if self.reference is not None:
            tags.add(self.reference)
        return tags


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    """One transition. `ts_ns` is when it took effect: the triggering sample's source time (plus
    the delay, for a delayed transition), or the operator's command time."""

    alarm_id: str
    transition: Transition
    state: State
    previous: State
    ts_ns: int
    active: bool
    acknowledged: bool
    priority: Priority
    tag: str
    kind: Kind
    message: str
    value: Value | None = None
    operator: str | None = None
    reason: str | None = None
    shelved_until_ns: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The JSON object the sinks publish and the outbox stores (see docs/alarms.md)."""
        body: dict[str, Any] = {
            "id": self.alarm_id,
            "transition": self.transition.value,
            "state": self.state.value,
            "previous": self.previous.value,
            "active": self.active,
            "acknowledged": self.acknowledged,
            "priority": self.priority.label,
            "priority_level": int(self.priority),
            "message": self.message,
            "tag": self.tag,
            "kind": self.kind.value,
            "value": self.value,
            "ts": iso_utc(self.ts_ns),
            "ts_ns": self.ts_ns,
        }
        if self.operator is not None:
            body["operator"] = self.operator
        if self.reason is not None:
            body["reason"] = self.reason
        if self.shelved_until_ns is not None:
            body["shelved_until"] = iso_utc(self.shelved_until_ns)
            body["shelved_until_ns"] = self.shelved_until_ns
        body.update(self.extra)
        return body

    @classmethod
    def from_dict(cls, body: dict[str, Any]) -> AlarmEvent:
        known = {
            "id", "transition", "state", "previous", "active", "acknowledged", "priority",
            "priority_level", "message", "tag", "kind", "value", "ts", "ts_ns", "operator",
            "reason", "shelved_until", "shelved_until_ns",
        }  # fmt: skip
        return cls(
            alarm_id=body["id"],
            transition=Transition(body["transition"]),
            state=State(body["state"]),
            previous=State(body["previous"]),
            ts_ns=int(body["ts_ns"]),
            active=bool(body["active"]),
            acknowledged=bool(body["acknowledged"]),
            priority=Priority(int(body["priority_level"])),
            tag=body["tag"],
            kind=Kind(body["kind"]),
            message=body["message"],
            value=body.get("value"),
            operator=body.get("operator"),
            reason=body.get("reason"),
            shelved_until_ns=body.get("shelved_until_ns"),
            extra={k: v for k, v in body.items() if k not in known},
        )


class ActionRefused(Exception):
    """An operator action that does not apply in the alarm's current state (says why)."""
