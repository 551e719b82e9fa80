"""Many agents, one plant: the kiln's unit agent publishes Sparkplug B to a real Mosquitto, the
plant-level agent hosts it and computes the site KPIs (docs/fleet.md)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from drivers.sparkplug.host import NODE_OFFLINE
from edge_agent.contracts.samples import Quality
from tests.fleet_harness import (
    KILN_TAGS,
    PLANT_TOML,
    ROOT,
    UnitAgent,
    in_process,
    load_toml,
    plant_document,
    single_document,
)
from tests.plant import StartPlant
from tests.services import Mosquitto
from tests.waiting import eventually

pytestmark = [pytest.mark.services, pytest.mark.slow]

# KPIs that are instantaneous (not integrated over windows that began at each agent's start), so
# two agents reading one still plant must agree on them exactly. CO2 needs the kiln's tags.
SITE_KPIS = ["kpi.co2.tph", "kpi.heat_margin_mw", "kpi.recycled_ratio.now", "kpi.co2.kiln_lng_tph"]


async def test_plant_agent_kpis_equal_a_single_agents_and_a_dead_unit_shows_offline(
    plant_sim_factory: StartPlant, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    sim = await plant_sim_factory(time_scale=0)  # a still plant: both agents read one state
    unit = UnitAgent(sim, mosquitto.port, tmp_path / "unit")
    unit.start()
    try:
        async with (
            in_process(plant_document(sim, mosquitto.port, tmp_path / "plant")) as plant,
            in_process(single_document(sim, tmp_path / "single")) as single,
        ):
            await eventually(lambda: plant.good(*KILN_TAGS, *SITE_KPIS), 40, "plant KPIs Good")
            await eventually(lambda: single.good(*SITE_KPIS), 20, "single-agent KPIs Good")
            for tag in KILN_TAGS:  # the unit's values and source timestamps, unchanged
                here, there = plant.get(tag), single.get(tag)
                assert here is not None
                assert there is not None
                assert here.value == there.value, tag
            for kpi in SITE_KPIS:
                here, there = plant.get(kpi), single.get(kpi)
                assert here is not None
                assert there is not None
                assert here.value == pytest.approx(there.value, rel=1e-12), kpi

            first_bd_seq = unit.bd_seq()
            unit.kill()
            killed = time.monotonic()
            await eventually(
                lambda: all(
                    (s := plant.get(t)) is not None and s.reason == NODE_OFFLINE for t in KILN_TAGS
                ),
                15,
                "kiln tags Bad node_offline",
            )
            # The will comes at once on a closed socket, else after 1.5 keep-alives (5 s here)
            assert time.monotonic() - killed < 1.5 * 5 + 2.0
            sample = plant.get("kiln.feed_rate")
            assert sample is not None
            assert sample.quality is Quality.BAD
            assert sample.value is None
            await eventually(
                lambda: (s := plant.get("kpi.co2.tph")) is not None and not s.good,
                10,
                "CO2 not Good",
            )
            co2 = plant.get("kpi.co2.tph")
            assert co2 is not None
            assert "kiln.feed_rate" in (co2.reason or "")
            assert plant.good("kpi.heat_margin_mw")  # what needs no kiln tag is unaffected

            unit.start()
            await eventually(lambda: plant.good(*KILN_TAGS, "kpi.co2.tph"), 30, "kiln back Good")
            assert unit.bd_seq() == (first_bd_seq + 1) % 256
    finally:
        unit.stop()


def test_plant_level_config_is_the_demo_config_but_for_the_kiln_source() -> None:
    """The two-agent demo computes what the single-agent demo does: same KPIs, same tags."""
    demo, plant = load_toml(ROOT / "config/demo.toml"), load_toml(PLANT_TOML)
    for key in set(demo) | set(plant):
        if key not in ("agent", "source"):
            assert plant.get(key) == demo.get(key), key
    assert [s for s in plant["source"] if s["name"] != "kiln"] == [
        s for s in demo["source"] if s["name"] != "kiln"
    ]
    (kiln,) = [s for s in plant["source"] if s["name"] == "kiln"]
    (demo_kiln,) = [s for s in demo["source"] if s["name"] == "kiln"]
    assert [(t["id"], t.get("unit")) for t in kiln["tag"]] == [
        (t["id"], t.get("unit")) for t in demo_kiln["tag"]
    ]
    unit = load_toml(ROOT / "config/unit-kiln.toml")
    assert unit["source"] == [demo_kiln]
    assert unit["mqtt"]["sparkplug"]["edge_node_id"] == kiln["edge_node_id"]
    assert unit["mqtt"]["sparkplug"]["group_id"] == kiln["group_id"]
