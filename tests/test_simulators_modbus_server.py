"""The off-gas line and kiln over Modbus TCP, read by a real pymodbus client over loopback.

The decoder here is written from docs/simulators.md's register map, independently of
simulators/modbus_server.encode, so a wrong encoding cannot agree with itself.
"""

from __future__ import annotations

import math
import struct
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from simulators.tags import ALL_TAGS, REGISTERS, Register
from tests.support.plant import PlantSim
from tests.support.waiting import eventually

pytestmark = pytest.mark.asyncio(loop_scope="module")


def decode(reg: Register, words: list[int]) -> float:
    if reg.encoding == "float32":
        hi, lo = words if reg.byte_order == "ABCD" else words[::-1]
        return float(struct.unpack(">f", struct.pack(">HH", hi, lo))[0])
    if reg.encoding == "int16":
        return struct.unpack(">h", struct.pack(">H", words[0]))[0] * reg.scale
    if reg.encoding == "uint16":
        return words[0] * reg.scale
    hi, lo = words
    return ((hi << 16) | lo) * reg.scale


@pytest.fixture
def sim(shared_modbus_sim: PlantSim) -> PlantSim:
    return shared_modbus_sim


@pytest_asyncio.fixture(loop_scope="module")
async def client(shared_modbus_sim: PlantSim) -> AsyncIterator[AsyncModbusTcpClient]:
    c = AsyncModbusTcpClient("127.0.0.1", port=shared_modbus_sim.modbus_port, timeout=1, retries=0)
    assert await c.connect()
    yield c
    c.close()
    await shared_modbus_sim.reset()


async def read_tag(c: AsyncModbusTcpClient, reg: Register) -> float:
    fn = c.read_input_registers if reg.table == "input" else c.read_holding_registers
    rr = await fn(reg.address, count=reg.count, device_id=reg.unit_id)
    assert not rr.isError(), (reg.tag, rr)
    return decode(reg, rr.registers)


TOLERANCE = {"float32": 1e-5, "int16": 0.6, "uint16": 0.6, "uint32": 1.0}


async def test_every_register_decodes_to_the_documented_value(
    sim: PlantSim, client: AsyncModbusTcpClient
) -> None:
    # Freeze every Modbus tag for the comparison: the plant keeps running underneath.
    for reg in REGISTERS:
        await sim.apply(f"freeze:{reg.tag}")
    for reg in REGISTERS:
        expected = float(sim.faults.published(reg.tag, sim.plant.values[reg.tag]))
        got = await read_tag(client, reg)
        scale = abs(reg.scale) if reg.encoding != "float32" else abs(expected)
        assert got == pytest.approx(expected, abs=TOLERANCE[reg.encoding] * max(scale, 1e-9)), reg
        low, high = ALL_TAGS[reg.tag].eu_range
        assert low <= got <= high, reg.tag


async def test_whole_unit_blocks_read_in_one_request(client: AsyncModbusTcpClient) -> None:
    for unit, table, count in ((1, "input", 13), (2, "holding", 3), (3, "holding", 14)):
        fn = client.read_input_registers if table == "input" else client.read_holding_registers
        rr = await fn(0, count=count, device_id=unit)
        assert not rr.isError()
        assert len(rr.registers) == count
        past_the_end = await fn(0, count=count + 1, device_id=unit)
        assert past_the_end.isError()
        assert past_the_end.exception_code == 2


async def test_writes_are_refused_with_illegal_data_address(client: AsyncModbusTcpClient) -> None:
    rr = await client.write_register(8, 1234, device_id=3)
    assert rr.isError()
    assert rr.exception_code == 2


@pytest.mark.parametrize(("kind", "code"), [("illegal_address", 2), ("device_busy", 6)])
async def test_exception_replies_on_chosen_registers(
    sim: PlantSim, client: AsyncModbusTcpClient, kind: str, code: int
) -> None:
    await sim.apply(f"{kind}:kiln.temp")
    block = await client.read_holding_registers(0, count=14, device_id=3)
    assert block.isError()
    assert block.exception_code == code
    other = next(r for r in REGISTERS if r.tag == "kiln.o2_pct")
    assert 6 <= await read_tag(client, other) <= 11
    await sim.apply("clear:kiln.temp")
    assert not (await client.read_holding_registers(0, count=14, device_id=3)).isError()


