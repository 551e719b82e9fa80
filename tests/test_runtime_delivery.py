"""A real run: simulators -> acquisition -> KPIs -> outbox -> Mosquitto and InfluxDB 1.x, wired
by runtime.build_services as `edge-agent run` wires it. Every sample of the run reaches both,
with the documented topics, payloads and schema, and the two agree sample for sample."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any

import pytest

from edge_agent import runtime
from edge_agent.config import AgentConfig
from edge_agent.supervisor import STOP_SINKS
from tests.support.mqtt_subscriber import Subscriber
from tests.support.plant import PlantSim
from tests.support.services import InfluxDB1, Mosquitto
from tests.support.waiting import eventually

pytestmark = [pytest.mark.services, pytest.mark.slow]

RUN_S = 4.0


def comparable(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    return round(float(value), 9)


@pytest.mark.timeout(120)
async def test_every_sample_of_a_run_reaches_broker_and_database_alike(
    plant_sim: PlantSim, mosquitto: Mosquitto, influxdb1: InfluxDB1, tmp_path: Path
) -> None:
    doc = plant_sim.agent_config_dict()
    doc["agent"].update(site="demo", instance_id="e2e", state_dir=str(tmp_path / "state"))
    doc["outbox"] = {"synchronous": "normal"}
    doc["mqtt"] = {"host": mosquitto.host, "port": mosquitto.port, "topic_root": "plant"}
    doc["influx"] = {"api": "v1", "url": influxdb1.url, "db": influxdb1.db}
    doc["health"] = {"enabled": False}
    cfg = AgentConfig.model_validate(doc)

    sub = await asyncio.to_thread(Subscriber, mosquitto.host, mosquitto.port, "plant/demo/#")
    agent = runtime.Agent(cfg, await runtime.open_writer(cfg))
    outbox = agent.outbox
    assert outbox is not None
    services = runtime.build_services(agent)
    producers = [asyncio.create_task(s.run()) for s in services if s.stop_order < STOP_SINKS]
    delivery = [asyncio.create_task(s.run()) for s in services if s.stop_order >= STOP_SINKS]
    try:
        await asyncio.sleep(RUN_S)  # the run itself
        for task in producers:  # stop acquisition and KPIs: nothing new enters the outbox
            task.cancel()
        await asyncio.gather(*producers, return_exceptions=True)
        head = outbox.state.head_id
        await eventually(
            lambda: all(acked >= head for acked in outbox.state.acked.values()),
            30,
            "both sinks confirmed every batch",
        )
        appended = outbox.state.appended_samples
    finally:
        for task in [*producers, *delivery]:
            task.cancel()
        await asyncio.gather(*producers, *delivery, return_exceptions=True)
        await outbox.close()
        sub.close()
    assert appended > 100

    # MQTT: dedupe repeats of (topic, ts_ns) (at least once), keep order of first arrival.
    mqtt: dict[tuple[str, int], tuple[Any, str]] = {}
    order: dict[str, list[int]] = {}
    for m in sub.snapshot():
        if "/_agent/" in m.topic or "/_alarms/" in m.topic:
            continue
        assert m.topic.startswith("plant/demo/")
        body = json.loads(m.payload)
        assert set(body) <= {"value", "quality", "ts", "ts_ns", "unit", "reason"}
        assert body["quality"] in ("good", "uncertain", "bad")
        if body["quality"] == "bad":
            assert body["value"] is None
            assert body["reason"]
        tag = m.topic.removeprefix("plant/demo/").replace("/", ".")
        key = (tag, body["ts_ns"])
        if key not in mqtt:
            mqtt[key] = (comparable(body["value"]), body["quality"])
            order.setdefault(tag, []).append(body["ts_ns"])
    for tag, stamps in order.items():
        assert stamps == sorted(stamps), f"{tag} out of order"
    assert set(cfg.tags()) <= set(order), "a configured tag never arrived"
    assert any(tag.startswith("kpi.") for tag in order), "no derived sample arrived"

    # InfluxDB: the same samples, identity (tag_id, time), value in the field of its type.
    influx: dict[tuple[str, int], tuple[Any, str]] = {}
    for row in influxdb1.points(
        "SELECT value, value_bool, value_str, quality, tag_id FROM fsf, offgas, kiln, kpi"
    ):
        value = next(
            (row[f] for f in ("value", "value_bool", "value_str") if row[f] is not None), None
        )
        influx[(row["tag_id"], row["time"])] = (comparable(value), row["quality"])
    # NaN is sent as Bad with a reason by both; everything else must match exactly.
    assert not any(isinstance(v, float) and math.isnan(v) for v, _ in mqtt.values())
    assert influx == mqtt
