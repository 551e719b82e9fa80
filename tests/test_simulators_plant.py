"""The process model, stepped directly (no sockets): physics, conservation, ranges, determinism."""

from __future__ import annotations

import math

import pytest

from simulators.heat import Concentrate, Inputs, TrueParameters, evaluate
from simulators.plant import Plant, SetpointError
from simulators.tags import ALL_TAGS

REFERENCE = Inputs(conc_tph=215, escrap_tph=0, cu_scrap_tph=0, flux_tph=16, reverts_tph=15,
                   o2_nm3h=32060, o2_purity_pct=93, air_nm3h=20400, fuel_kgh=0)  # fmt: skip


def settle(plant: Plant, hours: float, dt: float = 10.0) -> None:
    for _ in range(int(hours * 3600 / dt)):
        plant.step(dt)


def test_reference_operating_point_has_about_4_mw_margin() -> None:
    b = evaluate(REFERENCE, TrueParameters())
    assert b.margin_mw == pytest.approx(4.0, abs=1.0)
    assert b.matte_grade_pct == pytest.approx(62.5, abs=3)
    assert b.matte_tph == pytest.approx(100, rel=0.05)
    assert b.slag_tph == pytest.approx(105, rel=0.06)


def test_scrap_lowers_and_fuel_and_oxygen_raise_the_margin() -> None:
    p = TrueParameters()
    base = evaluate(REFERENCE, p).margin_mw
    more = {
        "escrap": evaluate(replace_inputs(escrap_tph=10), p).margin_mw,
        "cu_scrap": evaluate(replace_inputs(cu_scrap_tph=5), p).margin_mw,
        "fuel": evaluate(replace_inputs(fuel_kgh=1000), p).margin_mw,
        "o2": evaluate(replace_inputs(o2_nm3h=33060), p).margin_mw,
    }
    assert more["escrap"] < base - 1.5
    assert more["cu_scrap"] < base
    # heavy oil: 1 t/h is 11.2 MW of LHV, of which the off-gas takes part away
    assert base + 6 < more["fuel"] < base + 11.2
    assert more["o2"] > base + 1


def replace_inputs(**changes: float) -> Inputs:
    from dataclasses import replace

    return replace(REFERENCE, **changes)


def test_temperatures_follow_the_margin_with_lags_of_minutes() -> None:
    plant = Plant(seed=3)
    settle(plant, 2)
    before = dict(plant.values)
    plant.write("fsf.fuel_flow_sp", 1000.0)
    plant.step(30)  # half a minute: the bath has hardly moved
    assert plant.values["fsf.matte_temp"] - before["fsf.matte_temp"] < 3
    settle(plant, 1)
    assert plant.values["fsf.matte_temp"] > before["fsf.matte_temp"] + 20
    assert plant.values["fsf.shaft_temp"] > before["fsf.shaft_temp"] + 20
    plant.write("fsf.fuel_flow_sp", 0.0)
    plant.write("fsf.escrap_feed_sp", 30.0)
    settle(plant, 2)
    assert plant.values["fsf.matte_temp"] < before["fsf.matte_temp"] - 10
    assert plant.margin_mw < 0


def test_feeds_follow_setpoints_with_a_lag() -> None:
    plant = Plant(seed=1)
    plant.write("fsf.escrap_feed_sp", 20.0)
    plant.step(10)
    assert 14 < plant.values["fsf.escrap_feed_rate"] < 20  # type: ignore[operator]
    settle(plant, 0.5)
    assert plant.values["fsf.escrap_feed_rate"] == pytest.approx(20.0, abs=0.1)
    assert plant.values["kiln.feed_rate"] > 20  # the kiln feeds more: it burns organics off
    assert plant.write_log == [(0.0, "fsf.escrap_feed_sp", 20.0)]


def test_totalisers_integrate_exactly_the_published_rates() -> None:
    plant = Plant(seed=5)
    feeds = ("conc", "escrap", "cu_scrap", "flux", "reverts")
    start = {f: float(plant.values[f"fsf.{f}_feed_total"]) for f in feeds}
    kiln0 = int(plant.values["kiln.feed_total"])
    integral = dict.fromkeys(feeds, 0.0)
    kiln_integral = 0.0
    dt = 7.0
    for i in range(2000):
        plant.step(dt)
        if i == 1000:
            plant.write("fsf.escrap_feed_sp", 25.0)
        for f in feeds:
            integral[f] += float(plant.values[f"fsf.{f}_feed_rate"]) * dt / 3600
        kiln_integral += float(plant.values["kiln.feed_rate"]) * 1000 * dt / 3600
    for f in feeds:
        increment = float(plant.values[f"fsf.{f}_feed_total"]) - start[f]
        assert increment == pytest.approx(integral[f], rel=1e-9), f
    assert int(plant.values["kiln.feed_total"]) - kiln0 == pytest.approx(kiln_integral, abs=2)


