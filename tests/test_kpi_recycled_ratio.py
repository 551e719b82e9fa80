"""Recycled-feed ratio: calendar windows in the site's zone, totaliser resets and gaps,
coverage, unit conversion, the target trajectory and a restart in the middle of a window."""

from __future__ import annotations

from datetime import datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from edge_agent.kpi.recycled_ratio import RatioTracker, Stream, ratio_pct, target_pct
from edge_agent.kpi.state import load_json, save_json
from edge_agent.kpi.units import UnitError, tonnes_factor, tph_factor
from edge_agent.kpi.windows import NS, Calendar

TOKYO = ZoneInfo("Asia/Tokyo")
BERLIN = ZoneInfo("Europe/Berlin")
STREAMS = [
    Stream("concentrate", "primary", 0.30),
    Stream("escrap", "recycled", 0.20),
    Stream("cu_scrap", "recycled", 0.92),
    Stream("flux", "excluded"),
]


def ns(tz: ZoneInfo, *args: int) -> int:
    return int(datetime(*args, tzinfo=tz).timestamp()) * NS  # type: ignore[misc]


def feed(
    tracker: RatioTracker,
    start_ns: int,
    minutes: int,
    rates_tph: dict[str, float],
    totals: dict[str, float],
    step_s: int = 60,
) -> int:
    """Advance the totalisers at constant rates, one reading per stream every `step_s`."""
    t = start_ns
    for _ in range(minutes * 60 // step_s):
        t += step_s * NS
        for name, rate in rates_tph.items():
            totals[name] = totals.get(name, 0.0) + rate * step_s / 3600
            tracker.ingest(name, totals[name], t)
        tracker.roll(t)
    return t


def start(tracker: RatioTracker, t: int, totals: dict[str, float]) -> None:
    for name in ("concentrate", "escrap", "cu_scrap", "flux"):
        totals.setdefault(name, 1000.0)
        tracker.ingest(name, totals[name], t)


def test_ratio_and_bases() -> None:
    amounts = {"concentrate": 80.0, "escrap": 15.0, "cu_scrap": 5.0, "flux": 50.0}
    assert ratio_pct(amounts, STREAMS, "mass") == pytest.approx(20.0)
    cu = (15 * 0.2 + 5 * 0.92) / (15 * 0.2 + 5 * 0.92 + 80 * 0.3)
    assert ratio_pct(amounts, STREAMS, "cu") == pytest.approx(100 * cu)
    assert ratio_pct({}, STREAMS, "mass") is None


def test_hour_window_rolls_over_and_splits_the_straddling_increment() -> None:
    cal = Calendar(TOKYO)
    t0 = ns(TOKYO, 2026, 11, 27, 9, 30)
    tr = RatioTracker(STREAMS, cal, max_gap_s=300, now_ns=t0)
    totals: dict[str, float] = {}
    start(tr, t0, totals)
    rates = {"concentrate": 200.0, "escrap": 40.0, "cu_scrap": 10.0, "flux": 15.0}
    t = feed(tr, t0, 40, rates, totals)  # to 10:10
    hour = tr.windows.current["hour"]
    assert hour.start_ns == ns(TOKYO, 2026, 11, 27, 10)
    assert hour.sums["concentrate"] == pytest.approx(200 * 10 / 60)
    ratio, coverage = tr.window("hour", t, "mass")
    assert ratio == pytest.approx(20.0)
    assert coverage == pytest.approx(1.0)
    closed = [w for w in tr.windows.closed if w.kind == "hour"]
    assert closed
    assert closed[0].sums["concentrate"] == pytest.approx(200 * 30 / 60)


def test_shift_day_month_and_fiscal_year_boundaries() -> None:
    cal = Calendar(TOKYO, (time(6), time(14), time(22)), fy_start_month=4)
    t0 = ns(TOKYO, 2027, 3, 31, 21, 50)  # last shift, day, month and fiscal year about to end
    tr = RatioTracker(STREAMS, cal, max_gap_s=300, now_ns=t0)
    totals: dict[str, float] = {}
    start(tr, t0, totals)
    before = {k: w.start_ns for k, w in tr.windows.current.items()}
    assert before["shift"] == ns(TOKYO, 2027, 3, 31, 14)
    assert before["fiscal_year"] == ns(TOKYO, 2026, 4, 1)
    t = feed(tr, t0, 20, {"concentrate": 200.0, "escrap": 50.0}, totals)  # to 22:10
    assert tr.windows.current["shift"].start_ns == ns(TOKYO, 2027, 3, 31, 22)
    assert tr.windows.current["day"].start_ns == before["day"]
    t = feed(tr, t, 120, {"concentrate": 200.0, "escrap": 50.0}, totals)  # to 00:10 on 1 April
    cur = tr.windows.current
    assert cur["shift"].start_ns == ns(TOKYO, 2027, 3, 31, 22)  # night shift spans midnight
    assert cur["day"].start_ns == ns(TOKYO, 2027, 4, 1)
    assert cur["month"].start_ns == ns(TOKYO, 2027, 4, 1)
    assert cur["fiscal_year"].start_ns == ns(TOKYO, 2027, 4, 1)
    assert cur["fiscal_year"].end_ns == ns(TOKYO, 2028, 4, 1)
    assert cur["day"].sums["concentrate"] == pytest.approx(200 * 10 / 60)
    assert tr.window("fiscal_year", t, "mass")[0] == pytest.approx(20.0)


def test_daylight_saving_days_and_the_repeated_hour() -> None:
    cal = Calendar(BERLIN)
    # 2026-10-25: clocks go back at 03:00 CEST -> 02:00 CET; the day has 25 hours
    day = cal.start("day", ns(BERLIN, 2026, 10, 25, 12))
    assert cal.end("day", day) - day == 25 * 3600 * NS
    first = int(datetime(2026, 10, 25, 2, 30, tzinfo=BERLIN, fold=0).timestamp()) * NS
    second = int(datetime(2026, 10, 25, 2, 30, tzinfo=BERLIN, fold=1).timestamp()) * NS
    assert cal.start("hour", first) != cal.start("hour", second)
    assert cal.start("hour", second) - cal.start("hour", first) == 3600 * NS
    spring = cal.start("day", ns(BERLIN, 2026, 3, 29, 12))
    assert cal.end("day", spring) - spring == 23 * 3600 * NS


def test_totaliser_reset_is_reported_and_not_counted() -> None:
    cal = Calendar(TOKYO)
    t0 = ns(TOKYO, 2026, 11, 27, 10, 0)
    tr = RatioTracker(STREAMS, cal, max_gap_s=300, now_ns=t0)
    totals: dict[str, float] = {}
    start(tr, t0, totals)
    t = feed(tr, t0, 10, {"concentrate": 180.0, "escrap": 20.0}, totals)
    totals["escrap"] = 0.0  # the e-scrap totaliser is reset
    t += 60 * NS
    assert tr.ingest("escrap", 0.0, t) == "reset"
    tr.ingest("concentrate", totals["concentrate"] + 3.0, t)
    totals["concentrate"] += 3.0
    feed(tr, t, 10, {"concentrate": 180.0, "escrap": 20.0}, totals)
    hour = tr.windows.current["hour"]
    assert hour.resets == 1
    assert hour.sums["escrap"] == pytest.approx(20 * 20 / 60)  # the reset minute is not counted
    assert hour.sums["escrap"] >= 0


def test_gap_is_reported_and_lowers_coverage() -> None:
    cal = Calendar(TOKYO)
    t0 = ns(TOKYO, 2026, 11, 27, 10, 0)
    tr = RatioTracker(STREAMS, cal, max_gap_s=300, now_ns=t0)
    totals: dict[str, float] = {}
    start(tr, t0, totals)
    t = feed(tr, t0, 10, {"concentrate": 200.0, "escrap": 50.0, "cu_scrap": 0.0}, totals)
    t += 20 * 60 * NS  # 20 minutes without readings, then one reading
    totals = {k: v + 99.0 for k, v in totals.items()}
    assert tr.ingest("concentrate", totals["concentrate"], t) == "gap"
    for name in ("escrap", "cu_scrap"):
        tr.ingest(name, totals[name], t)
    t = feed(tr, t, 20, {"concentrate": 200.0, "escrap": 50.0, "cu_scrap": 0.0}, totals)
    ratio, coverage = tr.window("hour", t, "mass")
    assert tr.windows.current["hour"].gaps >= 1
    assert coverage == pytest.approx(30 / 50, abs=0.01)
    assert ratio == pytest.approx(20.0)  # the 99 t jump over the gap was not counted


def test_restart_in_the_middle_of_a_window(tmp_path: Path) -> None:
    cal = Calendar(TOKYO)
    t0 = ns(TOKYO, 2026, 11, 27, 10, 0)
    tr = RatioTracker(STREAMS, cal, max_gap_s=300, now_ns=t0)
    totals: dict[str, float] = {}
    start(tr, t0, totals)
    t = feed(tr, t0, 30, {"concentrate": 200.0, "escrap": 50.0, "cu_scrap": 0.0}, totals)
    path = tmp_path / "state" / "kpi.json"
    save_json(path, tr.to_json())

    t_restart = t + 60 * NS  # a one-minute outage, shorter than max_gap_s
    again = RatioTracker(STREAMS, cal, max_gap_s=300, now_ns=t_restart)
    data = load_json(path)
    assert data is not None
    again.restore(data, t_restart)
    totals = {k: v + (200 if k == "concentrate" else 50 if k == "escrap" else 0) / 60
              for k, v in totals.items()}  # fmt: skip
    for name, value in totals.items():
        again.ingest(name, value, t_restart)
    t = feed(again, t_restart, 28, {"concentrate": 200.0, "escrap": 50.0, "cu_scrap": 0.0}, totals)
    hour = again.windows.current["hour"]
    assert hour.sums["concentrate"] == pytest.approx(200.0 * 59 / 60)
    assert again.window("hour", t, "mass") == (pytest.approx(20.0), pytest.approx(1.0))


def test_restored_state_of_a_past_window_is_dropped() -> None:
    cal = Calendar(TOKYO)
    t0 = ns(TOKYO, 2026, 11, 27, 10, 0)
    tr = RatioTracker(STREAMS, cal, max_gap_s=300, now_ns=t0)
    totals: dict[str, float] = {}
    start(tr, t0, totals)
    feed(tr, t0, 30, {"concentrate": 200.0, "escrap": 50.0}, totals)
    later = ns(TOKYO, 2026, 11, 27, 12, 5)
    again = RatioTracker(STREAMS, cal, max_gap_s=300, now_ns=later)
    again.restore(tr.to_json(), later)
    assert again.windows.current["hour"].sums == {}
    assert again.windows.current["day"].sums["concentrate"] == pytest.approx(100.0)


def test_units_convert_from_each_tags_declared_unit() -> None:
    assert tonnes_factor("kg") == 1e-3
    assert tonnes_factor("t") == 1.0
    assert tph_factor("kg/h") == pytest.approx(1e-3)
    assert tph_factor("kg/s") == pytest.approx(3.6)
    with pytest.raises(UnitError, match="Nm³/h"):
        tph_factor("Nm³/h")


def test_target_trajectory_interpolates_between_milestones() -> None:
    milestones = {2020: 12.0, 2030: 25.0, 2040: 50.0}
    assert target_pct(milestones, datetime(2020, 1, 1, tzinfo=TOKYO)) == pytest.approx(12.0)
    assert target_pct(milestones, datetime(2025, 1, 1, tzinfo=TOKYO)) == pytest.approx(18.5)
    assert target_pct(milestones, datetime(2035, 1, 1, tzinfo=TOKYO)) == pytest.approx(37.5)
    assert target_pct(milestones, datetime(2050, 6, 1, tzinfo=TOKYO)) == 50.0
    assert target_pct(milestones, datetime(2010, 6, 1, tzinfo=TOKYO)) == 12.0
