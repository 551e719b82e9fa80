"""The guard's decisions, one refusal reason per test, with a hand-filled TagStore and a fixed
clock (the guard takes `now_ns` as an argument, so no test waits)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.config import AgentConfig
from edge_agent.contracts.samples import Quality, Sample, now_ns
from edge_agent.control.guard import Guard, Origin, Refusal, WriteRequest
from edge_agent.tagstore import TagStore
from tests.support.fake_plant import NS, config, good, plant_store


def make_guard(cfg: AgentConfig, store: TagStore, unhealthy: str | None = None) -> Guard:
    return Guard(
        cfg.control, store, lambda: unhealthy, {t.id: t.max_age_s for t in cfg.tags().values()}
    )


def scada(tag: str, value: object, *, age_s: float = 0.0, now: int | None = None) -> WriteRequest:
    now = now if now is not None else now_ns()
    return WriteRequest(Origin.SCADA, tag, value, "req-1", now - int(age_s * NS))


def advisor(tag: str, value: object, *, valid: bool = True) -> WriteRequest:
    return WriteRequest(Origin.ADVISOR, tag, value, "adv-1", recommendation_valid=valid)


@pytest.fixture
def cfg(tmp_path: Path) -> AgentConfig:
    return config(tmp_path)


def refresh(store: TagStore, at_ns: int, fuel: float | None = None) -> None:
    """As acquisition would: new readings of the permissive (and the setpoint) at `at_ns`."""
    store.update([good("fsf.advisor_permissive", True, acq_ns=at_ns)])
    if fuel is not None:
        store.update([good("fsf.fuel_flow_sp", fuel, acq_ns=at_ns)])


def refusal(guard: Guard, request: WriteRequest, now: int | None = None) -> Refusal | None:
    return guard.evaluate(request, now if now is not None else now_ns()).refusal


def test_accepts_a_bounded_step_from_scada(cfg: AgentConfig) -> None:
    decision = make_guard(cfg, plant_store()).evaluate(scada("fsf.fuel_flow_sp", 550), now_ns())
    assert decision.accepted
    assert decision.value == 550.0
    assert decision.previous == 500.0


def test_not_allowlisted(cfg: AgentConfig) -> None:
    # escrap_feed_sp is writable in its source but not on the allowlist
    assert refusal(make_guard(cfg, plant_store()), scada("fsf.escrap_feed_sp", 12)) == (
        Refusal.NOT_ALLOWLISTED
    )


def test_origin_not_allowed(cfg: AgentConfig) -> None:
    assert refusal(make_guard(cfg, plant_store()), advisor("fsf.o2_flow_sp", 30500)) == (
        Refusal.ORIGIN_NOT_ALLOWED
    )


@pytest.mark.parametrize("value", ["550", None, True, [550], {"v": 550}])
def test_wrong_type(cfg: AgentConfig, value: object) -> None:
    assert refusal(make_guard(cfg, plant_store()), scada("fsf.fuel_flow_sp", value)) == (
        Refusal.WRONG_TYPE
    )


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite(cfg: AgentConfig, value: float) -> None:
    assert refusal(make_guard(cfg, plant_store()), scada("fsf.fuel_flow_sp", value)) == (
        Refusal.NON_FINITE
    )


@pytest.mark.parametrize("value", [-0.1, 1200.5, 1500, 10**400])
def test_out_of_bounds_uses_the_allowlist_bounds(cfg: AgentConfig, value: float) -> None:
    # 1500 is inside the tag's own bounds but outside the allowlist's narrower ones
    decision = make_guard(cfg, plant_store()).evaluate(scada("fsf.fuel_flow_sp", value), now_ns())
    assert decision.refusal is Refusal.OUT_OF_BOUNDS
    assert "1200" in decision.detail


@pytest.mark.parametrize("age_s", [10.5, -2.5])
def test_command_too_old_or_from_the_future(cfg: AgentConfig, age_s: float) -> None:
    assert refusal(make_guard(cfg, plant_store()), scada("fsf.fuel_flow_sp", 520, age_s=age_s)) == (
        Refusal.COMMAND_TOO_OLD
    )


def test_command_without_timestamp_is_too_old(cfg: AgentConfig) -> None:
    request = WriteRequest(Origin.SCADA, "fsf.fuel_flow_sp", 520, "req-1", None)
    assert refusal(make_guard(cfg, plant_store()), request) == Refusal.COMMAND_TOO_OLD


def test_advisory_mode_refuses_everything_valid(tmp_path: Path) -> None:
    cfg = config(tmp_path, mode="advisory")
    guard = make_guard(cfg, plant_store())
    assert refusal(guard, scada("fsf.fuel_flow_sp", 520)) == Refusal.ADVISORY_MODE
    assert refusal(guard, advisor("fsf.fuel_flow_sp", 520)) == Refusal.ADVISORY_MODE


def test_agent_unhealthy(cfg: AgentConfig) -> None:
    guard = make_guard(cfg, plant_store(), unhealthy="source fsf has delivered no Good sample")
    decision = guard.evaluate(scada("fsf.fuel_flow_sp", 520), now_ns())
    assert decision.refusal is Refusal.AGENT_UNHEALTHY
    assert "source fsf" in decision.detail


@pytest.mark.parametrize("value", [False, 0])
def test_permissive_off(cfg: AgentConfig, value: bool | int) -> None:
    assert refusal(
        make_guard(cfg, plant_store(permissive=value)), scada("fsf.fuel_flow_sp", 520)
    ) == (Refusal.PERMISSIVE_OFF)


def test_permissive_stale_when_old_bad_or_missing(cfg: AgentConfig) -> None:
    store = plant_store()
    guard = make_guard(cfg, store)
    now = now_ns()
    store.update([good("fsf.advisor_permissive", True, acq_ns=now - 6 * NS)])
    assert refusal(guard, scada("fsf.fuel_flow_sp", 520, now=now), now) == Refusal.PERMISSIVE_STALE
    store.update([Sample.bad("fsf.advisor_permissive", "BadCommunicationError")])
    assert refusal(guard, scada("fsf.fuel_flow_sp", 520)) == Refusal.PERMISSIVE_STALE
    empty = TagStore()
    empty.update([good("fsf.fuel_flow_sp", 500.0)])
    assert refusal(make_guard(cfg, empty), scada("fsf.fuel_flow_sp", 520)) == (
        Refusal.PERMISSIVE_STALE
    )


def test_recommendation_not_valid(cfg: AgentConfig) -> None:
    assert refusal(
        make_guard(cfg, plant_store()), advisor("fsf.fuel_flow_sp", 520, valid=False)
    ) == (Refusal.RECOMMENDATION_NOT_VALID)


def test_rate_limited_per_tag(cfg: AgentConfig) -> None:
    store = plant_store()
    guard = make_guard(cfg, store)
    now = now_ns()
    assert guard.evaluate(scada("fsf.fuel_flow_sp", 510, now=now), now).accepted
    later = now + 9 * NS
    refresh(store, later, fuel=510)
    assert refusal(guard, scada("fsf.fuel_flow_sp", 520, now=later), later) == Refusal.RATE_LIMITED
    much_later = now + 10 * NS
    refresh(store, much_later, fuel=510)
    assert refusal(guard, scada("fsf.fuel_flow_sp", 520, now=much_later), much_later) is None


def test_ramp_limited_refuses_a_scada_step(cfg: AgentConfig) -> None:
    decision = make_guard(cfg, plant_store()).evaluate(scada("fsf.fuel_flow_sp", 650), now_ns())
    assert decision.refusal is Refusal.RAMP_LIMITED
    assert "+150" in decision.detail


def test_ramp_clamps_an_advisor_step(cfg: AgentConfig) -> None:
    decision = make_guard(cfg, plant_store()).evaluate(advisor("fsf.fuel_flow_sp", 300), now_ns())
    assert decision.accepted
    assert decision.value == 400.0  # 500 - 100/min
    assert decision.detail.startswith("clamped to the ramp")


def test_ramp_budget_is_a_sliding_minute(cfg: AgentConfig) -> None:
    """Three 40 kg/h steps within a minute: the third gets only the 20 left of 100/min."""
    store = plant_store()
    guard = make_guard(cfg, store)
    t0 = now_ns()
    value = 500.0
    for i in range(2):
        t = t0 + i * 20 * NS
        refresh(store, t, fuel=value)
        decision = guard.evaluate(advisor("fsf.fuel_flow_sp", value + 40), t)
        assert decision.value == value + 40
        value += 40
    t = t0 + 40 * NS
    refresh(store, t, fuel=value)
    assert guard.evaluate(advisor("fsf.fuel_flow_sp", value + 40), t).value == value + 20
    t = t0 + 61 * NS  # the first step has left the window
    refresh(store, t, fuel=value + 20)
    assert guard.evaluate(advisor("fsf.fuel_flow_sp", value + 60), t).value == value + 60


def test_ramp_needs_a_known_present_value(cfg: AgentConfig) -> None:
    store = plant_store()
    store.update([Sample("fsf.fuel_flow_sp", None, Quality.BAD, now_ns(), reason="BadTimeout")])
    decision = make_guard(cfg, store).evaluate(scada("fsf.fuel_flow_sp", 520), now_ns())
    assert decision.refusal is Refusal.RAMP_LIMITED
    assert "not known" in decision.detail


def test_preview_does_not_use_up_rate_or_ramp(cfg: AgentConfig) -> None:
    guard = make_guard(cfg, plant_store())
    now = now_ns()
    for _ in range(3):
        assert guard.evaluate(scada("fsf.fuel_flow_sp", 600, now=now), now, commit=False).accepted


def test_every_refusal_has_a_message() -> None:
    for reason in Refusal:
        assert reason.message, reason
