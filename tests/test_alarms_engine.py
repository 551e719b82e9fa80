"""The alarm engine on the sample bus: events in the outbox behind their samples, the clock tick,
operator actions, state saved and restored without a flood, a failing evaluation contained."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from edge_agent.alarms import ActionRefused, AlarmEvent, State, Transition
from edge_agent.alarms.engine import AlarmEngine, build
from edge_agent.alarms.records import from_sample, is_alarm_record
from edge_agent.config import AgentConfig
from edge_agent.outbox import Outbox
from edge_agent.pipeline import SampleBus
from edge_agent.status_board import StatusBoard
from edge_agent.tagstore import TagStore
from tests.support.alarms import T0, Clock, ListWriter, S, config, temp
from tests.support.waiting import eventually


def rig(
    tmp_path: Path, clock: Clock, **alarms: object
) -> tuple[AlarmEngine, SampleBus, ListWriter]:
    writer = ListWriter()
    bus = SampleBus(TagStore(), writer)
    engine = AlarmEngine(config(tmp_path, **alarms), bus.store, bus, clock=clock)
    return engine, bus, writer


async def test_events_are_written_in_the_batch_behind_their_sample(tmp_path: Path) -> None:
    _engine, bus, writer = rig(tmp_path, Clock())
    await bus.publish([temp(1250.0, 0), temp(1310.0, 1)])
    (batch,) = writer.batches
    assert [s.tag for s in batch] == [
        "fsf.matte_temp",
        "fsf.matte_temp",
        "_alarms.fsf.matte_temp.high",
    ]
    record = batch[-1]
    assert record.source_ns == T0 + S  # the triggering sample's source time
    body = json.loads(str(record.value))
    assert body["state"] == "active_unack"
    assert body["value"] == 1310.0
    assert bus.store.get("_alarms.fsf.matte_temp.high") is None  # records are not tag values


async def test_a_source_with_a_watched_tag_is_evaluated_one_without_skips_the_tap(
    tmp_path: Path,
) -> None:
    engine, bus, writer = rig(tmp_path, Clock())
    assert engine.alarms.watched_tags() == {"fsf.matte_temp"}
    await bus.publish([temp(1310.0, 1)], frozenset({"fsf.matte_temp", "fsf.slag_temp"}))
    assert [s.tag for s in writer.batches[-1]][-1] == "_alarms.fsf.matte_temp.high"
    other = [temp(1320.0, 2)]  # a tag the promise leaves out is not looked at: hence the promise
    await bus.publish(other, frozenset({"offgas.so2_pct"}))
    assert writer.batches[-1] == other


async def test_real_outbox_keeps_records_readable(tmp_path: Path) -> None:
    outbox = await Outbox.open(tmp_path / "outbox.db", ["mqtt"])
    try:
        bus = SampleBus(TagStore(), outbox)
        AlarmEngine(config(tmp_path), bus.store, bus, clock=Clock())
        await bus.publish([temp(1310.0, 1)])
        (batch,) = await outbox.cursor("mqtt").read()
        events = [from_sample(s) for s in batch.samples if is_alarm_record(s)]
        assert [e.transition for e in events if e] == [Transition.ACTIVATED]
    finally:
        await outbox.close()


async def test_tick_completes_a_delay_and_actions_are_published(tmp_path: Path) -> None:
    clock = Clock()
    engine, bus, writer = rig(tmp_path, clock, on_delay_s=10.0)
    await bus.publish([temp(1310.0, 0)])
    assert writer.events() == []
    clock.now = T0 + 11 * S
    await bus.record(engine.tick())
    (activated,) = writer.events()
    assert activated.ts_ns == T0 + 10 * S
    await engine.act("ack", "fsf.matte_temp.high", "op.anna", "seen it")
    assert writer.events()[-1].state is State.ACTIVE_ACK
    with pytest.raises(ActionRefused):
        await engine.act("ack", "fsf.matte_temp.high", "op.anna", None)


async def test_state_survives_a_restart_without_a_flood(tmp_path: Path) -> None:
    clock = Clock()
    engine, bus, _writer = rig(tmp_path, clock)
    await bus.publish([temp(1310.0, 0)])
    await engine.act("shelve", "fsf.matte_temp.high", "op", "maintenance", duration_s=3600)
    task = asyncio.create_task(engine.run())
    state_file = tmp_path / "alarms.json"
    try:
        await eventually(state_file.exists, 10, "the alarm state file")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    saved = json.loads(state_file.read_text())
    assert saved["alarms"]["fsf.matte_temp.high"]["shelved_until_ns"] == T0 + 3600 * S

    again, bus2, writer2 = rig(tmp_path, clock)
    assert again.alarms.status("fsf.matte_temp.high").state is State.SHELVED
    await bus2.publish([temp(1320.0, 5)])
    assert writer2.events() == []
    clock.now = T0 + 3601 * S
    await bus2.record(again.tick())
    (expired,) = writer2.events()
    assert (expired.transition, expired.state) == (Transition.SHELVE_EXPIRED, State.ACTIVE_UNACK)


async def test_an_unreadable_state_file_starts_afresh(tmp_path: Path) -> None:
    (tmp_path / "alarms.json").write_text("{not json")
    engine, _, _ = rig(tmp_path, Clock())
    assert engine.alarms.status("fsf.matte_temp.high").state is State.NORMAL


async def test_a_failing_evaluation_never_costs_samples(tmp_path: Path) -> None:
    engine, bus, writer = rig(tmp_path, Clock())

    def broken(samples: object) -> list[AlarmEvent]:
        raise RuntimeError("boom")

    engine.alarms.on_samples = broken  # type: ignore[method-assign]
    await bus.publish([temp(1310.0, 0)])
    await bus.publish([temp(1311.0, 1)])
    assert [len(b) for b in writer.batches] == [1, 1]
    status = engine.status()
    assert not status.healthy
    assert status.counters["evaluation_failures_total"] == 2


def test_build_adds_nothing_without_alarms(tmp_path: Path) -> None:
    cfg = AgentConfig.model_validate({"agent": {"state_dir": str(tmp_path)}})
    board = StatusBoard()
    assert build(cfg, TagStore(), SampleBus(TagStore()), board) is None
    assert board.statuses() == []


async def test_status_counts_states_and_priorities(tmp_path: Path) -> None:
    engine, bus, _ = rig(tmp_path, Clock())
    await bus.publish([temp(1310.0, 0)])
    status = engine.status()
    assert status.kind == "alarms"
    assert status.gauges["active_unack"] == 1
    assert status.gauges["active_high"] == 1
    assert status.gauges["activations_last_10min"] == 1
    assert status.counters["activations_total"] == 1
