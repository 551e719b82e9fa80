"""Setpoint advisor: hold reasons, bounds and ramp limits, sign and size of recommendations."""

from __future__ import annotations

from dataclasses import replace

import pytest

from edge_agent.contracts.samples import Quality, Sample
from edge_agent.kpi.advisor import AdvisorSettings, Limits, advise, hold_reasons
from edge_agent.kpi.furnace import Concentrate, FurnaceModel, OperatingPoint, RecycledMaterial
from edge_agent.kpi.heat_balance import solve
from edge_agent.kpi.thermochemistry import Organics

MODEL = FurnaceModel(
    concentrate=Concentrate(cu=0.30, fe=0.23, s=0.28, sio2=0.08, other=0.11),
    recycled={
        "cu_scrap": RecycledMaterial(cu_metal=0.92, fe_metal=0.03),
        "resin": RecycledMaterial(organics=0.8),
    },
    fuel=Organics(c=0.854, h=0.12, o=0.026, lhv_mj_per_kg=40.4),
)
OP = OperatingPoint(
    conc_tph=215.0, recycled_tph={"cu_scrap": 2.0, "resin": 0.0}, fuel_kgph=0.0,
    o2_nm3h=32050.0, o2_purity=0.93, air_nm3h=20370.0, matte_grade=0.65, matte_temp_c=1250.0,
    slag_temp_c=1280.0, offgas_temp_c=1300.0, q_loss_mw=12.0,
)  # fmt: skip
SETTINGS = AdvisorSettings(
    reserve_mw=3.0,
    feed_limits={"cu_scrap": Limits(0.0, 10.0, 1.0)},
    fuel_limits=Limits(0.0, 1500.0, 300.0),
    oxygen_limits=Limits(20000.0, 45000.0, 1500.0),
    oxygen_capacity_nm3h=36000.0,
)


def rec(advice: object, name: str) -> object:
    return next(r for r in advice.recommendations if r.name == name)  # type: ignore[attr-defined]


def test_surplus_goes_to_recycled_feed_sized_by_the_models_derivative() -> None:
    margin = solve(MODEL, OP).margin_mw
    assert margin > 3.0
    a = advise(MODEL, OP, SETTINGS, {})
    assert a.validity == "valid"
    assert a.policy == "hold_matte_grade"
    assert a.summary()[1:17] == "hold_matte_grade"
    q = a.heat_demand_gj_t["cu_scrap"] / 3.6  # MW per t/h
    assert q > 0
    assert a.absorbable_tph["cu_scrap"] == pytest.approx((margin - 3.0) / q)
    assert a.absorbable_tph["resin"] is None  # releases heat: not heat-limited
    scrap = rec(a, "cu_scrap")
    assert scrap.target == pytest.approx(min(10.0, 2.0 + (margin - 3.0) / q))  # type: ignore[attr-defined]
    assert scrap.value == pytest.approx(3.0)  # ramp-limited: one step of 1 t/h  # type: ignore[attr-defined]
    # taking that much scrap really leaves the reserve
    after = solve(MODEL, OP.with_stream("cu_scrap", 2.0 + a.absorbable_tph["cu_scrap"] or 0))
    assert after.margin_mw == pytest.approx(3.0, abs=0.05)


def test_hold_oxygen_policy_derives_a_smaller_heat_demand_for_copper_scrap() -> None:
    grade = advise(MODEL, OP, SETTINGS, {})
    oxygen = advise(MODEL, OP, replace(SETTINGS, policy="hold_oxygen"), {})
    assert oxygen.policy == "hold_oxygen"
    assert 0 < oxygen.heat_demand_gj_t["cu_scrap"] < grade.heat_demand_gj_t["cu_scrap"]
    assert oxygen.absorbable_tph["cu_scrap"] > grade.absorbable_tph["cu_scrap"]  # type: ignore[operator]


def test_deficit_asks_for_oxygen_up_to_capacity_then_fuel() -> None:
    cold = replace(OP, q_loss_mw=30.0)
    a = advise(MODEL, cold, replace(SETTINGS, oxygen_limits=Limits(20000, 45000, 1e6),
                                    fuel_limits=Limits(0, 1500, 1e6)), {})  # fmt: skip
    assert a.margin_mw < 3.0
    o2 = rec(a, "oxygen")
    fuel = rec(a, "fuel")
    assert o2.value == pytest.approx(36000.0)  # clipped to the oxygen plant  # type: ignore[attr-defined]
    assert fuel.value > 0  # type: ignore[attr-defined]
    # the two together restore the reserve (model-consistent sizing)
    after = solve(MODEL, replace(cold, o2_nm3h=36000.0,
                                 air_nm3h=max(0.0, cold.air_nm3h - (36000 - 32050) * 0.93 / 0.2095),
                                 fuel_kgph=fuel.value))  # type: ignore[attr-defined]  # fmt: skip
    assert after.margin_mw == pytest.approx(3.0, abs=0.75)  # first order: the advice iterates
    assert rec(a, "cu_scrap").value == pytest.approx(2.0)  # type: ignore[attr-defined]


