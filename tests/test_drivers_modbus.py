"""The Modbus driver against the simulator, on every transport (TCP, RTU over TCP, and RTU and
ASCII over socat pseudo-terminals): exception isolation, timeouts, writes."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest

from drivers.base import WriteRefused
from drivers.modbus import ModbusDriver
from drivers.modbus_responses import HoldingRegisters, InputRegisters
from edge_agent.config import ModbusSource
from edge_agent.contracts.samples import Quality
from tests.support.plant import MODBUS_TRANSPORTS, PlantSim
from tests.support.plant_shared import module_plant_fixtures

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]


module_plant, plant_sim = module_plant_fixtures(serial=True, serve_opcua=False)


@pytest.fixture(params=MODBUS_TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def kiln(plant_sim: PlantSim, transport: str) -> Callable[..., ModbusSource]:
    def make(**kw: object) -> ModbusSource:
        src = next(s for s in plant_sim.agent_config().source if s.name == "kiln")
        assert isinstance(src, ModbusSource)
        return plant_sim.modbus_source(src.model_copy(update=kw), transport)

    return make


async def test_an_illegal_address_marks_only_its_own_tag_bad(
    plant_sim: PlantSim, kiln: Callable[..., ModbusSource]
) -> None:
    driver = ModbusDriver(kiln())
    assert len(driver.plan.requests) == 1  # the whole kiln is one read of 14 registers
    await plant_sim.apply("illegal_address:kiln.temp")
    await driver.connect()
    try:
        first = {s.tag: s for s in await driver.read()}
        # The device refuses the whole block: every tag of that request is Bad, named.
        assert all(s.reason == "modbus_exception_2_illegal_data_address" for s in first.values())
        for _ in range(8):  # log2(9 tags) cycles isolate the bad register
            latest = {s.tag: s for s in await driver.read()}
            if sum(not s.good for s in latest.values()) == 1:
                break
    finally:
        await driver.close()
    assert latest["kiln.temp"].quality is Quality.BAD
    assert latest["kiln.temp"].reason == "modbus_exception_2_illegal_data_address"
    assert all(s.good for tag, s in latest.items() if tag != "kiln.temp")


async def test_a_silent_device_costs_one_timeout_not_twelve_seconds(
    plant_sim: PlantSim, kiln: Callable[..., ModbusSource]
) -> None:
    driver = ModbusDriver(kiln(timeout_s=0.2, retries=0, one_request_per_tag=True))
    assert len(driver.plan.requests) == 9
    await driver.connect()
    try:
        await plant_sim.apply("silent_unit:3")
        samples = await driver.read()
    finally:
        await driver.close()
    assert {s.reason for s in samples} == {"timeout"}
    assert all(s.value is None for s in samples)


async def test_slow_answers_within_the_timeout_are_good(
    plant_sim: PlantSim, kiln: Callable[..., ModbusSource]
) -> None:
    driver = ModbusDriver(kiln(timeout_s=1.0))
    await driver.connect()
    try:
        await plant_sim.apply("slow_modbus:0.05")
        samples = await driver.read()
    finally:
        await driver.close()
    assert all(s.good for s in samples), {s.tag: s.reason for s in samples}


async def test_writes_name_the_device_refusal(
    plant_sim: PlantSim, kiln: Callable[..., ModbusSource]
) -> None:
    src = kiln()
    tags = [
        t.model_copy(update={"writable": True, "min": 0.0, "max": 100.0})
        if t.id == "kiln.co_ppm"
        else t
        for t in src.tag
    ]
    driver = ModbusDriver(src.model_copy(update={"tag": tags}))
    await driver.connect()
    try:
        with pytest.raises(WriteRefused, match="outside"):
            await driver.write("kiln.co_ppm", 500)
        with pytest.raises(WriteRefused, match="not writable"):
            await driver.write("kiln.temp", 500)
        # The simulator's registers are read-only, as many field devices' are.
        with pytest.raises(WriteRefused, match="modbus_exception_2_illegal_data_address"):
            await driver.write("kiln.co_ppm", 50)
    finally:
        await driver.close()


async def test_responses_are_decoded_by_our_classes_on_every_transport(
    plant_sim: PlantSim, kiln: Callable[..., ModbusSource]
) -> None:
    """drivers/modbus_responses.py on the RTU and ASCII framers too, with the values intact."""
    driver = ModbusDriver(kiln())
    await driver.connect()
    try:
        request = driver.plan.requests[0]
        response = await driver._fetch(request)
        samples = await driver.read()
    finally:
        await driver.close()
    assert isinstance(response, HoldingRegisters | InputRegisters)
    assert response.block == struct.pack(f">{request.count}H", *response.registers)
    assert len(response.registers) == request.count
    assert samples
    assert all(s.good for s in samples)
