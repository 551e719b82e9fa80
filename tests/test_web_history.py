"""The history ring and the advisor's change log: pure logic, no I/O."""

from __future__ import annotations

import math
import random

from edge_agent.contracts.samples import Quality, Sample
from edge_agent.web.history import ChangeLog, HistoryRing
from tests.support.random_samples import random_batch

S = 1_000_000_000
T0 = 1_800_000_000 * S  # a multiple of every step used here


def good(tag: str, value: float | str | bool, t_s: float) -> Sample:
    return Sample(tag, value, Quality.GOOD, T0 + int(t_s * S), T0 + int(t_s * S))


def test_buckets_hold_the_mean_and_end_at_now() -> None:
    ring = HistoryRing(history_s=60, step_s=10)
    ring.record([good("a.x", 1.0, 0), good("a.x", 3.0, 5), good("a.x", 10.0, 12)])
    series = ring.series("a.x", T0 + 15 * S)
    assert len(series) == 6
    assert series[-2:] == [2.0, 10.0]
    assert series[:-2] == [None] * 4


def test_bad_and_non_finite_values_mark_the_bucket_bad_never_fake_it() -> None:
    ring = HistoryRing(history_s=60, step_s=10)
    ring.record([
        Sample.bad("a.x", "BadSensorFailure", T0),  # no series yet: nothing to mark
        good("a.x", 5.0, 10),
        good("a.x", float("nan"), 20),
        good("a.x", float("inf"), 30),
        Sample.bad("a.x", "BadSensorFailure", T0 + 40 * S),
        good("a.text", "running", 20),
        good("a.flag", True, 20),
        Sample("a.x", 7.0, Quality.UNCERTAIN, T0 + 50 * S, T0 + 50 * S, "stale"),
    ])  # fmt: skip
    got = ring.series("a.x", T0 + 50 * S)
    assert got[:2] == [None, 5.0]
    assert [v is not None and math.isnan(v) for v in got[2:5]] == [True, True, True]
    assert got[5] == 7.0
    assert ring.tags() == ["a.x"]  # text and flags cost nothing


def test_old_buckets_are_reused_and_older_samples_ignored() -> None:
    ring = HistoryRing(history_s=30, step_s=10)
    ring.record([good("a.x", 1.0, 0)])
    ring.record([good("a.x", 5.0, 30)])  # same slot, one ring later: replaces
    ring.record([good("a.x", 99.0, 1)])  # older than the ring reaches: dropped
    assert ring.series("a.x", T0 + 30 * S) == [None, None, 5.0]


def test_memory_is_fixed_per_tag() -> None:
    ring = HistoryRing(history_s=3600, step_s=30)
    ring.record([good(f"u.t{i}", float(i), 0) for i in range(1000)])
    ring.record([good(f"u.t{i}", float(i), 1) for i in range(1000)])
    assert ring.slots == 120
    assert ring.memory_bytes() == 1000 * 120 * 21


def test_window_matches_series_axis() -> None:
    ring = HistoryRing(history_s=60, step_s=10)
    start_ms, step_ms = ring.window(T0 + 15 * S)
    assert step_ms == 10_000
    assert start_ms == (T0 + 10 * S - 50 * S) // 1_000_000


def test_change_log_keeps_changes_only() -> None:
    log = ChangeLog(["kpi.advisor.reason", "kpi.advisor.escrap_feed_sp"], size=3)
    log.record([
        good("kpi.advisor.reason", "feed steadiness not yet known (16 of 300 s)", 0),
        good("kpi.advisor.reason", "feed steadiness not yet known (21 of 300 s)", 5),
        good("kpi.advisor.escrap_feed_sp", 14.000001, 5),
        good("kpi.advisor.escrap_feed_sp", 14.000002, 10),
        good("kpi.advisor.escrap_feed_sp", 16.0, 15),
        good("fsf.matte_temp", 1250.0, 15),
    ])  # fmt: skip
    assert [(c.tag, c.value) for c in log.entries] == [
        ("kpi.advisor.reason", "feed steadiness not yet known (16 of 300 s)"),
        ("kpi.advisor.escrap_feed_sp", 14.000001),
        ("kpi.advisor.escrap_feed_sp", 16.0),
    ]


def test_at_most_one_value_per_tag_and_second_feeds_the_mean() -> None:
    ring = HistoryRing(history_s=60, step_s=10)
    # 10 Hz for two seconds: 1.0 .. 1.9 in second 0, 2.0 .. 2.9 in second 1
    ring.record([good("a.x", 1.0 + k / 10, k / 10) for k in range(20)])
    assert ring.series("a.x", T0 + 5 * S)[-1] == (1.0 + 2.0) / 2  # the first of each second


