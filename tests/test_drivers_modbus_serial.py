"""Modbus over serial lines and gateways against the simulator: RTU and ASCII over socat
pseudo-terminals, RTU over TCP, and TCP for comparison.

What a shared RS-485 bus does to a poller is tested here: decoding every type and byte order
the same on every transport, a write through the control guard, one bus shared fairly by
several devices while one of them is silent, and corrupted frames costing only their request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from drivers.modbus import ModbusDriver
from edge_agent.acquisition import SourcePoller, shared_driver_factory
from edge_agent.commands.probe import bus_report, probe
from edge_agent.config import AgentConfig, ControlSection, ModbusSource
from edge_agent.contracts.samples import Sample, now_ns
from edge_agent.control.audit import AuditLog
from edge_agent.control.executor import Executor
from edge_agent.control.guard import Guard, Origin, WriteRequest
from edge_agent.pipeline import SampleBus
from edge_agent.tagstore import TagStore
from simulators.modbus_pattern import expected_values, pattern_tags
from simulators.tags import REGISTERS
from tests.support.fake_plant import stop_tasks
from tests.support.plant import MODBUS_TRANSPORTS, PlantSim
from tests.support.plant_shared import module_plant_fixtures
from tests.support.waiting import eventually

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

module_plant, plant_sim = module_plant_fixtures(serial=True, serve_opcua=False)

RTU_FRAMED = ("rtu_over_tcp", "rtu")  # the transports whose frames carry a CRC


@pytest.fixture(params=MODBUS_TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def source(
    sim: PlantSim, transport: str, name: str, tags: list[dict[str, Any]], **kw: Any
) -> ModbusSource:
    doc = {"name": name, "protocol": "modbus", "endpoint": "tcp://127.0.0.1:1", "tag": tags, **kw}
    return sim.modbus_source(ModbusSource.model_validate(doc), transport)


def unit_tags(unit_id: int, prefix: str) -> list[dict[str, Any]]:
    """The plant's registers of one unit as tag tables (types from the register map)."""
    tags = []
    for reg in REGISTERS:
        if reg.unit_id == unit_id:
            kind = {"float32": "float32", "int16": "int16", "uint16": "uint16", "uint32": "uint32"}
            tags.append({
                "id": f"{prefix}.{reg.tag.split('.')[1]}", "unit_id": unit_id, "table": reg.table,
                "address": reg.address, "type": kind[reg.encoding], "byte_order": reg.byte_order,
            })  # fmt: skip
    return tags


async def read_once(src: ModbusSource) -> dict[str, Sample]:
    driver = ModbusDriver(src)
    await driver.connect()
    try:
        return {s.tag: s for s in await driver.read()}
    finally:
        await driver.close()


async def test_every_type_and_byte_order_decodes_on_every_transport(
    plant_sim: PlantSim, transport: str
) -> None:
    got = await read_once(source(plant_sim, transport, "pattern", pattern_tags()))
    expected = expected_values()
    assert set(got) == set(expected)
    for tag, value in expected.items():
        assert got[tag].good, (tag, got[tag].reason)
        assert got[tag].value == value, tag
        assert type(got[tag].value) is type(value), tag


async def test_the_plant_reads_the_same_on_every_transport(
    plant_sim: PlantSim, transport: str
) -> None:
    for reg in REGISTERS:
        await plant_sim.apply(f"freeze:{reg.tag}")
    tags = unit_tags(1, "offgas") + unit_tags(3, "kiln")
    over_tcp = await read_once(source(plant_sim, "tcp", "plant", tags))
    here = await read_once(source(plant_sim, transport, "plant", tags))
    assert {t: s.value for t, s in here.items()} == {t: s.value for t, s in over_tcp.items()}
    assert all(s.good for s in here.values())


async def test_a_write_goes_through_the_guard_and_reads_back(
    plant_sim: PlantSim, transport: str, tmp_path: Path
) -> None:
    target = {"rtu": 12.5, "ascii": -7.25, "rtu_over_tcp": 250.0, "tcp": 99.0}[transport]
    src = source(plant_sim, transport, "pattern", pattern_tags(), poll_interval_s=0.1)
    store = TagStore()
    poller = SourcePoller(src, SampleBus(store))
    task = asyncio.create_task(poller.run())
    control = ControlSection.model_validate({
        "mode": "closed_loop", "permissive_tag": "pattern.flag", "allow": [{
            "tag": "pattern.setpoint", "min": -500, "max": 500, "max_rate_per_min": 10_000,
            "origins": ["scada"], "min_interval_s": 0,
        }],
    })  # fmt: skip
    guard = Guard(control, store, lambda: None)
    executor = Executor(guard, store, AuditLog(tmp_path / "audit.jsonl"), poller,
                        write_timeout_s=2, readback_timeout_s=5)  # fmt: skip
    try:
        await eventually(
            lambda: (s := store.get("pattern.flag")) is not None and s.good, 5, "pattern read"
        )
        refused = await executor.submit(WriteRequest(Origin.SCADA, "pattern.setpoint", 900.0,
                                                     issued_ns=now_ns()))  # fmt: skip
        assert refused.result == "refused"
        outcome = await executor.submit(
            WriteRequest(Origin.SCADA, "pattern.setpoint", target, issued_ns=now_ns())
        )
        assert (outcome.result, outcome.reason) == ("written", None), outcome.detail
    finally:
        await stop_tasks(task)
    reread = await read_once(src)
    assert reread["pattern.setpoint"].value == target


