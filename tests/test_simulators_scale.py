"""Synthetic benchmark tags: served over both protocols, changing, with a matching config."""

from __future__ import annotations

import asyncio
import struct
import time

from asyncua import Client, ua
from pymodbus.client import AsyncModbusTcpClient

from edge_agent.config import ModbusSource, OpcUaSource
from simulators.tags import NAMESPACE_URI
from tests.support.plant import StartPlant

N = 200  # the benchmark asks for up to 20 000; creating OPC UA nodes costs ~1 ms each


async def read_opcua(client: Client, ids: list[str]) -> list[float]:
    ns = await client.get_namespace_index(NAMESPACE_URI)
    nodes = [client.get_node(ua.NodeId(i, ns)) for i in ids]
    values = []
    for start in range(0, len(nodes), 100):
        for dv in await client.read_attributes(nodes[start : start + 100]):
            assert dv.StatusCode.is_good()
            values.append(dv.Value.Value)
    return values


async def read_modbus(client: AsyncModbusTcpClient, n: int) -> list[float]:
    words: list[int] = []
    for start in range(0, 2 * n, 120):
        rr = await client.read_holding_registers(start, count=min(120, 2 * n - start), device_id=4)
        assert not rr.isError()
        words += rr.registers
    return list(struct.unpack(f">{n}f", struct.pack(f">{2 * n}H", *words)))


async def test_synthetic_tags_change_over_both_protocols_as_configured(
    plant_sim_factory: StartPlant,
) -> None:
    sim = await plant_sim_factory(synthetic_tags=N, synthetic_rate_hz=5.0)
    cfg = sim.synthetic_agent_config()
    opcua = next(s for s in cfg.source if isinstance(s, OpcUaSource))
    modbus = next(s for s in cfg.source if isinstance(s, ModbusSource))
    assert (len(opcua.tag), len(modbus.tag)) == (N, N)
    assert opcua.endpoint == sim.opcua_endpoint
    assert modbus.endpoint == sim.modbus_endpoint
    ids = [t.node.split(";s=", 1)[1] for t in opcua.tag]
    mb = AsyncModbusTcpClient("127.0.0.1", port=sim.modbus_port, timeout=2, retries=0)
    assert await mb.connect()
    try:
        async with Client(sim.opcua_endpoint) as client:
            first_ua, first_mb = await read_opcua(client, ids), await read_modbus(mb, N)
            for values in (first_ua, first_mb):
                assert all(89.9 <= v <= 110.1 for v in values)
                assert len(set(values)) > N // 2  # not one constant
            deadline = time.monotonic() + 10
            while True:
                later_ua, later_mb = await read_opcua(client, ids), await read_modbus(mb, N)
                changed_ua = sum(a != b for a, b in zip(first_ua, later_ua, strict=True))
                changed_mb = sum(a != b for a, b in zip(first_mb, later_mb, strict=True))
                if changed_ua == N and changed_mb == N:
                    break
                assert time.monotonic() < deadline, (changed_ua, changed_mb)
                await asyncio.sleep(0.1)
    finally:
        mb.close()
