"""Operator actions on alarms: parsing, hygiene (retain, age, ACL, rate, replays), audit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from edge_agent.alarms import State
from edge_agent.alarms.commands import (
    AlarmAudit,
    AlarmCommandHandler,
    CommandTopics,
)
from edge_agent.alarms.engine import AlarmEngine
from edge_agent.config.alarms import AlarmCommands
from edge_agent.contracts.samples import iso_utc
from edge_agent.pipeline import SampleBus
from edge_agent.tagstore import TagStore
from tests.support.alarms import T0, Clock, ListWriter, config, temp

S = 1_000_000_000
ACK = "plant/t/_alarms/fsf.matte_temp.high/ack"
SHELVE = "plant/t/_alarms/fsf.matte_temp.high/shelve"


class Rig:
    def __init__(self, tmp_path: Path, **settings: Any) -> None:
        self.clock = Clock()
        self.writer = ListWriter()
        self.bus = SampleBus(TagStore(), self.writer)
        self.engine = AlarmEngine(config(tmp_path), self.bus.store, self.bus, clock=self.clock)
        self.audit = AlarmAudit(tmp_path / "alarm-audit.jsonl")
        self.handler = AlarmCommandHandler(
            AlarmCommands.model_validate(settings),
            CommandTopics("plant", "t"),
            self.engine,
            self.audit,
            clock=self.clock,
        )

    async def send(self, topic: str, retained: bool = False, **body: Any) -> dict[str, Any]:
        payload = {"request_id": f"r{self.clock.now}", "operator": "op.anna", "ts": iso_utc(T0)}
        payload.update(body)
        outcome = await self.handler.handle(topic, json.dumps(payload).encode(), retained=retained)
        return outcome.reply()

    def state(self) -> State:
        return self.engine.alarms.status("fsf.matte_temp.high").state


async def test_acknowledge_is_done_published_and_audited(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    await rig.bus.publish([temp(1310.0, 0)])
    reply = await rig.send(ACK, reason="seen on the DCS")
    assert (reply["result"], reply["detail"]) == ("done", "now active_ack")
    assert rig.state() is State.ACTIVE_ACK
    event = rig.writer.events()[-1]
    assert (event.operator, event.reason) == ("op.anna", "seen on the DCS")
    (line,) = rig.audit.read()
    assert line["operator"] == "op.anna"
    assert line["why"] == "seen on the DCS"
    assert line["result"] == "done"


async def test_shelve_needs_reason_and_duration_within_the_cap(tmp_path: Path) -> None:
    rig = Rig(tmp_path, max_shelve_s=3600)
    missing = await rig.send(SHELVE, duration_s=600)
    assert missing["reason"] == "malformed"
    assert "missing ['reason']" in missing["detail"]
    rig.clock.now += 2 * S
    too_long = await rig.send(SHELVE, duration_s=7200, reason="x", ts=iso_utc(rig.clock.now))
    assert "exceeds max_shelve_s 3600" in too_long["detail"]
    rig.clock.now += 2 * S
    ok = await rig.send(
        SHELVE, duration_s=600, reason="transmitter swap", ts=iso_utc(rig.clock.now)
    )
    assert ok["result"] == "done"
    assert rig.state() is State.SHELVED


@pytest.mark.parametrize(
    ("topic", "payload", "retained", "refusal"),
    [
        (ACK, b"x" * 2000, False, "oversized"),
        (ACK, b"{not json", False, "malformed"),
        (ACK, b'{"request_id":"a","request_id":"b","operator":"o","ts":0}', False, "malformed"),
        (ACK, b"[1, 2]", False, "malformed"),
        (ACK, b'{"request_id":"a","operator":"o","ts":"2026-01-01T00:00:00"}', False, "malformed"),
        (ACK, b'{"request_id":"a","operator":"o","ts":0,"value":1}', False, "malformed"),
        (ACK, b'{"request_id":"a","operator":"o","ts":0}', True, "retained"),
        ("plant/t/_alarms/fsf.matte_temp.high/delete", b"{}", False, "malformed"),
        ("plant/t/_alarms/Bad Id/ack", b"{}", False, "malformed"),
    ],
)
async def test_hostile_commands_are_refused_and_audited(
    tmp_path: Path, topic: str, payload: bytes, retained: bool, refusal: str
) -> None:
    rig = Rig(tmp_path)
    await rig.bus.publish([temp(1310.0, 0)])
    outcome = await rig.handler.handle(topic, payload, retained=retained)
    assert (outcome.result, outcome.reason) == ("refused", refusal)
    assert rig.state() is State.ACTIVE_UNACK
    assert rig.audit.read()[0]["reason"] == refusal


async def test_duplicate_keys_are_named(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    payload = b'{"request_id":"a","operator":"o","operator":"boss","ts":0}'
    outcome = await rig.handler.handle(ACK, payload, retained=False)
    assert "duplicate key 'operator'" in outcome.detail


async def test_stale_future_unauthorised_replayed_and_rate_limited(tmp_path: Path) -> None:
    rig = Rig(tmp_path, operators=["op.anna"], min_interval_s=5)
    await rig.bus.publish([temp(1310.0, 0)])
    rig.clock.now = T0 + 11 * S
    assert (await rig.send(ACK))["reason"] == "stale"  # issued 11 s ago, max 10
    rig.clock.now = T0 - 3 * S
    assert (await rig.send(ACK, request_id="f"))["reason"] == "future"
    rig.clock.now = T0
    assert (await rig.send(ACK, operator="mallory", request_id="m"))["reason"] == "not_authorized"
    assert (await rig.send(ACK, request_id="one"))["result"] == "done"
    assert (await rig.send(ACK, request_id="one"))["reason"] == "duplicate"
    rig.clock.now = T0 + S
    reply = await rig.send(
        "plant/t/_alarms/fsf.matte_temp.high/out_of_service",
        request_id="two",
        reason="swap",
        ts=iso_utc(rig.clock.now),
    )
    assert reply["reason"] == "rate_limited"
    assert [r["reason"] for r in rig.audit.read()] == [
        "stale",
        "future",
        "not_authorized",
        None,
        "duplicate",
        "rate_limited",
    ]


async def test_an_action_that_does_not_apply_says_why(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    reply = await rig.send(ACK)
    assert reply["reason"] == "not_applicable"
    assert "nothing to acknowledge: the alarm is normal" in reply["detail"]
    unknown = await rig.send("plant/t/_alarms/fsf.nope/ack", request_id="u")
    assert unknown["reason"] == "unknown_alarm"


def test_topics() -> None:
    topics = CommandTopics("plant", "t")
    assert "plant/t/_alarms/+/ack" in topics.subscriptions()
    assert topics.parse("plant/t/_alarms/a.b/unshelve") == ("a.b", "unshelve")
    assert topics.parse("plant/t/_alarms/a.b/event") is None
    assert topics.parse("plant/t/_alarms/a.b/ack/result") is None