async def test_nan_and_spike_values(sim: PlantSim, client: AsyncModbusTcpClient) -> None:
    by_tag = {r.tag: r for r in REGISTERS}
    await sim.apply("nan:offgas.so2_pct")
    await sim.apply("spike:offgas.flow=999999")
    await sim.apply("nan:kiln.temp")
    assert math.isnan(await read_tag(client, by_tag["offgas.so2_pct"]))
    assert await read_tag(client, by_tag["offgas.flow"]) == 999999
    raw = await client.read_holding_registers(8, count=1, device_id=3)
    assert raw.registers == [0x8000]  # documented "no value" for int16


async def test_no_value_markers_per_encoding(sim: PlantSim, client: AsyncModbusTcpClient) -> None:
    await sim.apply("novalue:offgas.temp")  # int16, input register 12 of unit 1
    await sim.apply("novalue:kiln.feed_total")  # uint32, holding 4-5 of unit 3
    await sim.apply("novalue:kiln.co_ppm")  # uint16, holding 12 of unit 3
    assert (await client.read_input_registers(12, count=1, device_id=1)).registers == [0x8000]
    kiln = (await client.read_holding_registers(4, count=9, device_id=3)).registers
    assert (kiln[0], kiln[1], kiln[8]) == (0xFFFF, 0xFFFF, 0xFFFF)
    await sim.apply("clear:kiln.feed_total")
    kiln = (await client.read_holding_registers(4, count=9, device_id=3)).registers
    assert kiln[:2] != [0xFFFF, 0xFFFF]
    assert kiln[8] == 0xFFFF  # the other faults stay


async def test_analyser_status_bits_and_totaliser_reset(
    sim: PlantSim, client: AsyncModbusTcpClient
) -> None:
    by_tag = {r.tag: r for r in REGISTERS}
    await sim.apply("analyser:5")
    assert await read_tag(client, by_tag["offgas.analyser_status"]) == 5
    before = await read_tag(client, by_tag["kiln.feed_total"])
    await sim.apply("reset:kiln.feed_total")
    after = await read_tag(client, by_tag["kiln.feed_total"])
    assert before > 1e6
    assert after < before / 1000


async def test_slow_replies_time_the_client_out(sim: PlantSim) -> None:
    c = AsyncModbusTcpClient("127.0.0.1", port=sim.modbus_port, timeout=0.3, retries=0)
    assert await c.connect()
    try:
        await sim.apply("slow_modbus:1.0")
        with pytest.raises(ModbusException):
            await c.read_input_registers(0, count=2, device_id=1)
    finally:
        c.close()
        await sim.apply("clear")


async def test_dropped_connection_and_restart(sim: PlantSim) -> None:
    c = AsyncModbusTcpClient("127.0.0.1", port=sim.modbus_port, timeout=1, retries=0,
                             reconnect_delay=0)  # fmt: skip
    assert await c.connect()
    try:
        await sim.apply("drop:modbus")
        await eventually(lambda: not c.connected, 5, "the server to close the connection")
    finally:
        c.close()
    await sim.apply("restart:modbus")
    c = AsyncModbusTcpClient("127.0.0.1", port=sim.modbus_port, timeout=1, retries=0)
    assert await c.connect()
    try:
        assert not (await c.read_input_registers(0, count=13, device_id=1)).isError()
    finally:
        c.close()


async def test_unknown_unit_ids_answer_like_a_gateway_with_nobody_behind_it(
    client: AsyncModbusTcpClient,
) -> None:
    rr = await client.read_holding_registers(0, count=2, device_id=9)
    assert rr.isError()
    assert rr.exception_code == 0x0B
