"""The link between buildings fails: through a Mosquitto bridge (two brokers), a cut link shows
at the plant as offline inputs, not frozen values; and a unit agent cut off from its broker
replays what it acquired meanwhile as history, which reaches InfluxDB with the original
timestamps and leaves the plant agent's live values alone."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from drivers.sparkplug.host import NODE_OFFLINE
from tests.support.fleet_harness import KILN_TAGS, Link, UnitAgent, in_process, plant_document
from tests.support.plant import StartPlant
from tests.support.services import InfluxDB1, Mosquitto
from tests.support.waiting import eventually

pytestmark = [pytest.mark.services, pytest.mark.slow]

NOTIFICATIONS = "bridges/unit-kiln/state"


def bridge_config(link_port: int) -> list[str]:
    """The plant broker's bridge to the recycling building's broker (docs/fleet.md)."""
    return [
        "connection unit-kiln",
        f"address 127.0.0.1:{link_port}",
        "topic spBv1.0/# both 1",
        "notifications true",
        f"notification_topic {NOTIFICATIONS}",
        "keepalive_interval 5",
        "restart_timeout 1",
    ]


async def test_a_cut_bridge_shows_as_offline_inputs_and_heals(
    plant_sim_factory: StartPlant, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    sim = await plant_sim_factory(time_scale=0)
    building = mosquitto  # the recycling building's broker; the unit agent's
    link = Link(building.port)
    link.mend()
    plant_broker = Mosquitto(tmp_path / "plant-broker", bridge_config(link.port))
    plant_broker.first_start()
    unit = UnitAgent(sim, building.port, tmp_path / "unit")
    unit.start()
    doc = plant_document(sim, plant_broker.port, tmp_path / "plant")
    (kiln,) = [s for s in doc["source"] if s["name"] == "kiln"]
    kiln["status_topic"] = NOTIFICATIONS
    try:
        async with in_process(doc) as plant:
            await eventually(lambda: plant.good(*KILN_TAGS, "kpi.co2.tph"), 40, "kiln via bridge")
            for tag in ("kiln.feed_rate", "kiln.fuel_flow"):
                sample = plant.get(tag)
                assert sample is not None
                assert sample.value == pytest.approx(sim.plant.values[tag], rel=1e-6)

            link.cut()
            cut = time.monotonic()
            await eventually(
                lambda: all((s := plant.get(t)) and s.reason == NODE_OFFLINE for t in KILN_TAGS),
                15,
                "kiln tags offline at the plant",
            )
            assert time.monotonic() - cut < 10
            assert unit.proc is not None
            assert unit.proc.poll() is None
            await eventually(lambda: not plant.good("kpi.co2.tph"), 10, "CO2 no longer Good")

            link.mend()
            await eventually(lambda: plant.good(*KILN_TAGS, "kpi.co2.tph"), 30, "healed")
    finally:
        unit.stop()
        link.cut()
        plant_broker.stop(kill=True)


async def test_history_after_an_outage_reaches_influxdb_and_not_the_live_values(
    plant_sim_factory: StartPlant, mosquitto: Mosquitto, influxdb1: InfluxDB1, tmp_path: Path
) -> None:
    sim = await plant_sim_factory(time_scale=60)
    link = Link(mosquitto.port)  # between the unit agent and the site broker
    link.mend()
    unit = UnitAgent(sim, link.port, tmp_path / "unit")
    unit.start()
    doc = plant_document(sim, mosquitto.port, tmp_path / "plant")
    doc["influx"] = {"api": "v1", "url": influxdb1.url, "db": influxdb1.db}
    try:
        async with in_process(doc) as plant:
            await eventually(lambda: plant.good(*KILN_TAGS), 40, "kiln Good")
            link.cut()
            cut_ns = time.time_ns()
            await eventually(
                lambda: (s := plant.get("kiln.feed_rate")) and s.reason == NODE_OFFLINE,
                15,
                "NDEATH at the plant",
            )
            await asyncio.sleep(3)  # the outage: the unit agent keeps acquiring, 1 s polls
            link.mend()
            await eventually(lambda: plant.good(*KILN_TAGS), 30, "kiln Good again")
            reborn = plant.get("kiln.feed_rate")  # the births' current value
            assert reborn is not None
            assert reborn.source_ns is not None

            def history() -> list[int]:
                """Points acquired during the outage and older than the births' value."""
                rows = influxdb1.points(
                    "SELECT value FROM kiln WHERE tag_id = 'kiln.feed_rate' "
                    f"AND time > {cut_ns} AND time < {reborn.source_ns}"
                )
                return [int(r["time"]) for r in rows]

            await eventually(lambda: len(history()) >= 2, 30, "history in InfluxDB")
            live = plant.get("kiln.feed_rate")
            assert live is not None
            assert live.good
            assert live.source_ns is not None
            assert live.source_ns >= reborn.source_ns  # history never became the live value
            # the unit agent's acquisition times, to the millisecond Sparkplug carries
            assert all(t % 1_000_000 == 0 for t in history())
    finally:
        unit.stop()
        link.cut()
