"""deploy/grafana: valid dashboard JSON whose every query names a measurement, field and tag id
the agent writes (the schema of edge_agent/sinks/influx.py and docs/influxdb.md), and whose every
panel shows data from the first minutes of a new install, against real InfluxDB 1.x (InfluxQL)
and real VictoriaMetrics (the Prometheus variant)."""

from __future__ import annotations

import json
import re
import time
import tomllib
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from edge_agent.contracts.samples import Quality, Sample
from edge_agent.outbox import Batch
from edge_agent.sinks.line_protocol import LineEncoder
from tests.support.server_process import _http
from tests.support.services import InfluxDB1, VictoriaMetrics

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS = sorted((ROOT / "deploy" / "grafana").glob("*.json"))
INFLUXQL = [p for p in DASHBOARDS if not p.name.endswith("-victoriametrics.json")]
PROMQL = [p for p in DASHBOARDS if p.name.endswith("-victoriametrics.json")]
MEASUREMENTS = {"fsf", "offgas", "kiln", "kpi"}
FIELDS = {"value", "value_bool", "value_str", "quality", "reason"}
# KPI tag ids the dashboards may use: those docs/influxdb.md documents.
KPI_DOC = (ROOT / "docs" / "influxdb.md").read_text()


def config_tags() -> set[str]:
    cfg = tomllib.loads((ROOT / "config" / "demo.toml").read_text())
    return {t["id"] for s in cfg.get("source", []) for t in s.get("tag", [])}


def targets(dashboard: dict[str, Any]) -> list[str]:
    return [t["query"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_there_is_a_dashboard_for_each_kind_of_database() -> None:
    assert INFLUXQL
    assert PROMQL


@pytest.mark.parametrize("path", INFLUXQL, ids=lambda p: p.name)
def test_every_query_names_what_the_agent_writes(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    assert dashboard["title"]
    assert dashboard["uid"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    known_tags = config_tags()
    queries = targets(dashboard)
    assert queries
    for q in queries:
        select = re.match(r"SELECT (\w+)\((\w+)", q)
        assert select, f"unexpected query shape: {q}"
        assert select.group(2) in FIELDS, f"field {select.group(2)!r} is not written: {q}"
        (measurements,) = re.findall(r"FROM ([\w, ]+?) WHERE", q)
        for m in measurements.split(","):
            assert m.strip() in MEASUREMENTS, f"measurement {m!r} is not written: {q}"
        for tag_id in re.findall(r"tag_id = '([^']+)'", q):
            if tag_id.startswith("kpi."):
                assert f"`{tag_id}`" in KPI_DOC or tag_id.rsplit(".", 1)[0] in KPI_DOC, tag_id
            else:
                assert tag_id in known_tags, f"{tag_id} is not a tag of config/demo.toml"
            assert tag_id.split(".")[0] in measurements, f"{tag_id} is not in {measurements}"
        assert "$timeFilter" in q, f"query ignores the dashboard's time range: {q}"


@pytest.mark.parametrize("path", INFLUXQL, ids=lambda p: p.name)
def test_quality_is_shown_not_filtered_away(path: Path) -> None:
    """A windowed ratio is Uncertain for its first hours: filtering on Good showed nothing."""
    queries = targets(json.loads(path.read_text()))
    for q in queries:
        if q.startswith("SELECT count(quality)"):
            continue  # the coverage panel counts Good samples on purpose
        assert "quality = 'good'" not in q, q
    assert any("last(quality)" in q for q in queries), "no panel shows the KPIs' quality"


# --------------------------------------------------------------- day one, against real databases


def first_minutes() -> list[Sample]:
    """What a new install writes in its first five minutes: ratios Uncertain (coverage low)."""
    now = time.time_ns()
    out: list[Sample] = []
    for i in range(10):
        ts = now - (300 - 30 * i) * 1_000_000_000
        uncertain = "coverage 0.05 < 0.90"
        for window in ("shift", "day", "fiscal_year"):
            out.append(Sample(f"kpi.recycled_ratio.{window}", 19.5 + i / 10, Quality.UNCERTAIN,
                              ts, ts, uncertain))  # fmt: skip
            out.append(Sample(f"kpi.recycled_ratio.{window}_coverage", 0.01 * i, Quality.GOOD, ts))
        out += [
            Sample("kpi.recycled_ratio.target", 21.0, Quality.GOOD, ts),
            Sample("kpi.heat_margin_mw", 1.5, Quality.GOOD, ts),
            Sample("kpi.co2.day_t", 2.0 + i, Quality.UNCERTAIN, ts, ts, "coverage 0.05"),
            Sample("kpi.co2.tph", 11.0, Quality.GOOD, ts),
            Sample("fsf.matte_temp", 1250.0, Quality.GOOD, ts, ts),
        ]
    return out


def influxql(query: str) -> str:
    """A panel's query as Grafana sends it for the last hour."""
    return query.replace("$timeFilter", "time > now() - 1h").replace("$__interval", "1m")


@pytest.mark.services
@pytest.mark.parametrize("path", INFLUXQL, ids=lambda p: p.name)
def test_every_influxql_panel_shows_the_first_minutes(path: Path, influxdb1: InfluxDB1) -> None:
    influxdb1.write("\n".join(LineEncoder("demo").lines([Batch(1, first_minutes())])))
    for panel in json.loads(path.read_text())["panels"]:
        rows = [r for t in panel["targets"] for r in influxdb1.points(influxql(t["query"]))]
        values = [v for r in rows for k, v in r.items() if k not in ("time", "tag_id") and v]
        assert values, f"panel {panel['title']!r} is empty on day one"


@pytest.mark.services
@pytest.mark.parametrize("path", PROMQL, ids=lambda p: p.name)
def test_every_promql_panel_shows_the_first_minutes(
    path: Path, victoria_metrics: VictoriaMetrics
) -> None:
    lines = LineEncoder("demo", "ms").lines([Batch(1, first_minutes())])
    status, body = _http(
        "POST", f"{victoria_metrics.url}/api/v2/write?precision=ms", "\n".join(lines).encode()
    )
    assert status == 204, body
    # The agent's own metrics, as a scrape of /metrics puts them there.
    scrape = (
        'edge_agent_component_up{kind="sink",name="mqtt"} 1\n'
        'edge_agent_outbox_depth_samples{outbox="outbox"} 12\n'
        'edge_agent_tags{quality="good"} 40\n'
    )
    url = victoria_metrics.url
    status, body = _http("POST", f"{url}/api/v1/import/prometheus", scrape.encode())
    assert status == 204, body
    victoria_metrics.export('{tag_id="kpi.heat_margin_mw"}', min_points=10)
    dashboard = json.loads(path.read_text())
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["datasource", "site"]

    def query_range(expr: str) -> list[object]:
        now = int(time.time())
        qs = urllib.parse.urlencode(
            {"query": expr, "start": now - 3600, "end": now + 60, "step": 60}
        )
        status, body = _http("GET", f"{url}/api/v1/query_range?{qs}")
        assert status == 200, body
        return list(json.loads(body)["data"]["result"])

    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"].replace("$site", ".*")
            deadline = time.monotonic() + 10  # a new series is searchable a moment after its write
            while not query_range(expr):
                assert time.monotonic() < deadline, f"{panel['title']!r}: {expr} empty on day one"
                time.sleep(0.1)
