"""Trends from the InfluxDB sink's database: a real VictoriaMetrics (Prometheus API) and a real
InfluxDB 1.x (InfluxQL), written by the agent's own sink, read back through /api/history."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.plant import PlantSim
from tests.support.services import InfluxDB1, VictoriaMetrics
from tests.support.waiting import eventually
from tests.support.web_agent import WebAgent, get_json, new_port, web_config

pytestmark = [pytest.mark.services, pytest.mark.slow]

TAGS = "tag=fsf.conc_feed_rate&tag=kpi.heat_margin_mw&tag=no.such"


async def _trend_has_points(url: str, source: str) -> bool:
    doc: dict[str, Any] = await get_json(url + f"/api/history?{TAGS}&seconds=600")
    assert doc["source"] == source, doc.get("error")
    series = doc["series"]
    assert series["no.such"] == [None] * len(series["no.such"])
    return any(v is not None for v in series["fsf.conc_feed_rate"])


async def test_trends_from_victoria_metrics(
    plant_sim: PlantSim, victoria_metrics: VictoriaMetrics, tmp_path: Path
) -> None:
    influx = {"api": "v2", "url": victoria_metrics.url, "org": "o", "bucket": "b"}
    cfg = web_config(plant_sim, tmp_path, new_port(), influx=influx)
    cfg = cfg.model_copy(update={"web": cfg.web.model_copy(update={"trends": "prometheus"})})
    web = WebAgent(cfg)
    await web.start()
    try:
        meta = await get_json(web.url + "/api/meta")
        assert meta["trends"] == "prometheus"

        async def visible() -> bool:
            victoria_metrics.flush()
            return await _trend_has_points(web.url, "VictoriaMetrics")

        await eventually(visible, 30, "points from VictoriaMetrics", interval_s=0.5)
        doc = await get_json(web.url + f"/api/history?{TAGS}&seconds=86400")
        assert doc["step_ms"] == 120_000  # a day in at most 720 buckets
        assert len(doc["series"]["fsf.conc_feed_rate"]) == 720
    finally:
        await web.stop()


async def test_trends_from_influxdb_1(
    plant_sim: PlantSim, influxdb1: InfluxDB1, tmp_path: Path
) -> None:
    influx = {"api": "v1", "url": influxdb1.url, "db": influxdb1.db}
    cfg = web_config(plant_sim, tmp_path, new_port(), influx=influx)
    cfg = cfg.model_copy(update={"web": cfg.web.model_copy(update={"trends": "influxql"})})
    web = WebAgent(cfg)
    await web.start()
    try:
        await eventually(
            lambda: _trend_has_points(web.url, "InfluxDB"), 30, "points from InfluxDB",
            interval_s=0.5,
        )  # fmt: skip
    finally:
        await web.stop()


async def test_a_database_that_went_away_falls_back_to_the_ring(
    plant_sim: PlantSim, victoria_metrics: VictoriaMetrics, tmp_path: Path
) -> None:
    influx = {"api": "v2", "url": victoria_metrics.url, "org": "o", "bucket": "b"}
    cfg = web_config(plant_sim, tmp_path, new_port(), influx=influx)
    cfg = cfg.model_copy(update={"web": cfg.web.model_copy(update={"trends": "prometheus"})})
    web = WebAgent(cfg)
    await web.start()
    try:
        victoria_metrics.stop()
        doc = await get_json(web.url + f"/api/history?{TAGS}")
        assert doc["source"] == "ring"
        assert "VictoriaMetrics" in doc["error"]
    finally:
        await web.stop()