def test_fuel_only_deficit_matches_reserve_over_usable_heating_value() -> None:
    cold = replace(OP, q_loss_mw=20.0)
    a = advise(MODEL, cold, replace(SETTINGS, deficit_order=("fuel",),
                                    fuel_limits=Limits(0, 5000, 1e6)), {})  # fmt: skip
    eta_lhv = a.fuel_mw_per_kgph * 3600  # MW per kg/h = MJ per kg
    assert eta_lhv == pytest.approx(0.73 * 40.4, rel=0.05)
    assert rec(a, "fuel").value == pytest.approx((3.0 - a.margin_mw) / a.fuel_mw_per_kgph)  # type: ignore[attr-defined]


def test_scrap_comes_off_when_oxygen_and_fuel_are_exhausted() -> None:
    cold = replace(OP, q_loss_mw=30.0, recycled_tph={"cu_scrap": 8.0})
    s = replace(SETTINGS, oxygen_capacity_nm3h=32050.0, fuel_limits=Limits(0, 0, 1))
    a = advise(MODEL, cold, s, {})
    assert rec(a, "cu_scrap").value == pytest.approx(7.0)  # down, one ramp step  # type: ignore[attr-defined]


def test_surplus_first_cuts_fuel() -> None:
    hot = replace(OP, fuel_kgph=600.0, q_loss_mw=10.0)
    a = advise(MODEL, hot, SETTINGS, {})
    assert rec(a, "fuel").value == pytest.approx(300.0)  # one ramp step down  # type: ignore[attr-defined]


def test_limits_clamp_and_ramp() -> None:
    lim = Limits(0.0, 10.0, 2.0)
    assert lim.apply(5.0, 9.0) == 7.0
    assert lim.apply(5.0, 1.0) == 3.0
    assert lim.apply(9.5, 20.0) == 10.0
    assert lim.apply(0.5, -5.0) == 0.0


def test_hold_keeps_every_setpoint_and_says_why() -> None:
    a = advise(MODEL, OP, SETTINGS, {}, ["furnace not running"])
    assert a.validity == "hold"
    assert "furnace not running" in a.reason
    assert all(r.value == r.current for r in a.recommendations)


NOW = 1_800_000_000 * 10**9


def good(tag: str, value: float | bool, age_s: float = 1.0) -> Sample:
    ts = NOW - int(age_s * 1e9)
    return Sample(tag, value, Quality.GOOD, ts, ts)


def steady_history(rate: float = 215.0) -> list[tuple[int, float]]:
    return [(NOW - i * 10**10, rate) for i in range(70, -1, -1)]


def reasons(**changes: object) -> list[str]:
    inputs: dict[str, Sample | None] = {
        "fsf.matte_temp": good("fsf.matte_temp", 1250.0),
        "fsf.matte_grade": good("fsf.matte_grade", 65.0, age_s=3000),
    }
    args: dict[str, object] = {
        "inputs": inputs, "max_age_s": {"fsf.matte_temp": 30.0, "fsf.matte_grade": 10800.0},
        "now_ns": NOW, "running": good("fsf.running", True), "feed_history": steady_history(),
        "steady_window_s": 600.0, "steady_tolerance": 0.05,
    }  # fmt: skip
    args.update(changes)
    return hold_reasons(**args)  # type: ignore[arg-type]


def test_valid_when_all_inputs_are_good_fresh_running_and_steady() -> None:
    assert reasons() == []  # the hour-old assay is fresh for an assay


def test_hold_reasons() -> None:
    bad = Sample("fsf.matte_temp", None, Quality.BAD, NOW, NOW, "BadCommunicationError")
    inputs = {"fsf.matte_temp": bad, "fsf.matte_grade": good("fsf.matte_grade", 65.0)}
    assert reasons(inputs=inputs) == ["fsf.matte_temp: bad (BadCommunicationError)"]
    inputs = {"fsf.matte_temp": good("fsf.matte_temp", 1250.0, age_s=120)}
    assert reasons(inputs=inputs) == ["fsf.matte_temp: stale (120 s old, limit 30 s)"]
    inputs = {"fsf.matte_grade": good("fsf.matte_grade", 65.0, age_s=4 * 3600)}
    assert reasons(inputs=inputs)[0].startswith("fsf.matte_grade: stale")
    assert reasons(inputs={"fsf.matte_temp": None}) == ["fsf.matte_temp: no value yet"]
    unc = Sample("fsf.matte_temp", 1250.0, Quality.UNCERTAIN, NOW, NOW, "frozen")
    assert reasons(inputs={"fsf.matte_temp": unc}) == ["fsf.matte_temp: uncertain (frozen)"]
    assert reasons(running=good("fsf.running", False)) == ["furnace not running"]
    assert reasons(running=None) == ["furnace not running"]
    wobbly = [(ts, 215.0 if i % 2 else 190.0) for i, (ts, _) in enumerate(steady_history())]
    assert reasons(feed_history=wobbly)[0].startswith("feed not steady")
    assert reasons(feed_history=steady_history()[-5:])[0].startswith(
        "feed steadiness not yet known"
    )