def test_totaliser_reset_restarts_from_zero() -> None:
    plant = Plant()
    plant.reset_totaliser("fsf.conc_feed_total")
    plant.reset_totaliser("kiln.residue_total")
    assert plant.values["fsf.conc_feed_total"] == 0
    assert plant.values["kiln.residue_total"] == 0
    plant.step(3600)
    assert 150 < plant.values["fsf.conc_feed_total"] < 280  # type: ignore[operator]


def test_setpoints_refuse_out_of_range_and_read_only_writes() -> None:
    plant = Plant()
    for tag, bad in [("fsf.fuel_flow_sp", 1501.0), ("fsf.o2_flow_sp", 19999.0),
                     ("fsf.escrap_feed_sp", -1.0), ("fsf.escrap_feed_sp", math.nan)]:  # fmt: skip
        with pytest.raises(SetpointError, match=tag.replace(".", r"\.")) as info:
            plant.write(tag, bad)
        assert info.value.out_of_range
    with pytest.raises(SetpointError) as info:
        plant.write("fsf.matte_temp", 1000.0)
    assert not info.value.out_of_range
    assert plant.setpoints == Plant().setpoints


def test_same_seed_same_plant_other_seed_other_plant() -> None:
    a, b, c = Plant(seed=7), Plant(seed=7), Plant(seed=8)
    for p in (a, b, c):
        settle(p, 1, dt=30)
    assert a.values == b.values
    assert a.values != c.values


@pytest.mark.parametrize("seed", [0, 1])
def test_a_day_without_faults_stays_in_the_documented_ranges(seed: int) -> None:
    plant = Plant(seed=seed)
    low = {t: math.inf for t in ALL_TAGS}
    high = {t: -math.inf for t in ALL_TAGS}
    assays: set[float] = set()
    for _ in range(86400 // 5):
        plant.step(5)
        for tag, value in plant.values.items():
            low[tag] = min(low[tag], float(value))
            high[tag] = max(high[tag], float(value))
        assays.add(float(plant.values["fsf.matte_grade"]))
    outside = {
        tag: (round(low[tag], 3), round(high[tag], 3), spec.normal)
        for tag, spec in ALL_TAGS.items()
        if low[tag] < spec.normal[0] or high[tag] > spec.normal[1]
    }
    assert not outside
    assert 20 <= len(assays) <= 30  # assays come about hourly, then hold
    # the plant moves: drifting feeds and temperatures, not constants
    for tag in ("fsf.conc_feed_rate", "fsf.matte_temp", "offgas.so2_pct", "fsf.cw_shaft_t_out"):
        assert high[tag] - low[tag] > 0.5, tag


def test_true_parameters_can_change_mid_run() -> None:
    plant = Plant(seed=2)
    before, grade = plant.margin_mw, plant.balance.matte_grade_pct
    plant.with_params(shell_loss_mw=plant.params.shell_loss_mw + 2.0)
    plant.step(1)
    assert plant.margin_mw == pytest.approx(before - 2.0, abs=0.3)
    richer = Concentrate(cu=0.295, fe=0.25, s=0.31, sio2=0.065)
    plant.with_params(conc=richer)
    plant.step(1)
    assert plant.params.conc.s == pytest.approx(0.31, abs=0.002)
    # the same oxygen on a more sulfidic ore: more FeS stays in the matte, the grade drops
    assert plant.balance.matte_grade_pct < grade - 1


def test_heartbeat_takes_integers_only() -> None:
    plant = Plant()
    plant.write("fsf.agent_heartbeat", 7.0)
    assert plant.values["fsf.agent_heartbeat"] == 7
    for bad in (7.5, math.nan, math.inf):
        with pytest.raises(SetpointError, match=r"fsf\.agent_heartbeat"):
            plant.write("fsf.agent_heartbeat", bad)


def test_a_stopped_furnace_stops_feeding_and_cools() -> None:
    plant = Plant(seed=4)
    settle(plant, 0.5)
    total, matte = plant.values["fsf.conc_feed_total"], plant.values["fsf.matte_temp"]
    plant.set_running(False)
    settle(plant, 1)
    assert plant.values["fsf.running"] is False
    assert plant.values["fsf.conc_feed_rate"] < 1
    assert plant.values["fsf.o2_flow"] < 1000
    assert plant.values["fsf.matte_temp"] < matte - 10  # type: ignore[operator]
    stopped_total = float(plant.values["fsf.conc_feed_total"])
    assert stopped_total - float(total) < 10  # what the feeder delivered while ramping down
    plant.set_running(True)
    settle(plant, 1)
    assert plant.values["fsf.conc_feed_rate"] > 200
