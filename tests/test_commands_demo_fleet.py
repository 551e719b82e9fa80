"""Many agents, one plant: the kiln's unit agent publishes Sparkplug B to a real Mosquitto, the
plant-level agent hosts it and computes the site KPIs (docs/fleet.md)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from drivers.sparkplug.host import NODE_OFFLINE
from edge_agent.config import SparkplugSource, load_config
from edge_agent.contracts.samples import Quality
from tests.support.fleet_harness import (
    DEMO_TOML,
    KILN_TAGS,
    ROOT,
    UnitAgent,
    fleet_texts,
    in_process,
    load_toml,
    plant_document,
    single_document,
)
from tests.support.plant import StartPlant
from tests.support.processes import output_lines, wait_line
from tests.support.services import Mosquitto
from tests.support.waiting import eventually

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
            assert "kiln.feed_rate bad (node_offline)" in (co2.reason or ""), co2.reason
            assert plant.good("kpi.heat_margin_mw")  # what needs no kiln tag is unaffected

            unit.start()
            await eventually(lambda: plant.good(*KILN_TAGS, "kpi.co2.tph"), 30, "kiln back Good")
            assert unit.bd_seq() == (first_bd_seq + 1) % 256
    finally:
        unit.stop()


def test_the_two_agent_configs_follow_the_demo_config() -> None:
    """The two-agent demo computes what the single-agent demo does: same KPIs, same tags. The
    tests above run what `make fleet-configs` writes today; the committed files must be valid and
    host the demo's kiln tags (regenerate them after changing config/demo.toml)."""
    unit_text, plant_text = fleet_texts()
    demo, plant, unit = load_toml(DEMO_TOML), tomllib.loads(plant_text), tomllib.loads(unit_text)
    for key in set(demo) | set(plant):
        if key not in ("agent", "source"):
            assert plant.get(key) == demo.get(key), key
    assert [s for s in plant["source"] if s["name"] != "kiln"] == [
        s for s in demo["source"] if s["name"] != "kiln"
    ]
    (demo_kiln,) = [s for s in demo["source"] if s["name"] == "kiln"]
    assert unit["source"] == [demo_kiln]
    for committed in (ROOT / "config/unit-kiln.toml", ROOT / "config/plant-level.toml"):
        cfg = load_config(committed)
        kiln = next(s for s in cfg.source if s.name == "kiln")
        assert [(t.id, t.unit) for t in kiln.tag] == [
            (t["id"], t.get("unit", "")) for t in demo_kiln["tag"]
        ], f"{committed.name}: run `make fleet-configs`"
    hosted = next(
        s for s in load_config(ROOT / "config/plant-level.toml").source if s.name == "kiln"
    )
    assert isinstance(hosted, SparkplugSource)
    assert (hosted.group_id, hosted.edge_node_id) == (
        unit["mqtt"]["sparkplug"]["group_id"],
        unit["mqtt"]["sparkplug"]["edge_node_id"],
    )


def test_demo_fleet_runs_both_agents_and_stops_them(tmp_path: Path) -> None:
    """`make demo-fleet`: the site KPIs from the kiln's unit agent; Ctrl-C stops both agents."""
    state = tmp_path / "demo"
    argv = [sys.executable, "-m", "edge_agent.cli", "demo", "--fleet", "--headless"]
    proc = subprocess.Popen(
        [*argv, "--state-dir", str(state), "--time-scale", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    seen: list[str] = []
    try:
        lines = output_lines(proc)
        wait_line(
            lines, r"sparkplug_device_birth .*devices=\['kiln'\]", time.monotonic() + 60, seen
        )
        wait_line(lines, r"^demo: .* co2_tph=\d", time.monotonic() + 30, seen)
        proc.send_signal(signal.SIGINT)
        wait_line(lines, r"^demo stopped$", time.monotonic() + 30, seen)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()
    unit_log = (state / "unit-kiln.log").read_text()
    assert '"event": "agent_stopped"' in unit_log  # stopped cleanly, not orphaned
