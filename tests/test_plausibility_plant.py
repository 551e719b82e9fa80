"""Plausibility on the simulated plant, end to end: the whole agent (`run_agent`) on
config/demo.toml, pointed at the simulators, delivering to a real Mosquitto (JSON or Sparkplug B)
and a real InfluxDB 1.x.

A transmitter spike (`spike:fsf.matte_temp`, twice the span: 3000 °C) and a Modbus "no value"
marker (`novalue:offgas.temp`, 0x8000 = -3276.8 °C) make exactly those two tags Bad in every
sink, with the reason and the raw reading; the heat margin that reads the matte temperature goes
Bad and the advisor holds and says why; clearing the faults restores all of it.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from drivers.sparkplug.payload import QUALITY_PROPERTY, property_map
from edge_agent.config import AgentConfig
from edge_agent.contracts.samples import Quality
from edge_agent.runtime import Agent, run_agent
from edge_agent.tagstore import TagStore
from tests.support.mqtt_subscriber import Subscriber
from tests.support.plant import PlantSim
from tests.support.services import InfluxDB1, Mosquitto
from tests.support.sparkplug_harness import GROUP, NODE
from tests.support.sparkplug_host import Host
from tests.support.waiting import eventually

pytestmark = [pytest.mark.services, pytest.mark.timeout(180)]

FAULTS = {"fsf.matte_temp": ("out_of_range", 3000.0), "offgas.temp": ("no_value_marker", -3276.8)}


def agent_config(
    sim: PlantSim, broker: Mosquitto, influx: InfluxDB1, tmp: Path, fmt: str
) -> AgentConfig:
    doc = sim.agent_config_dict()
    for source in doc["source"]:
        source["poll_interval_s"] = 0.2
    doc["agent"] = {**doc["agent"], "state_dir": str(tmp / "state"), "instance_id": NODE}
    doc["kpi"] = {**doc["kpi"], "interval_s": 0.5}
    doc["kpi"]["advisor"]["steady_window_s"] = 1.0
    doc["health"] = {"enabled": False}
    doc["control"] = {"commands": False}
    doc["mqtt"] = {
        "host": broker.host, "port": broker.port, "format": fmt, "topic_root": "plant",
        "reconnect_min_s": 1, "reconnect_max_s": 1, "sparkplug": {"group_id": GROUP},
    }  # fmt: skip
    doc["influx"] = {"api": "v1", "url": influx.url, "db": influx.db}
    return AgentConfig.model_validate(doc)


def advisor(store: TagStore) -> str | None:
    sample = store.get("kpi.advisor.validity")
    return str(sample.value) if sample is not None else None


def plant_tags_good_but(store: TagStore, cfg: AgentConfig, faulted: set[str]) -> bool:
    """Every plant tag Good except `faulted`, which are Bad with their plausibility reason."""
    for tag in cfg.tags():
        s = store.get(tag)
        if s is None:
            return False
        if tag in faulted:
            if (s.quality, s.reason, s.raw) != (Quality.BAD, *FAULTS[tag]):
                return False
        elif tag != "offgas.so2_pct" and tag != "offgas.o2_pct" and not s.good:
            return False  # (the analysers calibrate on their own now and then)
    return True


async def run_faults(sim: PlantSim, cfg: AgentConfig, check_sinks: Any) -> None:
    started: list[Agent] = []
    stop = asyncio.Event()
    task = asyncio.create_task(run_agent(cfg, stop=stop, on_started=started.append))
    try:
        await eventually(lambda: bool(started), 30, "the agent to start")
        store = started[0].store
        await eventually(lambda: plant_tags_good_but(store, cfg, set()), 40, "every tag Good")
        await eventually(lambda: advisor(store) == "valid", 40, "valid advice")

        await sim.apply("spike:fsf.matte_temp")
        await sim.apply("novalue:offgas.temp")
        await eventually(lambda: plant_tags_good_but(store, cfg, set(FAULTS)), 20, "faults seen")
        await eventually(lambda: advisor(store) == "hold", 20, "the advisor to hold")
        reason = store.get("kpi.advisor.reason")
        assert reason is not None
        assert "fsf.matte_temp: bad (out_of_range)" in str(reason.value)
        margin = store.get("kpi.heat_margin_mw")
        assert margin is not None
        assert margin.quality is not Quality.GOOD
        assert "fsf.matte_temp" in (margin.reason or "")
        await check_sinks(faulted=True)

        await sim.apply("clear")
        await eventually(lambda: plant_tags_good_but(store, cfg, set()), 20, "faults cleared")
        await eventually(lambda: advisor(store) == "valid", 40, "valid advice again")
        await eventually(
            lambda: getattr(store.get("kpi.heat_margin_mw"), "good", False), 20, "margin Good"
        )
        await check_sinks(faulted=False)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def influx_latest(influx: InfluxDB1, tag: str) -> dict[str, Any]:
    unit = tag.split(".")[0]
    rows = influx.points(
        f"SELECT * FROM \"{unit}\" WHERE tag_id = '{tag}' ORDER BY time DESC LIMIT 1"
    )
    return rows[0] if rows else {}


async def test_json_and_influx_carry_exactly_the_implausible_tags(
    plant_sim: PlantSim, mosquitto: Mosquitto, influxdb1: InfluxDB1, tmp_path: Path
) -> None:
    cfg = agent_config(plant_sim, mosquitto, influxdb1, tmp_path, "json")
    sub = Subscriber(mosquitto.host, mosquitto.port, "plant/demo/#")

    def latest_json() -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for m in sub.snapshot():
            if "/_" not in m.topic:
                out[m.topic] = json.loads(m.payload)
        return out

    async def check_sinks(*, faulted: bool) -> None:
        def json_ok() -> bool:
            got = latest_json()
            for tag, (reason, raw) in FAULTS.items():
                body = got.get("plant/demo/" + tag.replace(".", "/"), {})
                bad = (body.get("quality"), body.get("reason"), body.get("raw")) == (
                    "bad",
                    reason,
                    raw,
                )
                if bad != faulted or (not faulted and body.get("quality") != "good"):
                    return False
            margin = got.get("plant/demo/kpi/heat_margin_mw", {})
            return (margin.get("quality") == "good") != faulted

        await eventually(json_ok, 20, f"the JSON sink to show faulted={faulted}")
        others = [t for t, b in latest_json().items() if b.get("quality") == "bad"
                  and t.startswith("plant/demo/fsf/")]  # fmt: skip
        assert others == (["plant/demo/fsf/matte_temp"] if faulted else []), others

        def influx_ok() -> bool:
            for tag, (reason, raw) in FAULTS.items():
                row = influx_latest(influxdb1, tag)
                bad = (row.get("quality"), row.get("reason"), row.get("raw")) == (
                    "bad",
                    reason,
                    raw,
                )
                if bad != faulted or (not faulted and row.get("quality") != "good"):
                    return False
            return True

        await eventually(influx_ok, 20, f"InfluxDB to show faulted={faulted}")

    await run_faults(plant_sim, cfg, check_sinks)


async def test_sparkplug_carries_the_implausible_tags_as_bad_null_metrics(
    plant_sim: PlantSim, mosquitto: Mosquitto, influxdb1: InfluxDB1, tmp_path: Path
) -> None:
    cfg = agent_config(plant_sim, mosquitto, influxdb1, tmp_path, "sparkplug_b")
    host = Host(mosquitto.host, mosquitto.port, GROUP, NODE)
    host.wait_subscribed()

    def latest_metrics() -> dict[tuple[str, str], Any]:
        names: dict[int, tuple[str, str]] = {}
        out: dict[tuple[str, str], Any] = {}
        for s in list(host.seen):
            if s.device is None or s.verb not in ("DBIRTH", "DDATA"):
                continue
            for m in s.payload.metrics:
                if s.verb == "DBIRTH":
                    names[m.alias] = (s.device, m.name)
                key = names.get(m.alias)
                if key is not None and not m.is_historical:
                    out[key] = m
        return out

    async def check_sinks(*, faulted: bool) -> None:
        def ok() -> bool:
            got = latest_metrics()
            for tag, (reason, raw) in FAULTS.items():
                m = got.get(tuple(tag.split(".", 1)))
                if m is None:
                    return False
                props = property_map(m)
                bad = m.is_null and props.get(QUALITY_PROPERTY) == 0 and (
                    props.get("reason"), props.get("raw")) == (reason, raw)  # fmt: skip
                if bad != faulted:
                    return False
            return True

        await eventually(ok, 20, f"the Sparkplug host to see faulted={faulted}")

    try:
        await run_faults(plant_sim, cfg, check_sinks)
    finally:
        host.close()
