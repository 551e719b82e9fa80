"""Parsing SCADA set commands, and handling them end to end with a recording fake driver."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_agent.contracts.samples import iso_utc, now_ns
from edge_agent.control import ControlPath, Origin, Refusal, WriteRequest
from edge_agent.control.commands import CommandError, CommandTopics, parse_command
from tests.support.fake_plant import RecordingDriver, config, plant_store

TOPICS = CommandTopics("smelter", "demo")
FUEL = "smelter/demo/fsf/fuel_flow_sp/set"


def body(**fields: object) -> bytes:
    base: dict[str, object] = {"request_id": "r-1", "value": 540, "ts": iso_utc(now_ns())}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not ...}).encode()


def parse(topic: str, payload: bytes, *, retained: bool = False) -> WriteRequest | CommandError:
    return parse_command(TOPICS, topic, payload, retained=retained, max_bytes=1024)


def test_topics_map_to_tag_ids_and_back() -> None:
    assert TOPICS.set_topic("fsf.fuel_flow_sp") == FUEL
    assert TOPICS.tag_of(FUEL) == "fsf.fuel_flow_sp"
    assert TOPICS.tag_of("smelter/demo/kpi/advisor/fuel/set") == "kpi.advisor.fuel"
    for topic in [
        "smelter/other/fsf/fuel_flow_sp/set",
        "smelter/demo/fsf/set",
        "smelter/demo/fsf/fuel_flow_sp/set/result",
        "smelter/demo/FSF/fuel_flow_sp/set",
        "smelter/demo/fsf//set",
    ]:
        assert TOPICS.tag_of(topic) is None, topic


def test_a_good_command_becomes_a_scada_request() -> None:
    ts = now_ns()
    request = parse(FUEL, body(ts=iso_utc(ts)))
    assert isinstance(request, WriteRequest)
    assert (request.origin, request.tag, request.value) == (Origin.SCADA, "fsf.fuel_flow_sp", 540)
    assert request.request_id == "r-1"
    assert request.issued_ns is not None
    assert abs(request.issued_ns - ts) < 1_000_000


def test_epoch_milliseconds_are_accepted() -> None:
    request = parse(FUEL, body(ts=1_790_000_000_123))
    assert isinstance(request, WriteRequest)
    assert request.issued_ns == 1_790_000_000_123_000_000


def test_retained() -> None:
    error = parse(FUEL, body(), retained=True)
    assert isinstance(error, CommandError)
    assert error.refusal is Refusal.RETAINED


def test_oversized() -> None:
    error = parse(FUEL, body(request_id="x" * 10, value=540, pad=None) + b" " * 1100)
    assert isinstance(error, CommandError)
    assert error.refusal is Refusal.OVERSIZED
    assert "1024" in error.detail


@pytest.mark.parametrize(
    ("topic", "payload", "words"),
    [
        ("smelter/demo/fsf/Fuel/set", body(), "topic"),
        (FUEL, b"\xff\xfe", "not JSON"),
        (FUEL, b"{", "not JSON"),
        (FUEL, b"[540]", "JSON object"),
        (FUEL, body(request_id=...), "request_id"),
        (FUEL, body(request_id="bad id with spaces"), "request_id"),
        (FUEL, body(value=...), "missing ['value']"),
        (FUEL, body(extra=1), "unexpected ['extra']"),
        (FUEL, body(ts="yesterday"), "ts"),
        (FUEL, body(ts="2026-11-27T04:00:00"), "ts"),  # no zone
        (FUEL, body(ts=True), "ts"),
        (FUEL, b'{"request_id": "r-1", "value": 1e9, "value": 31600, "ts": 1}', "duplicate key"),
        (FUEL, b'{"request_id": "r-1", "value": {"a": 1, "a": 2}, "ts": 1}', "duplicate key"),
    ],
    ids=lambda p: p if isinstance(p, str) and len(p) < 30 else "",
)
def test_malformed(topic: str, payload: bytes, words: str) -> None:
    error = parse(topic, payload)
    assert isinstance(error, CommandError)
    assert error.refusal is Refusal.MALFORMED
    assert words in error.detail


async def test_handled_command_is_written_and_answered(tmp_path: Path) -> None:
    store = plant_store()
    driver = RecordingDriver(store)
    path = ControlPath(config(tmp_path), store, driver)
    outcome = await path.commands.handle(FUEL.replace("smelter", "plant"), body(), retained=False)
    assert outcome.result == "written", outcome
    assert outcome.reply()["request_id"] == "r-1"
    assert driver.writes == [("fsf.fuel_flow_sp", 540.0)]


async def test_refused_command_is_audited_with_its_request_id(tmp_path: Path) -> None:
    store = plant_store()
    driver = RecordingDriver(store)
    path = ControlPath(config(tmp_path), store, driver)
    outcome = await path.commands.handle("plant/demo/fsf/fuel_flow_sp/set", body(), retained=True)
    assert (outcome.result, outcome.reason) == ("refused", "retained")
    assert driver.writes == []
    line = path.audit.read()[-1]
    assert (line["tag"], line["reason"], line["origin"]) == (
        "fsf.fuel_flow_sp",
        "retained",
        "scada",
    )


async def test_dcmd_entry_point_goes_through_the_guard(tmp_path: Path) -> None:
    store = plant_store()
    driver = RecordingDriver(store)
    path = ControlPath(config(tmp_path), store, driver)
    refused = await path.command("fsf.fuel_flow_sp", 5000.0, now_ns(), "dcmd-1")
    assert (refused.result, refused.reason) == ("refused", "out_of_bounds")
    stale = await path.command("fsf.o2_flow_sp", 30100.0, now_ns() - 60 * 10**9, "dcmd-2")
    assert stale.reason == "command_too_old"
    written = await path.command("fsf.o2_flow_sp", 30100.0, now_ns(), "dcmd-3")
    assert written.result == "written"
    assert driver.writes == [("fsf.o2_flow_sp", 30100.0)]