@pytest.mark.parametrize("transport", RTU_FRAMED)
async def test_a_corrupted_frame_costs_only_its_own_request(
    plant_sim: PlantSim, transport: str
) -> None:
    src = source(
        plant_sim,
        transport,
        "mixed",
        unit_tags(3, "kiln") + pattern_tags(),
        timeout_s=0.3,
        retries=0,
    )
    driver = ModbusDriver(src)
    kiln_first = driver.plan.requests[0]
    assert kiln_first.unit_id == 3
    assert len({r.unit_id for r in driver.plan.requests}) == 2
    kiln = {t.id for t in kiln_first.tags}
    await driver.connect()
    try:
        await plant_sim.apply("corrupt_crc:1")
        hit = {s.tag: s for s in await driver.read()}
        again = {s.tag: s for s in await driver.read()}
    finally:
        await driver.close()
    assert {hit[t].reason for t in kiln} == {"crc_error"}
    assert all(s.good for t, s in hit.items() if t not in kiln)
    assert all(s.good for s in again.values())  # the bus resynchronised; nobody backed off
    assert not driver.bus.device(3).backed_off


class Recorder:
    """A sample writer that keeps every published sample with its arrival time."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, Sample]] = []

    async def append(self, samples: Sequence[Sample]) -> None:
        now = time.monotonic()
        self.samples.extend((now, s) for s in samples)

    def of(self, tag: str, since: float = 0.0) -> list[Sample]:
        return [s for t, s in self.samples if s.tag == tag and t >= since]


POLL_S = 0.4


@pytest.mark.parametrize("transport", ["rtu", "rtu_over_tcp"])
async def test_three_devices_share_a_bus_and_a_silent_one_is_backed_off(
    plant_sim: PlantSim, transport: str
) -> None:
    """Offgas (unit 1), kiln (unit 3) and the pattern (unit 5) as three sources on one bus."""
    # The simulator shares this event loop: a timeout long enough for a loaded machine (the
    # most the driver allows at this poll). At 0.25 s a live unit's late answer landed in the
    # silent one's retry under load and, heard as a corrupt frame, cleared its back-off.
    common = {"poll_interval_s": POLL_S, "timeout_s": POLL_S, "retries": 0, "unreachable_after": 2,
              "unreachable_retry_s": 2 * POLL_S}  # fmt: skip
    sources = [
        source(plant_sim, transport, "offgas", unit_tags(1, "offgas"), **common),
        source(plant_sim, transport, "kiln", unit_tags(3, "kiln"), **common),
        source(plant_sim, transport, "pattern", pattern_tags(), **common),
    ]
    recorder = Recorder()
    bus = SampleBus(TagStore(), recorder)
    factory = shared_driver_factory()
    pollers = [SourcePoller(s, bus, factory) for s in sources]
    await plant_sim.apply("silent_unit:3")
    tasks = [asyncio.create_task(p.run()) for p in pollers]
    try:
        await eventually(
            lambda: any(s.reason == "device_unreachable" for s in recorder.of("kiln.temp")),
            5,
            "the silent kiln backed off",
        )
        # One bus, one connection: every poller's driver uses the same one.
        drivers = [p._driver for p in pollers]
        assert len({id(d.bus) for d in drivers if isinstance(d, ModbusDriver)}) == 1
        # The window: ten cycles of each source, counted in the samples each cycle publishes (on
        # a loaded machine cycles are missed, so wall time would count cycles that never ran).
        start, asked_before = time.monotonic(), plant_sim.faults.replies[3]
        tags = ("offgas.flow", "pattern.flag", "kiln.temp")
        await eventually(
            lambda: all(len(recorder.of(t, start)) >= 10 for t in tags), 60, "ten cycles each"
        )
        asked, window = plant_sim.faults.replies[3] - asked_before, time.monotonic() - start
        for live in ("offgas.flow", "pattern.flag"):
            cycles = recorder.of(live, start)
            good = [s for s in cycles if s.good]
            assert len(good) >= 0.9 * len(cycles) - 1, (live, len(good), len(cycles))
        silent = recorder.of("kiln.temp", start)
        assert {s.reason for s in silent} == {"device_unreachable"}
        # At most one request per back-off period of the window, give or take the one on the line
        # (a retry cycle that overran its tick skips the next: then every cycle run is a retry).
        periods = window / (2 * POLL_S)
        assert 1 <= asked <= periods + 1, (asked, periods)
        # It answers again: Good within two of its poll intervals (counted in its cycles).
        # Counted by acquisition time, not arrival: a batch read before this point may reach
        # the writer after it (the poller commits one cycle while it reads the next).
        plant_sim.faults.silent_units.clear()
        answered_ns = time.time_ns()

        def since_answered() -> list[Sample]:
            return [s for s in recorder.of("kiln.temp") if s.acq_ns >= answered_ns]

        await eventually(lambda: any(s.good for s in since_answered()), 5, "kiln good again")
        after = since_answered()
        first_good = next(i for i, s in enumerate(after) if s.good)
        # after[0] may be the cycle that was on the line when the device came back.
        assert first_good <= 2, [s.reason for s in after]
    finally:
        await stop_tasks(*tasks)


async def test_sources_naming_one_gateway_share_one_connection(plant_sim: PlantSim) -> None:
    factory = shared_driver_factory()
    a = factory(source(plant_sim, "rtu_over_tcp", "offgas", unit_tags(1, "offgas")))
    b = factory(source(plant_sim, "rtu_over_tcp", "kiln", unit_tags(3, "kiln")))
    assert isinstance(a, ModbusDriver)
    assert isinstance(b, ModbusDriver)
    assert a.bus is b.bus
    await a.connect()
    await b.connect()
    try:
        both = await asyncio.gather(a.read(), b.read())
        assert all(s.good for samples in both for s in samples)
        tcp_rtu = plant_sim.modbus.servers[1]
        assert len(tcp_rtu.active_connections) == 1
        await a.close()
        assert all(s.good for s in await b.read())  # the link stays while one source uses it
    finally:
        await b.close()
    assert not a.bus.connected


async def test_workarounds_address_base_one_request_per_tag_and_busy_retries(
    plant_sim: PlantSim,
) -> None:
    one_based = [{**t, "address": t["address"] + 1} for t in unit_tags(3, "kiln")]
    src = source(plant_sim, "rtu", "kiln", one_based, address_base=1, one_request_per_tag=True,
                 busy_retries=2, busy_retry_wait_ms=10, retries=0)  # fmt: skip
    driver = ModbusDriver(src)
    assert len(driver.plan.requests) == len(one_based)
    assert min(r.start for r in driver.plan.requests) == 0
    got = await read_once(src)
    assert all(s.good for s in got.values())
    await plant_sim.apply("device_busy:kiln.temp")
    before = plant_sim.faults.replies[3]
    got = await read_once(src)
    assert got["kiln.temp"].reason == "modbus_exception_6_server_device_busy"
    assert all(s.good for t, s in got.items() if t != "kiln.temp")
    # 8 tags answered once, kiln.temp three times (the first answer and two busy retries).
    assert plant_sim.faults.replies[3] - before == len(one_based) - 1 + 3


# ----------------------------------------------------------------------------- probe on a line


def probe_config(*sources: ModbusSource) -> AgentConfig:
    return AgentConfig.model_validate({"source": [s.model_dump() for s in sources]})


async def test_probe_names_a_missing_port_and_reads_every_transport(plant_sim: PlantSim) -> None:
    live = [source(plant_sim, t, f"kiln_{t}", unit_tags(3, f"kiln_{t}")) for t in MODBUS_TRANSPORTS]
    missing = ModbusSource.model_validate({
        "name": "gone", "protocol": "modbus", "transport": "rtu",
        "serial_port": "/dev/serial/by-id/usb-nothing-here",
        "tag": [{"id": "gone.x", "address": 0}],
    })  # fmt: skip
    errors: list[str] = []
    rows = await probe(probe_config(*live, missing), errors)
    assert all(r.sample.good for r in rows if r.source != "gone")
    assert {r.sample.reason for r in rows if r.source == "gone"} == {"connection_lost"}
    assert any("usb-nothing-here does not exist" in e for e in errors), errors


async def test_probe_suspects_the_baud_rate_when_every_frame_fails_its_crc(
    plant_sim: PlantSim,
) -> None:
    # A corrupt frame is told from silence only if its bytes arrive within the timeout: the
    # default (1 s, capped at the poll interval), as 0.2 s was not on a loaded machine.
    src = source(plant_sim, "rtu", "kiln", unit_tags(3, "kiln") + pattern_tags(), retries=0)
    await plant_sim.apply("corrupt_crc:1000000")
    errors: list[str] = []
    rows = await probe(probe_config(src), errors)
    assert {r.sample.reason for r in rows} == {"crc_error"}
    [error] = errors
    assert "wrong baud rate, parity or stop bits suspected" in error
    assert "19200 8N1" in error  # the settings to compare with the device's


async def test_probe_reports_the_bus_time_of_each_line(plant_sim: PlantSim) -> None:
    a = source(plant_sim, "rtu", "offgas", unit_tags(1, "offgas"))
    b = source(plant_sim, "rtu", "kiln", unit_tags(3, "kiln"), poll_interval_s=0.5)
    tcp = source(plant_sim, "tcp", "plant", unit_tags(3, "plant"))
    [line] = bus_report(probe_config(a, b, tcp))
    assert plant_sim.serial_devices["rtu"] in line
    assert "offgas 1 requests" in line
    assert "every 500 ms" in line
    assert "% of the line booked" in line
