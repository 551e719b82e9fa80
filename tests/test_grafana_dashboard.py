"""deploy/grafana: valid dashboard JSON whose every query names a measurement, field and tag id
the agent writes (the schema of edge_agent/sinks/influx.py and docs/influxdb.md)."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS = sorted((ROOT / "deploy" / "grafana").glob("*.json"))
MEASUREMENTS = {"fsf", "offgas", "kiln", "kpi"}
FIELDS = {"value", "value_bool", "value_str", "quality", "reason"}
# KPI tag ids the dashboards may use: those docs/influxdb.md documents.
KPI_DOC = (ROOT / "docs" / "influxdb.md").read_text()


def config_tags() -> set[str]:
    cfg = tomllib.loads((ROOT / "config" / "demo.toml").read_text())
    return {t["id"] for s in cfg.get("source", []) for t in s.get("tag", [])}


def targets(dashboard: dict[str, Any]) -> list[str]:
    return [t["query"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_there_is_a_dashboard() -> None:
    assert DASHBOARDS


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
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
