"""The KPI engine over a TagStore filled like acquisition fills it, with the demo config."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge_agent.config import AgentConfig
from edge_agent.config.loader import ConfigError, load_config
from edge_agent.contracts.samples import Quality, Sample, now_ns
from edge_agent.kpi import build_services
from edge_agent.kpi.catalogue import kpi_tags
from edge_agent.kpi.engine import KpiEngine, calendar
from edge_agent.kpi.state import load_json
from edge_agent.kpi.units import UnitError
from edge_agent.pipeline import SampleBus
from edge_agent.tagstore import TagStore
from tests.support.waiting import eventually

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "config" / "demo.toml"


def demo_config(tmp_path: Path) -> AgentConfig:
    return load_config(DEMO, [f'agent.state_dir="{tmp_path / "state"}"', "kpi.interval_s=0.05"])


def plant_values(cfg: AgentConfig) -> dict[str, float | bool]:
    hb = cfg.kpi.heat_balance
    assert hb is not None
    values: dict[str, float | bool] = dict(hb.operating_point)
    values.update({
        "fsf.running": True, "fsf.conc_feed_total": 5000.0, "fsf.escrap_feed_total": 800.0,
        "fsf.cu_scrap_feed_total": 100.0, "fsf.flux_feed_total": 400.0,
        "fsf.reverts_feed_total": 300.0, "fsf.flux_feed_rate": 16.0,
        "fsf.reverts_feed_rate": 15.0, "kiln.fuel_flow": 400.0, "kiln.feed_rate": 12.0,
        "kiln.residue_rate": 10.0, "fsf.escrap_feed_sp": 0.0, "fsf.fuel_flow_sp": 0.0,
        "fsf.o2_flow_sp": 32050.0,
    })  # fmt: skip
    return values


def samples_at(values: dict[str, float | bool], ts: int) -> list[Sample]:
    return [Sample(tag, v, Quality.GOOD, ts, ts) for tag, v in values.items()]


def by_tag(samples: list[Sample]) -> dict[str, Sample]:
    return {s.tag: s for s in samples}


def test_demo_config_produces_the_reference_balance_and_all_kpi_tags(tmp_path: Path) -> None:
    cfg = demo_config(tmp_path)
    store = TagStore()
    engine = KpiEngine(cfg, store, SampleBus(store))
    now = now_ns()
    store.update(samples_at(plant_values(cfg), now))
    out = by_tag(engine.compute(store.snapshot(), now))
    assert out["kpi.heat_margin_mw"].value == pytest.approx(4.2, abs=0.2)
    assert out["kpi.heat.reaction_mw"].value == pytest.approx(119.5, rel=0.02)
    assert out["kpi.heat_margin_mw"].quality is Quality.GOOD
    assert out["kpi.recycled_ratio.now"].value == pytest.approx(0.0)
    assert "primary: concentrate" in str(out["kpi.recycled_ratio.basis"].value)
    year = datetime.now(UTC).year + datetime.now(UTC).timetuple().tm_yday / 366
    assert out["kpi.recycled_ratio.target"].value == pytest.approx(
        12 + 1.3 * (year - 2020), abs=0.1
    )
    assert out["kpi.co2.tph"].value == pytest.approx(0.772 + 2 * 0.62 * 44.0095 / 12.011)
    # the advisor holds: it has not yet seen the feed steady for steady_window_s
    assert out["kpi.advisor.validity"].value == "hold"
    assert "steadiness" in str(out["kpi.advisor.reason"].value)
    assert out["kpi.advisor.escrap_feed_sp"].quality is Quality.UNCERTAIN
    assert out["kpi.advisor.escrap_feed_sp"].value == 0.0
    assert all(s.tag.startswith("kpi.") for s in out.values())
    # Every published tag is in the catalogue the sinks are given, with the type of its values.
    declared = {info.tag: info.type for info in kpi_tags(cfg)}
    assert set(out) == set(declared)
    python_types = {"number": (float, int), "integer": (int,), "string": (str,), "boolean": (bool,)}
    for tag, sample in out.items():
        if sample.value is not None:
            assert isinstance(sample.value, python_types[declared[tag]]), (tag, sample.value)
            assert isinstance(sample.value, bool) == (declared[tag] == "boolean"), tag
    for window in ("hour", "shift", "day", "month", "fiscal_year"):
        assert f"kpi.recycled_ratio.{window}" in out
        assert f"kpi.recycled_ratio.cu.{window}" in out
        assert f"kpi.co2.{window}_t" in out


def test_bad_input_makes_dependent_kpis_bad_and_names_it(tmp_path: Path) -> None:
    cfg = demo_config(tmp_path)
    store = TagStore()
    engine = KpiEngine(cfg, store, SampleBus(store))
    now = now_ns()
    store.update(samples_at(plant_values(cfg), now))
    store.update([Sample("fsf.matte_temp", None, Quality.BAD, now, None, "BadNoCommunication")])
    out = by_tag(engine.compute(store.snapshot(), now))
    margin = out["kpi.heat_margin_mw"]
    assert margin.quality is Quality.BAD
    assert margin.value is None
    assert "fsf.matte_temp" in (margin.reason or "")
    assert out["kpi.advisor.validity"].value == "hold"
    assert out["kpi.recycled_ratio.now"].quality is Quality.GOOD  # does not need matte temp
    store.update([Sample("fsf.matte_temp", 1250.0, Quality.UNCERTAIN, now, now, "frozen")])
    out = by_tag(engine.compute(store.snapshot(), now))
    assert out["kpi.heat_margin_mw"].quality is Quality.UNCERTAIN


def test_advice_becomes_valid_once_the_feed_was_steady(tmp_path: Path) -> None:
    cfg = demo_config(tmp_path)
    store = TagStore()
    engine = KpiEngine(cfg, store, SampleBus(store))
    values = plant_values(cfg)
    t = now_ns() - 400 * 10**9
    out: dict[str, Sample] = {}
    for _ in range(42):  # 410 s of steady feed in 10 s steps (window 300 s)
        store.update(samples_at(values, t))
        out = by_tag(engine.compute(store.snapshot(), t))
        t += 10 * 10**9
    assert out["kpi.advisor.validity"].value == "valid", out["kpi.advisor.reason"].value
    assert out["kpi.advisor.policy"].value == "hold_matte_grade"
    sp = out["kpi.advisor.escrap_feed_sp"]
    assert sp.quality is Quality.GOOD
    assert sp.value == pytest.approx(2.0)
    assert "hold_matte_grade" in (sp.reason or "")
    assert out["kpi.advisor.escrap_absorbable_tph"].value > 0


async def test_service_publishes_and_persists_windows(tmp_path: Path) -> None:
    cfg = demo_config(tmp_path)
    store = TagStore()
    bus = SampleBus(store)
    store.update(samples_at(plant_values(cfg), now_ns()))
    [service] = build_services(cfg, store, bus)
    task = asyncio.create_task(service.run())
    await eventually(lambda: store.get("kpi.heat_margin_mw") is not None, 10, "a kpi sample")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (tmp_path / "state" / "kpi_windows.json").exists()


def test_unknown_kpi_tag_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"fsf\.no_such_tag"):
        load_config(DEMO, ['kpi.heat_balance.matte_temp_tag="fsf.no_such_tag"'])


def test_a_unit_the_kpis_cannot_convert_fails_at_start(tmp_path: Path) -> None:
    cfg = demo_config(tmp_path)
    doc = cfg.model_dump()
    for source in doc["source"]:
        for tag in source["tag"]:
            if tag["id"] == "fsf.escrap_feed_total":
                tag["unit"] = "m³"
    broken = AgentConfig.model_validate(doc)
    with pytest.raises(UnitError, match=r"stream\.1\.total_tag: tag fsf\.escrap_feed_total"):
        KpiEngine(broken, TagStore(), SampleBus(TagStore()))


def test_current_setpoint_falls_back_to_the_measured_tag_then_to_the_balance(
    tmp_path: Path,
) -> None:
    """A setpoint that does not read Good is taken from its `measured_tag`; without a Good
    measured value, from what the heat balance measured for that input."""
    from types import SimpleNamespace

    from edge_agent.kpi.setpoints import current_setpoints

    cfg = demo_config(tmp_path)
    stream = cfg.kpi.advisor.feed[0].stream if cfg.kpi.advisor else ""
    op = SimpleNamespace(fuel_kgph=111.0, o2_nm3h=222.0, recycled_tph={stream: 3.0})
    now = now_ns()
    snap = {
        "fsf.o2_flow_sp": Sample("fsf.o2_flow_sp", 20000.0, Quality.GOOD, now),
        "fsf.fuel_flow_sp": Sample.bad("fsf.fuel_flow_sp", "connection_lost", now),
        "fsf.fuel_flow": Sample("fsf.fuel_flow", 150.0, Quality.GOOD, now),
        "fsf.escrap_feed_rate": Sample.bad("fsf.escrap_feed_rate", "connection_lost", now),
    }
    current = current_setpoints(cfg, snap, op)  # type: ignore[arg-type]
    assert current["oxygen"] == 20000.0  # the setpoint itself
    assert current["fuel"] == 150.0  # its measured_tag
    assert current[stream] == 3.0  # neither reads Good: the balance's value


def test_a_restarted_engine_carries_on_where_the_saved_one_stopped(tmp_path: Path) -> None:
    """Every step's state (ratio and CO2 windows, the learnt calibration, the last instant) goes
    into the state file: an engine restored from it computes what the saved one computes."""
    cfg = load_config(DEMO, [f'agent.state_dir="{tmp_path / "state"}"', "kpi.interval_s=10"])
    store = TagStore()
    before = KpiEngine(cfg, store, SampleBus(store))
    values = plant_values(cfg)
    t = now_ns() - 800 * 10**9
    # The site's day starts at midnight in its time zone (15:00 UTC for Tokyo): a run that
    # straddled it asked an almost empty new day for its CO2. The run starts at midnight then
    # (the engine's windows are today's, from its construction on).
    midnight = calendar(cfg).start("day", t + 710 * 10**9)
    t = max(t, midnight)
    for _ in range(70):  # 700 s steady: past the calibration window (600 s)
        store.update(samples_at(values, t))
        before.compute(store.snapshot(), t)
        t += 10 * 10**9
    before.save()
    after = KpiEngine(cfg, store, SampleBus(store))
    after.restore(load_json(tmp_path / "state" / "kpi_windows.json") or {}, t)
    saved = before.state()
    assert after.state() == saved
    store.update(samples_at(values, t))
    expected = by_tag(before.compute(store.snapshot(), t))
    got = by_tag(after.compute(store.snapshot(), t))
    assert saved["unexplained_mw"] != 0.0  # the calibration learnt something
    assert got["kpi.heat.unexplained_mw"].value == saved["unexplained_mw"]
    assert expected["kpi.co2.day_t"].value > 0  # and CO2 was integrated
    # Memory only: the advisor's and the calibration's steadiness histories; a restarted engine
    # holds its advice and its calibration until it has seen the furnace steady again.
    memory = ("kpi.advisor.", "kpi.heat.unexplained_mw", "kpi.heat_margin_calibrated_mw")
    kept = {tag for tag in expected if not tag.startswith(memory)}
    assert {tag: got[tag] for tag in kept} == {tag: expected[tag] for tag in kept}


def test_a_calibration_outlives_a_disabled_heat_balance(tmp_path: Path) -> None:
    cfg = load_config(DEMO, [f'agent.state_dir="{tmp_path}"', "kpi.heat_balance.enabled=false"])
    engine = KpiEngine(cfg, TagStore(), SampleBus(TagStore()))
    engine.restore({"unexplained_mw": 1.5, "ratio": None, "co2": None}, now_ns())
    assert engine.state()["unexplained_mw"] == 1.5
