"""The history ring and the advisor's change log: pure logic, no I/O."""

from __future__ import annotations

import math

from edge_agent.contracts.samples import Quality, Sample
from edge_agent.web.history import ChangeLog, HistoryRing

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
