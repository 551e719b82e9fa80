"""The ISA-18.2 state machine of one alarm: pure, clock passed in, every change an `AlarmEvent`.

Two independent halves make the state:

- the process side, `active`: the debounced condition. A raw condition that differs from it
  starts a pending period; only if it still differs after the on-delay (to activate) or the
  off-delay (to clear) does `active` flip. A raw condition that flips back in the meantime
  cancels the pending change, which is what keeps a chattering signal from flooding the operator.
- the operator side: `acknowledged`, and the three removals from annunciation (out of service,
  suppressed by design, shelved; checked in that order).

While removed, the alarm still follows its condition (so it comes back truthful) but announces
nothing. When it returns, an alarm whose condition is active comes back unacknowledged (it is
annunciated again: the operator must see it), one whose condition is clear comes back normal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edge_agent.alarms.model import (
    ActionRefused,
    AlarmDefinition,
    AlarmEvent,
    Kind,
    State,
    Transition,
)
from edge_agent.contracts.samples import Value

NS = 1_000_000_000


@dataclass(slots=True)
class AlarmStatus:
    """The mutable state of one alarm. `raw` is the last raw condition seen (None: unknown)."""

    defn: AlarmDefinition
    active: bool = False
    acknowledged: bool = True
    pending_since_ns: int | None = None
    active_since_ns: int | None = None  # for EEMUA's stale alarms (active more than 24 h)
    value: Value | None = None
    shelved_until_ns: int | None = None
    shelve_reason: str | None = None
    suppressed: bool = False
    out_of_service: bool = False

    @property
    def state(self) -> State:
        if self.out_of_service:
            return State.OUT_OF_SERVICE
        if self.suppressed:
            return State.SUPPRESSED
        if self.shelved_until_ns is not None:
            return State.SHELVED
        if self.active:
            return State.ACTIVE_ACK if self.acknowledged else State.ACTIVE_UNACK
        return State.NORMAL if self.acknowledged else State.RETURNED_UNACK

    @property
    def removed(self) -> bool:
        return self.out_of_service or self.suppressed or self.shelved_until_ns is not None

    # ------------------------------------------------------------------------ process side

    def observe(self, raw: bool | None, ts_ns: int, value: Value | None) -> list[AlarmEvent]:
        """A raw condition from a sample at source time `ts_ns`; None (unknown) changes nothing."""
        if raw is None:
            return []
        self.value = value
        if raw == self.active:
            self.pending_since_ns = None
            return []
        if self.pending_since_ns is None:
            self.pending_since_ns = ts_ns
        if ts_ns - self.pending_since_ns >= self._delay_ns(raw):
            return self._flip(raw, ts_ns)
        return []

    def tick(self, now_ns: int) -> list[AlarmEvent]:
        """Time passing without samples: a pending change whose delay ran out, a shelf expiring."""
        events: list[AlarmEvent] = []
        if self.pending_since_ns is not None:
            due = self.pending_since_ns + self._delay_ns(not self.active)
            if now_ns >= due:
                events += self._flip(not self.active, due)
        if self.shelved_until_ns is not None and now_ns >= self.shelved_until_ns:
            events += self._restore(
                Transition.SHELVE_EXPIRED, self.shelved_until_ns, lambda: self._unshelve()
            )
        return events

    def next_due_ns(self) -> int | None:
        """The earliest time `tick` has something to do (None: nothing scheduled)."""
        due = [
            t
            for t in (
                self.pending_since_ns + self._delay_ns(not self.active)
                if self.pending_since_ns is not None
                else None,
                self.shelved_until_ns,
            )
            if t is not None
        ]
        return min(due) if due else None

    def set_suppressed(self, suppressed: bool, ts_ns: int) -> list[AlarmEvent]:
        if suppressed == self.suppressed:
            return []
        if suppressed:
            previous = self.state
            self.suppressed = True
            return [self._event(Transition.SUPPRESSED, previous, ts_ns)]

        def lift() -> None:
            self.suppressed = False

        return self._restore(Transition.UNSUPPRESSED, ts_ns, lift)

    def follow(
        self,
        active: bool,
        acknowledged: bool,
        ts_ns: int,
        operator: str | None = None,
        reason: str | None = None,
    ) -> list[AlarmEvent]:
        """Take a state the OPC UA server decides (Kind.EXTERNAL): no delays of ours, and its
        acknowledgement (by `operator`, from the server's ClientUserId) becomes ours."""
        events = self._flip(active, ts_ns) if active != self.active else []
        if acknowledged and not self.acknowledged and not self.removed:
            previous = self.state
            self.acknowledged = True
            events.append(self._event(Transition.ACKNOWLEDGED, previous, ts_ns, operator, reason))
        return events

    def _delay_ns(self, to_active: bool) -> int:
        delay_s = self.defn.on_delay_s if to_active else self.defn.off_delay_s
        return int(delay_s * NS)

    def _flip(self, active: bool, ts_ns: int) -> list[AlarmEvent]:
        previous = self.state
        self.active = active
        self.active_since_ns = ts_ns if active else None
        self.pending_since_ns = None
        if self.removed:
            return []  # followed, not announced
        if active:
            self.acknowledged = False
        transition = Transition.ACTIVATED if active else Transition.CLEARED
        return [self._event(transition, previous, ts_ns)]

    # ----------------------------------------------------------------------- operator side

    def acknowledge(self, ts_ns: int, operator: str, reason: str | None) -> AlarmEvent:
        if self.removed or self.acknowledged:
            raise ActionRefused(f"nothing to acknowledge: the alarm is {self.state.value}")
        previous = self.state
        self.acknowledged = True
        return self._event(Transition.ACKNOWLEDGED, previous, ts_ns, operator, reason)

    def shelve(self, ts_ns: int, until_ns: int, operator: str, reason: str) -> AlarmEvent:
        if self.out_of_service or self.suppressed:
            raise ActionRefused(f"cannot shelve: the alarm is {self.state.value}")
        if until_ns <= ts_ns:
            raise ActionRefused("the shelf must expire in the future")
        previous = self.state
        self.shelved_until_ns, self.shelve_reason = until_ns, reason
        return self._event(Transition.SHELVED, previous, ts_ns, operator, reason)

    def unshelve(self, ts_ns: int, operator: str, reason: str | None) -> list[AlarmEvent]:
        if self.shelved_until_ns is None:
            raise ActionRefused(f"not shelved: the alarm is {self.state.value}")
        return self._restore(Transition.UNSHELVED, ts_ns, self._unshelve, operator, reason)

    def remove_from_service(self, ts_ns: int, operator: str, reason: str) -> AlarmEvent:
        if self.out_of_service:
            raise ActionRefused("already out of service")
        previous = self.state
        self.out_of_service = True
        self.shelved_until_ns = self.shelve_reason = None  # service status outranks a shelf
        return self._event(Transition.REMOVED_FROM_SERVICE, previous, ts_ns, operator, reason)

    def return_to_service(self, ts_ns: int, operator: str, reason: str | None) -> list[AlarmEvent]:
        if not self.out_of_service:
            raise ActionRefused(f"not out of service: the alarm is {self.state.value}")

        def back() -> None:
            self.out_of_service = False

        return self._restore(Transition.RETURNED_TO_SERVICE, ts_ns, back, operator, reason)

    def _unshelve(self) -> None:
        self.shelved_until_ns = self.shelve_reason = None

    def _restore(
        self,
        transition: Transition,
        ts_ns: int,
        lift: Callable[[], None],
        operator: str | None = None,
        reason: str | None = None,
    ) -> list[AlarmEvent]:
        """Lift one removal; if that returns the alarm to annunciation, re-evaluate it."""
        previous = self.state
        lift()
        if not self.removed:
            self.acknowledged = not self.active
        return [self._event(transition, previous, ts_ns, operator, reason)]

    # -------------------------------------------------------------------------- persistence

    def snapshot(self) -> dict[str, Any]:
        external = (
            {"priority": int(self.defn.priority), "message": self.defn.message,
             "source": self.defn.source}
            if self.defn.kind is Kind.EXTERNAL
            else {}
        )  # fmt: skip
        return {
            **external,
            "tag": self.defn.tag,
            "kind": self.defn.kind.value,
            "active": self.active,
            "active_since_ns": self.active_since_ns,
            "acknowledged": self.acknowledged,
            "value": self.value,
            "shelved_until_ns": self.shelved_until_ns,
            "shelve_reason": self.shelve_reason,
            "suppressed": self.suppressed,
            "out_of_service": self.out_of_service,
        }

    def restore(self, data: dict[str, Any]) -> bool:
        """Take back a snapshot of the same alarm (same tag and kind); False when it does not fit.

        Pending delays are not restored: after a restart the condition is judged afresh, on
        fresh samples, with its full delays.
        """
        if data.get("tag") != self.defn.tag or data.get("kind") != self.defn.kind.value:
            return False
        until, since = data.get("shelved_until_ns"), data.get("active_since_ns")
        self.active = bool(data.get("active"))
        self.active_since_ns = since if isinstance(since, int) and self.active else None
        self.acknowledged = bool(data.get("acknowledged", True))
        self.value = data.get("value")
        self.shelved_until_ns = int(until) if isinstance(until, int) else None
        self.shelve_reason = data.get("shelve_reason") if self.shelved_until_ns else None
        self.suppressed = bool(data.get("suppressed"))
        self.out_of_service = bool(data.get("out_of_service"))
        self.pending_since_ns = None
        return True

    def _event(
        self,
        transition: Transition,
        previous: State,
        ts_ns: int,
        operator: str | None = None,
        reason: str | None = None,
    ) -> AlarmEvent:
        d = self.defn
        return AlarmEvent(
            alarm_id=d.id,
            transition=transition,
            state=self.state,
            previous=previous,
            ts_ns=ts_ns,
            active=self.active,
            acknowledged=self.acknowledged,
            priority=d.priority,
            tag=d.tag,
            kind=d.kind,
            message=d.message,
            value=self.value,
            operator=operator,
            reason=reason if reason is not None else self.shelve_reason,
            shelved_until_ns=self.shelved_until_ns,
        )