def test_a_bad_sample_marks_its_bucket_even_within_a_fed_second() -> None:
    ring = HistoryRing(history_s=60, step_s=10)
    ring.record([good("a.x", 1.0, 9.5)])  # feeds second 9, bucket 0
    ring.record([good("a.x", float("nan"), 9.6), Sample.bad("a.x", "BadSensorFailure", T0 + 9 * S)])
    ring.record([Sample.bad("a.x", "BadSensorFailure", T0 + 15 * S)])  # bucket 1: only Bad
    ring.record([good("a.x", 2.0, 15.5)])  # ... then Good in the same second: a first, it feeds
    ring.record([Sample.bad("a.x", "BadSensorFailure", T0 + 25 * S)])  # bucket 2: only Bad
    got = ring.series("a.x", T0 + 25 * S)
    assert got[-3:-1] == [1.0, 2.0]
    assert math.isnan(got[-1])  # type: ignore[arg-type]
    assert ring._series["a.x"].bad[0] == 1  # the NaN and the Bad of the fed second: marked


def test_a_bucket_that_begins_inside_a_second_takes_its_first_value() -> None:
    ring = HistoryRing(history_s=60, step_s=1.5)  # buckets start at 0, 1.5, 3.0 s
    ring.record([good("a.x", v, t) for v, t in ((1.0, 1.2), (2.0, 1.6), (3.0, 1.8))])
    assert ring.series("a.x", T0 + int(1.6 * S))[-2:] == [1.0, 2.0]


# The straightforward history, one sample at a time: the reference the ring must match exactly.
def reference_series(
    batches: list[list[Sample]], history_s: float, step_s: float, now_ns: int
) -> dict[str, list[float | None]]:
    step, slots = round(step_s * S), math.ceil(history_s / step_s)
    buckets: dict[str, dict[int, list[float]]] = {}  # tag -> slot -> [epoch, sum, count, bad]
    fed: dict[str, tuple[int, int]] = {}  # tag -> (second, bucket) whose value is in the mean
    for s in (s for batch in batches for s in batch):
        if isinstance(s.value, (str, bool)):
            continue
        bad = s.quality is Quality.BAD or s.value is None or not math.isfinite(s.value)
        if s.tag not in buckets:
            if bad:
                continue
            buckets[s.tag] = {}
        epoch = s.ts_ns // step
        window = (s.ts_ns // S, epoch)
        if not bad and fed.get(s.tag) == window:
            continue
        slot = buckets[s.tag].setdefault(epoch % slots, [-1, 0.0, 0, 0])
        if slot[0] > epoch:
            continue
        if slot[0] < epoch:
            slot[:] = [epoch, 0.0, 0, 0]
        if bad:
            slot[3] = 1
            continue
        slot[1] += s.value  # type: ignore[operator]
        slot[2] += 1
        fed[s.tag] = window
    out: dict[str, list[float | None]] = {}
    last = now_ns // step
    for tag, ring in buckets.items():
        series: list[float | None] = []
        for epoch in range(last - slots + 1, last + 1):
            e, total, count, was_bad = ring.get(epoch % slots, [-1, 0.0, 0, 0])
            if e != epoch:
                series.append(None)
            elif count:
                series.append(total / count)
            else:
                series.append(math.nan if was_bad else None)
        out[tag] = series
    return out


def random_batches(rng: random.Random, n: int) -> list[list[Sample]]:
    """Batches of random samples, some within a second of the last, some seconds later, some
    back in time, some beyond the ring's reach."""
    t = T0
    batches: list[list[Sample]] = []
    for _ in range(n):
        t += rng.choice([0, 1, 10**7, 10**8, 3 * 10**8, S, 7 * S, 40 * S, -S])
        batches.append(random_batch(rng, t))
    return batches


def same(a: list[float | None], b: list[float | None]) -> bool:
    return len(a) == len(b) and all(
        x == y or (x is not None and y is not None and math.isnan(x) and math.isnan(y))
        for x, y in zip(a, b, strict=True)
    )


def test_the_ring_matches_the_reference_over_random_batches() -> None:
    rng = random.Random(19)
    for case in range(200):
        history_s, step_s = rng.choice([(60, 10), (30, 1), (60, 1.5), (3600, 30), (20, 2.5)])
        batches = random_batches(rng, rng.randint(1, 60))
        ring = HistoryRing(history_s, step_s)
        for batch in batches:
            ring.record(batch)
        end = max(s.ts_ns for batch in batches for s in batch)
        for now in (end, end + 5 * S):
            expected = reference_series(batches, history_s, step_s, now)
            assert sorted(ring.tags()) == sorted(expected), case
            for tag, series in expected.items():
                assert same(ring.series(tag, now), series), (case, tag)
