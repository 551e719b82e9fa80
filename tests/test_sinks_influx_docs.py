"""The InfluxQL examples of docs/influxdb.md, run as written against a real InfluxDB 1.x holding
what the agent writes (the sink's own line encoder), must return the expected answers."""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from edge_agent.contracts.samples import Quality, Sample
from edge_agent.outbox import Batch
from edge_agent.sinks.line_protocol import LineEncoder
from tests.support.services import InfluxDB1

pytestmark = pytest.mark.services

DOC = Path(__file__).resolve().parent.parent / "docs" / "influxdb.md"
TZ = ZoneInfo("Asia/Tokyo")
NS = 1_000_000_000


def doc_queries() -> dict[str, str]:
    text = DOC.read_text()
    found = re.findall(r"<!-- query: (\w+) -->\s*```sql\n(.*?)```", text, re.S)
    return {name: " ".join(body.split()) for name, body in found}


def ns(dt: datetime) -> int:
    return int(dt.timestamp()) * NS


def shift_start(dt: datetime) -> datetime:
    local = dt.astimezone(TZ)
    starts = [local.replace(hour=h, minute=0, second=0, microsecond=0) for h in (6, 14, 22)]
    starts.insert(0, starts[2] - timedelta(days=1))
    return max(s for s in starts if s <= local)


def day_start(dt: datetime) -> datetime:
    return dt.astimezone(TZ).replace(hour=0, minute=0, second=0, microsecond=0)


@pytest.fixture(scope="module")
def queries() -> dict[str, str]:
    q = doc_queries()
    assert set(q) >= {"ratio_by_shift", "ratio_by_day", "margin_vs_matte_temp", "co2_per_day",
                      "co2_per_day_from_rate", "coverage_good", "coverage_all",
                      "ratio_day_coverage"}  # fmt: skip
    return q


def rows(influx: InfluxDB1, query: str, column: str) -> list[tuple[int, float]]:
    return [(r["time"], r[column]) for r in influx.points(query) if r[column] is not None]


def test_the_documented_influxql_queries_answer_correctly(
    influxdb1: InfluxDB1, queries: dict[str, str]
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    enc = LineEncoder("demo")
    samples: list[Sample] = []

    def add(tag: str, when: datetime, value: float, quality: Quality = Quality.GOOD) -> None:
        samples.append(Sample(tag, value, quality, ns(when)))

    # Windowed KPIs every 20 min over the last 3 days: running values that end each window at
    # a value we can predict (the minute of the last sample's hour plus a per-window number).
    last_shift: dict[int, float] = {}
    last_day: dict[int, float] = {}
    last_cov: dict[int, float] = {}
    last_co2: dict[int, float] = {}
    t = now - timedelta(days=3)
    i = 0
    while t < now - timedelta(minutes=1):
        i += 1
        add("kpi.recycled_ratio.shift", t, 10 + i * 0.01)
        add("kpi.recycled_ratio.day", t, 20 + i * 0.01)
        add("kpi.recycled_ratio.day_coverage", t, min(1.0, i / 200))
        add("kpi.co2.day_t", t, float(i))
        last_shift[ns(shift_start(t))] = 10 + i * 0.01
        last_day[ns(day_start(t))] = 20 + i * 0.01
        last_cov[ns(day_start(t))] = min(1.0, i / 200)
        last_co2[ns(day_start(t))] = float(i)
        t += timedelta(minutes=20)
    # One Uncertain ratio sample must not be taken as the shift's result.
    add("kpi.recycled_ratio.shift", now - timedelta(seconds=30), 99.0, Quality.UNCERTAIN)

    # CO2 rate 12 t/h every 10 min through yesterday (local): integral ≈ 12 t/h x 23 h 50 min.
    yesterday = day_start(now) - timedelta(days=1)
    for k in range(144):
        add("kpi.co2.tph", yesterday + timedelta(minutes=10 * k), 12.0)

    # Margin and matte temperature: two samples per 10-minute bucket over the last 3 hours.
    bucket0 = now.replace(minute=now.minute - now.minute % 10, second=0) - timedelta(hours=3)
    margin: dict[int, float] = {}
    temp: dict[int, float] = {}
    for b in range(18):
        start = bucket0 + timedelta(minutes=10 * b)
        for j, offset in enumerate((timedelta(minutes=2), timedelta(minutes=7))):
            add("kpi.heat_margin_mw", start + offset, 3.0 + b + j)
            add("fsf.matte_temp", start + offset, 1240.0 + b - j)
        margin[ns(start)] = 3.5 + b
        temp[ns(start)] = 1239.5 + b

    # Coverage: one sample a minute for the last two full hours, every tenth one Bad.
    hour0 = now.replace(minute=0, second=0) - timedelta(hours=2)
    for m in range(120):
        q = Quality.BAD if m % 10 == 0 else Quality.GOOD
        add("fsf.conc_feed_rate", hour0 + timedelta(minutes=m), 200.0, q)

    lines = enc.lines([Batch(1, samples)])
    for start in range(0, len(lines), 5000):
        influxdb1.write("\n".join(lines[start : start + 5000]))

    got_shift = rows(influxdb1, queries["ratio_by_shift"], "ratio_pct")
    assert got_shift == sorted(last_shift.items())
    assert rows(influxdb1, queries["ratio_by_day"], "ratio_pct") == sorted(last_day.items())
    assert rows(influxdb1, queries["ratio_day_coverage"], "coverage") == sorted(last_cov.items())
    assert rows(influxdb1, queries["co2_per_day"], "co2_t") == sorted(last_co2.items())

    by_day = dict(rows(influxdb1, queries["co2_per_day_from_rate"], "co2_t"))
    assert by_day[ns(yesterday)] == pytest.approx(12.0 * (23 + 50 / 60))

    pairs = influxdb1.points(queries["margin_vs_matte_temp"])
    means: dict[str, dict[int, float]] = defaultdict(dict)
    for r in pairs:
        means[r["tag_id"]][r["time"]] = r["mean"]
    assert means["kpi.heat_margin_mw"] == margin
    assert means["fsf.matte_temp"] == temp

    good = {(r["time"], r["tag_id"]): r["good"] for r in influxdb1.points(queries["coverage_good"])}
    total = {
        (r["time"], r["tag_id"]): r["samples"] for r in influxdb1.points(queries["coverage_all"])
    }
    for h in range(2):
        key = (ns(hour0 + timedelta(hours=h)), "fsf.conc_feed_rate")
        assert (good[key], total[key]) == (54, 60)
