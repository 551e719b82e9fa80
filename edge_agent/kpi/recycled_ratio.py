"""Recycled-feed ratio: the share of recycled material in the furnace's dry input.

`R = Σ recycled / (Σ recycled + Σ primary)`, in percent, instantaneous from the feed rates and
per calendar window from totaliser increments. Streams with role `excluded` (flux, reverts) are
read but do not count. On the copper basis each stream is weighted by its Cu content.

A totaliser that goes backwards was reset: that increment is unknown and dropped (the window's
coverage shows the hole). Readings further apart than `max_gap_s` are a gap: the increment
across it cannot be placed in time, so it is dropped too and reported.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from edge_agent.kpi.windows import NS, Calendar, WindowSet

Role = Literal["primary", "recycled", "excluded"]
Basis = Literal["mass", "cu"]


@dataclass(frozen=True)
class Stream:
    name: str
    role: Role
    cu_fraction: float | None = None

    def weight(self, basis: Basis) -> float:
        if basis == "cu":
            return self.cu_fraction if self.cu_fraction is not None else 0.0
        return 1.0


def ratio_pct(amounts: dict[str, float], streams: list[Stream], basis: Basis) -> float | None:
    """Recycled share in percent of the amounts (t or t/h) by stream, or None if nothing fed."""
    recycled = primary = 0.0
    for s in streams:
        value = amounts.get(s.name, 0.0) * s.weight(basis)
        if s.role == "recycled":
            recycled += value
        elif s.role == "primary":
            primary += value
    total = recycled + primary
    return None if total <= 0 else 100.0 * recycled / total


def target_pct(milestones: dict[int, float], when: datetime) -> float:
    """The trajectory's target on `when`: linear between milestones (1 Jan of each year)."""
    years = sorted(milestones)
    start = datetime(when.year, 1, 1, tzinfo=when.tzinfo)
    end = datetime(when.year + 1, 1, 1, tzinfo=when.tzinfo)
    t = when.year + (when - start) / (end - start)
    if t <= years[0]:
        return milestones[years[0]]
    for a, b in itertools.pairwise(years):
        if t <= b:
            return milestones[a] + (milestones[b] - milestones[a]) * (t - a) / (b - a)
    return milestones[years[-1]]


@dataclass
class _Totaliser:
    last_t: float | None = None
    last_ns: int | None = None


class RatioTracker:
    """Totaliser increments per stream, accumulated into the calendar windows."""

    def __init__(
        self, streams: list[Stream], calendar: Calendar, max_gap_s: float, now_ns: int
    ) -> None:
        self.streams = streams
        self.max_gap_ns = int(max_gap_s * NS)
        self.windows = WindowSet(calendar, now_ns)
        self._tot: dict[str, _Totaliser] = {s.name: _Totaliser() for s in streams}

    def ingest(self, name: str, total_t: float, ts_ns: int) -> str | None:
        """Take one Good totaliser reading (tonnes). Returns "reset", "gap" or None."""
        tot = self._tot[name]
        if tot.last_ns is not None and ts_ns <= tot.last_ns:
            return None  # the same reading again, or out of order
        prev_t, prev_ns = tot.last_t, tot.last_ns
        tot.last_t, tot.last_ns = total_t, ts_ns
        if prev_t is None or prev_ns is None:
            return None
        if total_t < prev_t:
            self.windows.mark(ts_ns, reset=True)
            return "reset"
        if ts_ns - prev_ns > self.max_gap_ns:
            self.windows.mark(ts_ns, gap=True)
            return "gap"
        self.windows.add(name, prev_ns, ts_ns, total_t - prev_t)
        return None

    def roll(self, now_ns: int) -> None:
        self.windows.roll(now_ns)

    def window(self, kind: str, now_ns: int, basis: Basis) -> tuple[float | None, float]:
        """(ratio %, coverage 0..1) of the current window of `kind`."""
        w = self.windows.current[kind]
        counted = [s for s in self.streams if s.role != "excluded"]
        coverage = min((w.coverage(s.name, now_ns) for s in counted), default=0.0)
        return ratio_pct(w.sums, self.streams, basis), coverage

    def to_json(self) -> dict[str, Any]:
        return {
            "windows": self.windows.to_json(),
            "totalisers": {n: [t.last_t, t.last_ns] for n, t in self._tot.items()},
        }

    def restore(self, data: dict[str, Any], now_ns: int) -> None:
        self.windows.restore(data.get("windows", {}), now_ns)
        for name, (last_t, last_ns) in data.get("totalisers", {}).items():
            if name in self._tot and last_ns is not None:
                self._tot[name] = _Totaliser(float(last_t), int(last_ns))
