"""The executor and the audit: write, read back, record; with a recording fake driver."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from drivers.base import Driver
from edge_agent.config import AgentConfig
from edge_agent.contracts.samples import now_ns
from edge_agent.control import ControlPath, Origin, WriteRequest
from edge_agent.control.audit import AuditLog, AuditRecord
from edge_agent.tagstore import TagStore
from tests.support.fake_plant import (
    DriverConnectionError,
    RecordingDriver,
    WriteRefused,
    config,
    plant_store,
    stop_tasks,
)


def build(cfg: AgentConfig, store: TagStore, driver: Driver) -> ControlPath:
    return ControlPath(cfg, store, driver)


def scada(tag: str, value: object, request_id: str = "r1") -> WriteRequest:
    return WriteRequest(Origin.SCADA, tag, value, request_id, now_ns())


@pytest.fixture
def cfg(tmp_path: Path) -> AgentConfig:
    return config(tmp_path, heartbeat={"enabled": False})


async def test_accepted_write_is_written_read_back_and_audited(cfg: AgentConfig) -> None:
    store = plant_store()
    driver = RecordingDriver(store)
    path = build(cfg, store, driver)
    with capture_logs() as logs:
        outcome = await path.executor.submit(scada("fsf.fuel_flow_sp", 540))
    assert outcome.result == "written", outcome
    assert driver.writes == [("fsf.fuel_flow_sp", 540.0)]
    event = next(e for e in logs if e["event"] == "control_write")
    assert event["result"] == "written"
    assert event["previous"] == 500.0
    assert event["written"] == 540.0
    (line,) = path.audit.read()
    assert line["origin"] == "scada"
    assert line["request_id"] == "r1"
    assert (line["previous"], line["requested"], line["written"]) == (500.0, 540, 540.0)
    assert (line["result"], line["reason"]) == ("written", None)
    assert path.status().counters["writes_total"] == 1


async def test_write_that_does_not_take_effect_is_failed(cfg: AgentConfig) -> None:
    store = plant_store()
    driver = RecordingDriver(store, takes_effect=False)  # new readings show the old value
    path = build(cfg, store, driver)
    outcome = await path.executor.submit(scada("fsf.fuel_flow_sp", 540))
    assert (outcome.result, outcome.reason) == ("failed", "readback_mismatch")
    assert path.audit.read()[-1]["result"] == "failed"


async def test_write_without_a_new_reading_times_out(cfg: AgentConfig) -> None:
    store = plant_store()
    path = build(cfg, store, RecordingDriver(store, echo=False))
    outcome = await path.executor.submit(scada("fsf.fuel_flow_sp", 540))
    assert (outcome.result, outcome.reason) == ("failed", "readback_timeout")


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (WriteRefused("BadOutOfRange"), "write_refused"),
        (DriverConnectionError("connection lost"), "write_error"),
    ],
)
async def test_driver_errors_are_failed_attempts(
    cfg: AgentConfig, error: Exception, reason: str
) -> None:
    store = plant_store()
    path = build(cfg, store, RecordingDriver(store, fail=error))
    outcome = await path.executor.submit(scada("fsf.fuel_flow_sp", 540))
    assert (outcome.result, outcome.reason) == ("failed", reason)
    assert str(error) in path.audit.read()[-1]["detail"]


async def test_refusal_is_audited_and_never_written(cfg: AgentConfig) -> None:
    store = plant_store(permissive=False)
    driver = RecordingDriver(store)
    path = build(cfg, store, driver)
    outcome = await path.executor.submit(scada("fsf.fuel_flow_sp", 540))
    assert (outcome.result, outcome.reason) == ("refused", "permissive_off")
    assert driver.writes == []
    line = path.audit.read()[-1]
    assert (line["result"], line["reason"], line["written"]) == ("refused", "permissive_off", None)


async def test_audit_file_survives_a_restart_and_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "state" / "control-audit.jsonl"
    record = AuditRecord.make(
        now_ns(),
        origin="scada",
        tag="fsf.fuel_flow_sp",
        request_id="a",
        previous=500.0,
        requested=540,
        written=540.0,
        result="written",
        reason=None,
        detail="",
    )
    await AuditLog(path).record(record)
    with path.open("ab") as f:  # a crash in the middle of a line
        f.write(b'{"ts":"2026-')
    await AuditLog(path).record(record)  # a new process, same file
    lines = AuditLog(path).read()
    assert [line["request_id"] for line in lines] == ["a", "a"]
    assert len(path.read_text().splitlines()) == 3


async def test_audit_publishes_when_a_publisher_is_set(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl")
    published: list[bytes] = []

    async def publish(body: bytes) -> None:
        published.append(body)

    audit.set_publisher(publish)
    record = AuditRecord.make(
        now_ns(),
        origin="advisor",
        tag="fsf.fuel_flow_sp",
        request_id=None,
        previous=None,
        requested=float("nan"),
        written=None,
        result="refused",
        reason="non_finite",
        detail="value nan is not finite",
    )
    await audit.record(record)
    (body,) = published
    assert json.loads(body)["reason"] == "non_finite"


async def test_an_unwritable_audit_file_stops_further_writes(tmp_path: Path) -> None:
    cfg = config(tmp_path, heartbeat={"enabled": False})
    store = plant_store()
    driver = RecordingDriver(store)
    path = ControlPath(cfg, store, driver)
    path.audit.path.mkdir(parents=True)  # a directory where the file should be
    first = await path.command("fsf.o2_flow_sp", 30100.0, now_ns(), "a-1")
    assert first.result == "written"
    second = await path.command("fsf.o2_flow_sp", 30200.0, now_ns(), "a-2")
    assert (second.result, second.reason) == ("refused", "agent_unhealthy")
    assert "audit file" in second.detail
    assert driver.writes == [("fsf.o2_flow_sp", 30100.0)]


async def test_a_write_cut_short_by_shutdown_is_still_audited(cfg: AgentConfig) -> None:
    store = plant_store()
    driver = RecordingDriver(store, echo=False)  # the read-back will wait
    path = ControlPath(cfg, store, driver)
    audited = asyncio.Event()
    path.audit.add_listener(lambda record: audited.set())
    task = asyncio.create_task(path.command("fsf.o2_flow_sp", 30100.0, now_ns(), "stop-1"))
    await asyncio.wait_for(driver.wrote.wait(), 10)
    await stop_tasks(task)
    assert task.cancelled()
    await asyncio.wait_for(audited.wait(), 10)
    line = path.audit.read()[-1]
    assert (line["request_id"], line["result"], line["reason"]) == ("stop-1", "failed", "cancelled")
