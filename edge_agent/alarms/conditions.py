"""Raw conditions: does this sample put the alarm's condition on (True), off (False), or leave it
as it is (None)?

Limit alarms judge Good samples only. A Bad or Uncertain value cannot prove a temperature high
or normal, so the condition holds where it was; the tag's own bad-quality alarm is what tells
the operator the measurement is lost (ISA-18.2's "bad PV" alarm). Deadband is applied here: an
active high alarm clears only below `limit − deadband`.
"""

from __future__ import annotations

import math

from edge_agent.alarms.model import AlarmDefinition, Kind
from edge_agent.contracts.samples import Quality, Sample, Value

NS = 1_000_000_000
_UPWARD = frozenset((Kind.HIGH, Kind.HIGH_HIGH))
_DOWNWARD = frozenset((Kind.LOW, Kind.LOW_LOW))


def number(sample: Sample | None) -> float | None:
    """The sample's value when it can take part in a comparison: Good, finite, numeric."""
    if sample is None or sample.quality is not Quality.GOOD:
        return None
    value = sample.value
    if isinstance(value, bool):
        return float(value)
    if not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def beyond(measure: float, limit: float, deadband: float, active: bool, upward: bool) -> bool:
    """Limit check with hysteresis: activate beyond the limit, clear only past the deadband."""
    if upward:
        return measure > (limit - deadband if active else limit)
    return measure < (limit + deadband if active else limit)


class ConditionMemory:
    """Per-alarm memory some kinds need: the previous value (rate of change), the time the tag's
    timestamp last advanced (stale)."""

    __slots__ = ("last_advance_ns", "last_ts_ns", "prev")

    def __init__(self, started_ns: int) -> None:
        self.prev: tuple[int, float] | None = None
        self.last_ts_ns: int | None = None
        self.last_advance_ns = started_ns  # before the first sample, staleness counts from start


def raw_condition(
    defn: AlarmDefinition,
    sample: Sample,
    reference: Sample | None,
    active: bool,
    memory: ConditionMemory,
) -> tuple[bool | None, Value | None]:
    """The raw condition from a new sample of the alarm's own tag, and the value to report."""
    kind = defn.kind
    if kind in _UPWARD or kind in _DOWNWARD:  # the common case first
        value = number(sample)
        if value is None or defn.limit is None:
            return None, sample.value
        return beyond(value, defn.limit, defn.deadband, active, kind in _UPWARD), value
    if kind is Kind.BAD_QUALITY:
        return sample.quality is Quality.BAD, sample.reason or sample.quality.value
    if kind is Kind.STALE:
        if memory.last_ts_ns is None or sample.ts_ns > memory.last_ts_ns:
            memory.last_ts_ns, memory.last_advance_ns = sample.ts_ns, sample.acq_ns
            return False, sample.value
        return None, sample.value  # the same timestamp again: a frozen value, judged by tick
    if kind is Kind.DISCRETE:
        if sample.quality is not Quality.GOOD:
            return None, sample.value
        return sample.value == defn.state, sample.value
    value = number(sample)
    if value is None or defn.limit is None:
        return None, sample.value
    if kind is Kind.RATE_OF_CHANGE:
        return _rate(defn, defn.limit, sample.ts_ns, value, active, memory), value
    if kind is Kind.DEVIATION:
        ref = number(reference)
        if ref is None:
            return None, value
        return beyond(abs(value - ref), defn.limit, defn.deadband, active, upward=True), value
    return None, value  # EXTERNAL: judged by the server that raised it


def stale_due(defn: AlarmDefinition, now_ns: int, memory: ConditionMemory) -> bool:
    """Stale alarms are judged by the clock: no advancing sample for `limit` seconds."""
    assert defn.limit is not None
    return now_ns - memory.last_advance_ns > int(defn.limit * NS)


def _rate(
    defn: AlarmDefinition, limit: float, ts_ns: int, value: float, active: bool, m: ConditionMemory
) -> bool | None:
    prev, m.prev = m.prev, (ts_ns, value)
    if prev is None or ts_ns <= prev[0]:
        return None
    per_min = abs(value - prev[1]) / ((ts_ns - prev[0]) / NS) * 60.0
    return beyond(per_min, limit, defn.deadband, active, upward=True)
