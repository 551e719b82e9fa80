"""The web view's memory of the last hour: a fixed grid of time buckets per tag, and a short log
of text values (the advisor's verdicts).

Why buckets and not samples: at 10 000 tags polled every second an hour of raw samples is 36
million points; a sparkline or a trend on a screen shows at most a few hundred. Each numeric tag
keeps `slots` buckets of `step_s` seconds (default 120 × 30 s = one hour) holding the mean of its
Good and Uncertain values in that bucket; a bucket with only Bad samples is marked Bad (a gap in
the chart, never a fake value). The grid is absolute (bucket = timestamp // step), so recording
is O(1) and every tag's buckets line up on the same time axis. Memory is fixed by the settings
and the number of tags: about `slots × 21` bytes per tag (docs/performance.md has the measured
figure); a tag that is never numeric costs nothing.

What a bucket's mean is: the mean of each tag's first Good or Uncertain value of every second in
the bucket (at most one value per tag and second; a tag polled once a second or slower has all
its values in). A tag polled every 100 ms would otherwise pay ten additions a second for a point
drawn once per 30 s, at the agent's highest rates the largest single cost on the event loop; the
mean of one value per second tells an operator the same (a trend is not a measurement record:
the databases have every sample). A bucket always gets the first value that falls in it, and a
tag's first sample is never skipped; Bad samples are never thinned out, so a bucket with nothing
but Bad samples shows the gap.
"""

from __future__ import annotations

import math
import re
from array import array
from collections import deque
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from edge_agent.contracts.samples import Quality, Sample

_NS = 1_000_000_000


class _Series:
    """One tag's ring: sums and counts per bucket, whether a Bad sample arrived in it, which
    absolute bucket each slot holds, and the second whose value last fed a mean (`fed`, in ns)."""

    __slots__ = ("bad", "counts", "epochs", "fed", "sums")

    def __init__(self, slots: int) -> None:
        self.sums = array("d", bytes(8 * slots))
        self.counts = array("I", bytes(4 * slots))
        self.bad = array("B", bytes(slots))
        self.epochs = array("q", [-1]) * slots
        self.fed = -1


class HistoryRing:
    """Bucketed recent history of every numeric tag; fed by the SampleBus, read by the API."""

    def __init__(self, history_s: float = 3600.0, step_s: float = 30.0) -> None:
        self.step_ns = max(1, round(step_s * _NS))
        self.slots = max(2, math.ceil(history_s / step_s))
        self._series: dict[str, _Series] = {}

    def record(self, samples: Iterable[Sample]) -> None:
        """Add a batch (the bus calls this for every published batch, on the loop).

        A Good or Uncertain value feeds its bucket's mean unless a value of the same tag from
        the same second has fed it already (`_Series.fed` holds the start of the last second that
        did, cut at the bucket's start where a bucket begins inside a second): a tag polled every
        100 ms adds one value a second to the mean, not ten, and the other nine cost a few tests.
        A Bad or non-finite sample always marks its bucket. The samples of one read share their
        timestamp, so bucket and second are computed once per timestamp, not once per sample.
        """
        step, slots, series, bad_quality = self.step_ns, self.slots, self._series, Quality.BAD
        isfinite = math.isfinite
        last_ts, window, epoch, i = -1, 0, 0, 0
        for s in samples:
            value = s.value
            cls = value.__class__
            if cls is float:  # the common case first, without a call: NaN - NaN, inf - inf
                bad = s.quality is bad_quality or value - value != 0.0  # type: ignore[operator]
            elif cls is int:
                bad = s.quality is bad_quality
            elif isinstance(value, (str, bool)):
                continue
            else:
                bad = s.quality is bad_quality or value is None or not isfinite(value)
            ring = series.get(s.tag)
            if ring is None:
                if bad:
                    continue  # a tag seen only Bad so far: nothing to draw yet
                ring = series[s.tag] = _Series(slots)
            ts = s.source_ns if s.source_ns is not None else s.acq_ns
            if ts != last_ts:
                last_ts, epoch = ts, ts // step
                i = epoch % slots
                window = max(ts - ts % _NS, epoch * step)  # this second, within this bucket
            if not bad and ring.fed == window:
                continue  # this tag's value of this second is in the mean already
            epochs = ring.epochs
            if epochs[i] != epoch:
                if epochs[i] > epoch:  # older than the ring reaches: nothing to show it in
                    continue
                epochs[i], ring.sums[i], ring.counts[i], ring.bad[i] = epoch, 0.0, 0, 0
            if bad:
                ring.bad[i] = 1
                continue
            ring.sums[i] += value  # type: ignore[operator]
            ring.counts[i] += 1
            ring.fed = window

    def tags(self) -> list[str]:
        return list(self._series)

    def series(self, tag: str, now_ns: int) -> list[float | None]:
        """The tag's bucket means, oldest first, ending with the bucket that holds `now_ns`:
        None where no sample arrived (or the tag is unknown), NaN where only Bad ones did
        (a chart breaks its line there; across an empty bucket it may join its points)."""
        ring = self._series.get(tag)
        last = now_ns // self.step_ns
        out: list[float | None] = []
        for epoch in range(last - self.slots + 1, last + 1):
            i = epoch % self.slots
            if ring is None or ring.epochs[i] != epoch:
                out.append(None)
            elif ring.counts[i]:
                out.append(ring.sums[i] / ring.counts[i])
            else:
                out.append(math.nan if ring.bad[i] else None)
        return out

    def window(self, now_ns: int) -> tuple[int, int]:
        """(start of the oldest bucket, step) in milliseconds, for the client's time axis."""
        first = now_ns // self.step_ns - self.slots + 1
        return first * self.step_ns // 1_000_000, self.step_ns // 1_000_000

    def memory_bytes(self) -> int:
        """What the buckets hold: 8 + 4 + 1 + 8 bytes per slot and tag (without overhead)."""
        return len(self._series) * self.slots * 21


@dataclass(frozen=True, slots=True)
class Change:
    tag: str
    ts_ms: int
    value: str | float | int | bool | None
    quality: str
    reason: str | None


class ChangeLog:
    """The last `size` changes of a few watched tags (the advisor's verdict, reason, policy and
    recommendations): what "the recommendations of the last hours" shows as a list.

    A number counts as changed when it moves in its fourth significant digit, so that a
    recommendation recomputed every cycle does not fill the log with noise."""

    def __init__(self, tags: Collection[str], size: int = 500) -> None:
        self.tags = frozenset(tags)
        self._last: dict[str, tuple[object, str, str]] = {}
        self.entries: deque[Change] = deque(maxlen=size)

    def record(self, samples: Iterable[Sample]) -> None:
        for s in samples:
            if s.tag not in self.tags:
                continue
            key = (_rounded(s.value), s.quality.value, _DIGITS.sub("#", s.reason or ""))
            if self._last.get(s.tag) == key:
                continue
            self._last[s.tag] = key
            self.entries.append(
                Change(s.tag, s.ts_ns // 1_000_000, s.value, s.quality.value, s.reason)
            )


# "not yet known (16 of 300 s)" and "(21 of 300 s)" are the same state of affairs.
_DIGITS = re.compile(r"\d+(\.\d+)?")


def _rounded(value: object) -> object:
    if isinstance(value, str):
        return _DIGITS.sub("#", value)
    if isinstance(value, float) and math.isfinite(value) and value != 0.0:
        return float(f"{value:.4g}")
    return value
