"""Alarm-system performance as EEMUA 191 measures it, from a list of activations.

One function, `figures`, serves both the live `/metrics` (the last 24 h the engine remembers)
and `edge-agent alarms report` (activations read back from InfluxDB), so both count alike:

- alarms per 10 minutes: the average over the period, and the busiest 10-minute interval;
- flood: a 10-minute interval (aligned to the clock) with more than 10 activations; the share
  of the period's intervals in flood;
- chattering: an alarm that activated three or more times within one minute;
- stale: an alarm active (not removed) for more than 24 hours (from the live states);
- the ten most frequent alarms.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from edge_agent.alarms.machine import AlarmStatus

NS = 1_000_000_000
INTERVAL_NS = 600 * NS
FLOOD_ABOVE = 10
CHATTER_COUNT = 3
CHATTER_WINDOW_NS = 60 * NS
STALE_AFTER_NS = 24 * 3600 * NS
MEMORY_NS = 24 * 3600 * NS
MEMORY_MAX = 200_000  # activations kept for the live figures (a flood of floods stays bounded)

Activation = tuple[int, str]  # (ts_ns, alarm id)


@dataclass(frozen=True)
class Figures:
    start_ns: int
    end_ns: int
    activations: int
    per_10min_avg: float
    per_10min_peak: int
    intervals: int
    flood_intervals: int
    chattering: tuple[str, ...]
    top: tuple[tuple[str, int], ...]

    @property
    def flood_share(self) -> float:
        return self.flood_intervals / self.intervals if self.intervals else 0.0


def figures(activations: Iterable[Activation], start_ns: int, end_ns: int) -> Figures:
    """The EEMUA figures of the activations in [start_ns, end_ns)."""
    inside = sorted(a for a in activations if start_ns <= a[0] < end_ns)
    first = start_ns // INTERVAL_NS
    intervals = max(1, -(-(end_ns - first * INTERVAL_NS) // INTERVAL_NS))
    per_interval = Counter(ts // INTERVAL_NS for ts, _ in inside)
    by_alarm: dict[str, list[int]] = {}
    for ts, alarm_id in inside:
        by_alarm.setdefault(alarm_id, []).append(ts)
    return Figures(
        start_ns=start_ns,
        end_ns=end_ns,
        activations=len(inside),
        per_10min_avg=len(inside) / intervals,
        per_10min_peak=max(per_interval.values(), default=0),
        intervals=intervals,
        flood_intervals=sum(1 for n in per_interval.values() if n > FLOOD_ABOVE),
        chattering=tuple(sorted(a for a, times in by_alarm.items() if _chatters(times))),
        top=tuple(
            sorted(((a, len(t)) for a, t in by_alarm.items()), key=lambda x: (-x[1], x[0]))[:10]
        ),
    )


def _chatters(times: Sequence[int]) -> bool:
    k = CHATTER_COUNT - 1
    return any(times[i + k] - times[i] < CHATTER_WINDOW_NS for i in range(len(times) - k))


def stale(statuses: Iterable[AlarmStatus], now_ns: int) -> list[str]:
    return [
        s.defn.id
        for s in statuses
        if s.active
        and not s.removed
        and s.active_since_ns is not None
        and now_ns - s.active_since_ns > STALE_AFTER_NS
    ]


class PerformanceTracker:
    """The last 24 h of activations, for the live figures in /metrics."""

    def __init__(self) -> None:
        self._recent: deque[Activation] = deque(maxlen=MEMORY_MAX)
        self.activations_total = 0

    def activated(self, alarm_id: str, ts_ns: int) -> None:
        self._recent.append((ts_ns, alarm_id))
        self.activations_total += 1

    def expire(self, now_ns: int) -> None:
        while self._recent and self._recent[0][0] < now_ns - MEMORY_NS:
            self._recent.popleft()

    def figures(self, now_ns: int, statuses: Iterable[AlarmStatus]) -> dict[str, float]:
        last = figures(self._recent, now_ns - INTERVAL_NS, now_ns + 1)
        day = figures(self._recent, now_ns - MEMORY_NS, now_ns + 1)
        return {
            "activations_last_10min": float(last.activations),
            "per_10min_avg_24h": day.per_10min_avg,
            "per_10min_peak_24h": float(day.per_10min_peak),
            "flood_share_24h": day.flood_share,
            "chattering_24h": float(len(day.chattering)),
            "stale": float(len(stale(statuses, now_ns))),
        }
