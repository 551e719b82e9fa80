"""Calendar windows in the site's time zone: hour, shift, day, month, fiscal year.

Windows are identified by the UTC instant of their start, so the repeated hour at the end of
daylight saving time is two windows and a 23- or 25-hour day is one. Quantities are accumulated
per window from increments over (t0, t1]; an increment that straddles a boundary is split in
proportion to time, and each window records how much of its elapsed time its data covers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

WINDOWS = ("hour", "shift", "day", "month", "fiscal_year")
NS = 1_000_000_000


@dataclass(frozen=True)
class Calendar:
    tz: ZoneInfo
    shifts: tuple[time, ...] = (time(6), time(14), time(22))
    fy_start_month: int = 4

    def start(self, kind: str, ts_ns: int) -> int:
        """Start (UTC ns) of the window of `kind` that contains `ts_ns`."""
        local = datetime.fromtimestamp(ts_ns / NS, self.tz)
        if kind == "hour":
            return _ns(local.replace(minute=0, second=0, microsecond=0))
        if kind == "day":
            return self._midnight(local.date())
        if kind == "month":
            return self._midnight(local.date().replace(day=1))
        if kind == "fiscal_year":
            year = local.year if local.month >= self.fy_start_month else local.year - 1
            return self._midnight(date(year, self.fy_start_month, 1))
        if kind == "shift":
            starts = [
                _ns(datetime.combine(d, t, self.tz))
                for d in (local.date() - timedelta(days=1), local.date())
                for t in self.shifts
            ]
            return max(s for s in starts if s <= ts_ns)
        raise ValueError(f"unknown window {kind!r}")

    def end(self, kind: str, start_ns: int) -> int:
        """Start of the following window."""
        local = datetime.fromtimestamp(start_ns / NS, self.tz)
        if kind == "hour":
            return start_ns + 3600 * NS
        if kind == "day":
            return self._midnight(local.date() + timedelta(days=1))
        if kind == "month":
            d = local.date()
            return self._midnight(date(d.year + d.month // 12, d.month % 12 + 1, 1))
        if kind == "fiscal_year":
            return self._midnight(date(local.year + 1, self.fy_start_month, 1))
        if kind == "shift":
            later = [
                _ns(datetime.combine(d, t, self.tz))
                for d in (local.date(), local.date() + timedelta(days=1))
                for t in self.shifts
            ]
            return min(s for s in later if s > start_ns)
        raise ValueError(f"unknown window {kind!r}")

    def _midnight(self, d: date) -> int:
        return _ns(datetime.combine(d, time(0), self.tz))


def _ns(dt: datetime) -> int:
    return round(dt.timestamp()) * NS


@dataclass
class Window:
    """Running totals of one window."""

    kind: str
    start_ns: int
    end_ns: int
    sums: dict[str, float] = field(default_factory=dict)
    covered_ns: dict[str, int] = field(default_factory=dict)
    gaps: int = 0
    resets: int = 0

    def coverage(self, name: str, now_ns: int) -> float:
        elapsed = min(now_ns, self.end_ns) - self.start_ns
        if elapsed <= 0:
            return 1.0
        return min(1.0, self.covered_ns.get(name, 0) / elapsed)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "sums": self.sums,
            "covered_ns": self.covered_ns,
            "gaps": self.gaps,
            "resets": self.resets,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Window:
        return cls(
            kind=str(data["kind"]),
            start_ns=int(data["start_ns"]),
            end_ns=int(data["end_ns"]),
            sums={str(k): float(v) for k, v in data["sums"].items()},
            covered_ns={str(k): int(v) for k, v in data["covered_ns"].items()},
            gaps=int(data["gaps"]),
            resets=int(data["resets"]),
        )


class WindowSet:
    """The current window of every kind, accumulating named quantities."""

    def __init__(self, calendar: Calendar, now_ns: int) -> None:
        self.calendar = calendar
        self.current: dict[str, Window] = {k: self._open(k, now_ns) for k in WINDOWS}
        self.closed: list[Window] = []  # drained by the caller (published / logged)

    def _open(self, kind: str, ts_ns: int) -> Window:
        start = self.calendar.start(kind, ts_ns)
        return Window(kind, start, self.calendar.end(kind, start))

    def add(self, name: str, t0_ns: int, t1_ns: int, amount: float) -> None:
        """Attribute `amount`, accumulated evenly over (t0, t1], to the windows it falls in."""
        if t1_ns <= t0_ns:
            return
        for kind in WINDOWS:
            w = self.current[kind]
            if t1_ns > w.end_ns:  # finish the old window with its share, then open the next
                self._credit(w, name, t0_ns, t1_ns, amount)
                self.roll_kind(kind, t1_ns)
                w = self.current[kind]
            self._credit(w, name, t0_ns, t1_ns, amount)

    @staticmethod
    def _credit(w: Window, name: str, t0: int, t1: int, amount: float) -> None:
        lo, hi = max(t0, w.start_ns), min(t1, w.end_ns)
        if hi <= lo:
            w.sums.setdefault(name, 0.0)
            return
        w.sums[name] = w.sums.get(name, 0.0) + amount * (hi - lo) / (t1 - t0)
        w.covered_ns[name] = w.covered_ns.get(name, 0) + (hi - lo)

    def mark(self, ts_ns: int, *, gap: bool = False, reset: bool = False) -> None:
        for w in self.current.values():
            if w.start_ns <= ts_ns:
                w.gaps += int(gap)
                w.resets += int(reset)

    def roll(self, now_ns: int) -> None:
        for kind in WINDOWS:
            if now_ns >= self.current[kind].end_ns:
                self.roll_kind(kind, now_ns)

    def roll_kind(self, kind: str, now_ns: int) -> None:
        self.closed.append(self.current[kind])
        self.current[kind] = self._open(kind, now_ns)

    def to_json(self) -> dict[str, Any]:
        return {k: w.to_json() for k, w in self.current.items()}

    def restore(self, data: dict[str, Any], now_ns: int) -> None:
        """Take over persisted windows that are still current; older ones are over."""
        for kind in WINDOWS:
            if kind not in data:
                continue
            saved = Window.from_json(data[kind])
            if saved.start_ns == self.current[kind].start_ns:
                self.current[kind] = saved
