"""The KPI engine behind real acquisition: the simulators over OPC UA and Modbus on loopback,
config/demo.toml pointed at them. What `edge-agent run` does, minus the sinks."""

from __future__ import annotations

import asyncio
from pathlib import Path

from edge_agent import kpi
from edge_agent.acquisition import Acquisition
from edge_agent.commands.balance import live_snapshot
from edge_agent.config import AgentConfig
from edge_agent.contracts.samples import Quality
from edge_agent.kpi.whatif import evaluate
from edge_agent.pipeline import SampleBus
from edge_agent.tagstore import TagStore
from tests.support.plant import PlantSim
from tests.support.waiting import eventually


def config(sim: PlantSim, tmp_path: Path) -> AgentConfig:
    doc = sim.agent_config_dict()
    for source in doc["source"]:
        source["poll_interval_s"] = 0.2
    doc["agent"] = {**doc.get("agent", {}), "state_dir": str(tmp_path / "state")}
    for key in ("mqtt", "influx", "control"):
        doc.pop(key, None)
    doc["kpi"]["interval_s"] = 0.2
    doc["kpi"]["advisor"]["steady_window_s"] = 1.0
    return AgentConfig.model_validate(doc)


async def test_demo_plant_produces_kpi_tags_and_bad_inputs_hold_the_advice(
    plant_sim: PlantSim, tmp_path: Path
) -> None:
    cfg = config(plant_sim, tmp_path)
    store = TagStore()
    bus = SampleBus(store)
    services = [*Acquisition(cfg, bus).services(), *kpi.build_services(cfg, store, bus)]
    tasks = [asyncio.create_task(s.run()) for s in services]

    def good(tag: str) -> bool:
        s = store.get(tag)
        return s is not None and s.quality is Quality.GOOD

    try:
        await eventually(
            lambda: good("kpi.heat_margin_mw") and good("kpi.co2.tph"), 20.0, "KPIs Good"
        )
        await eventually(
            lambda: getattr(store.get("kpi.advisor.validity"), "value", None) == "valid",
            20.0,
            "valid advice",
        )
        margin = store.get("kpi.heat_margin_mw")
        assert margin is not None
        assert isinstance(margin.value, float)
        assert -20 < margin.value < 20
        ratio = store.get("kpi.recycled_ratio.now")
        assert ratio is not None
        assert 3 < float(ratio.value or 0) < 15  # e-scrap 14 + Cu scrap 3 of ~232 t/h
        assert good("kpi.advisor.o2_flow_sp")

        await plant_sim.apply("bad:fsf.matte_temp")
        await eventually(
            lambda: getattr(store.get("kpi.advisor.validity"), "value", None) == "hold",
            20.0,
            "hold on a Bad input",
        )
        reason = store.get("kpi.advisor.reason")
        assert reason is not None
        assert "fsf.matte_temp" in str(reason.value)
        sp = store.get("kpi.advisor.o2_flow_sp")
        assert sp is not None
        assert sp.quality is Quality.UNCERTAIN
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert (tmp_path / "state" / "kpi_windows.json").exists()


async def test_balance_live_reads_the_plant_once(plant_sim: PlantSim, tmp_path: Path) -> None:
    cfg = config(plant_sim, tmp_path)
    snapshot = await asyncio.to_thread(live_snapshot, cfg)
    result = evaluate(cfg, {}, snapshot)
    inputs = result["inputs"]
    assert inputs["fsf.conc_feed_rate"]["from"] == "live"
    assert 200 < inputs["fsf.conc_feed_rate"]["value"] < 230
    assert result["advisor"]["validity"] == "valid"
    assert -20 < result["balance"]["heat_margin_mw"] < 20
