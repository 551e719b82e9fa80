"""Property-based: whatever arrives on whatever topic, no write leaves the allowlist, its bounds or
its ramp; and in advisory mode with the heartbeat off, nothing is written at all.

Fuzzing runs the real parser, guard, executor and audit against a recording fake driver (fast);
tests/test_control_plant.py sweeps the same kind of input once against the real simulator.
"""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from edge_agent.config import AgentConfig
from edge_agent.contracts.samples import iso_utc, now_ns
from edge_agent.control import ControlPath
from tests.support.fake_plant import SETPOINTS, RecordingDriver, config, good, plant_store

TAGS = [
    "fsf.fuel_flow_sp",
    "fsf.o2_flow_sp",
    "fsf.escrap_feed_sp",
    "fsf.matte_temp",
    "fsf.advisor_permissive",
    "fsf.agent_heartbeat",
    "fsf.nonexistent",
    "kpi.advisor.fuel_flow_sp",
]

values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-1000, max_value=50000),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([499.0, 550.0, 30500.0, 29800.0, 1200.0, 25000.0, 40000.0, 0, -1]),
    st.text(max_size=8),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),
)


@st.composite
def timestamps(draw: st.DrawFn) -> Any:
    offset_s = draw(st.sampled_from([0.0, 0.0, 0.0, -1.0, 5.0, 11.0, 3600.0, -3.0]))
    ts_ns = now_ns() - int(offset_s * 1e9)
    return draw(
        st.sampled_from(
            [iso_utc(ts_ns), ts_ns // 1_000_000, "yesterday", None, True, iso_utc(ts_ns)[:-1]]
        )
    )


@st.composite
def topics(draw: st.DrawFn) -> str:
    tag = draw(st.sampled_from(TAGS))
    good_topic = "plant/demo/" + tag.replace(".", "/") + "/set"
    return draw(
        st.one_of(
            st.just(good_topic),
            st.just(good_topic),
            st.just(good_topic.replace("demo", "other")),
            st.text(max_size=40).map(lambda t: "plant/demo/" + t + "/set"),
        )
    )


@st.composite
def payloads(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["good", "good", "good", "extra", "bytes", "json"]))
    if kind == "bytes":
        return draw(st.binary(max_size=1200))
    if kind == "json":
        nested = st.recursive(st.none() | st.integers(), st.lists, max_leaves=5)
        return json.dumps(draw(nested)).encode()
    fields: dict[str, Any] = {
        "request_id": draw(st.sampled_from(["r1", "r-2", "", "x" * 70, 7])),
        "value": draw(values),
        "ts": draw(timestamps()),
    }
    if kind == "extra":
        fields[draw(st.text(max_size=5))] = draw(st.text(max_size=2000))
    return json.dumps(fields).encode()


commands = st.lists(
    st.tuples(topics(), payloads(), st.booleans(), st.booleans()), min_size=1, max_size=12
)
dcmds = st.lists(st.tuples(st.sampled_from(TAGS), values, timestamps()), max_size=6)


async def drive(path: ControlPath, cmds: list[Any], direct: list[Any]) -> None:
    for topic, payload, retained, advance in cmds:
        await path.commands.handle(topic, payload, retained=retained)
        if advance:
            await path.follower.cycle()
    for tag, value, ts in direct:
        ts_ns = ts * 1_000_000 if isinstance(ts, int) and not isinstance(ts, bool) else now_ns()
        await path.command(tag, value, ts_ns, "dcmd")


def assert_guarded(
    cfg: AgentConfig, writes: list[tuple[str, Any]], start: dict[str, float]
) -> None:
    allow = {entry.tag: entry for entry in cfg.control.allow}
    last = dict(start)
    moved: dict[str, float] = {}
    for tag, value in writes:
        assert tag in allow, (tag, value)
        entry = allow[tag]
        assert isinstance(value, float)
        assert math.isfinite(value)
        assert entry.min <= value <= entry.max, (tag, value)
        moved[tag] = moved.get(tag, 0.0) + abs(value - last[tag])
        last[tag] = value
    # one example runs within a minute: the total movement is within one minute's ramp
    for tag, total in moved.items():
        assert total <= allow[tag].max_rate_per_min + 1e-6, (tag, total)


def without_fsync(path: ControlPath) -> None:
    """Keep audit lines in memory: thousands of fsyncs would make fuzzing slow and say nothing
    new about the guard (the file's durability is tested in test_control_executor.py)."""
    lines: list[str] = []
    path.audit._append = lines.append  # type: ignore[method-assign]


SETTINGS = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@SETTINGS
@given(cmds=commands, direct=dcmds, recommendation=values)
def test_no_write_outside_allowlist_bounds_or_ramp(
    tmp_path: Path, cmds: list[Any], direct: list[Any], recommendation: Any
) -> None:
    cfg = config(tmp_path, readback_timeout_s=0.01)
    store = plant_store()
    if recommendation is not None and not isinstance(recommendation, list):
        store.update([good("kpi.advisor.fuel_flow_sp", recommendation)])
    driver = RecordingDriver(store)
    path = ControlPath(cfg, store, driver)
    without_fsync(path)
    asyncio.run(drive(path, cmds, direct))
    event(f"writes reached the driver: {bool(driver.writes)}")
    assert_guarded(cfg, driver.writes, SETPOINTS)


@SETTINGS
@given(cmds=commands, direct=dcmds)
def test_advisory_mode_with_heartbeat_off_writes_nothing(
    tmp_path: Path, cmds: list[Any], direct: list[Any]
) -> None:
    cfg = config(tmp_path, mode="advisory", readback_timeout_s=0.01)
    store = plant_store()
    store.update([good("kpi.advisor.fuel_flow_sp", 520.0)])  # a valid recommendation
    driver = RecordingDriver(store)
    path = ControlPath(cfg, store, driver)
    without_fsync(path)
    assert path.heartbeat is None
    assert [s.name for s in path.services()] == []  # no [mqtt]: no commands; no follower
    asyncio.run(drive(path, cmds, direct))
    assert driver.writes == []
