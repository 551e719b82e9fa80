"""One simulator per test module, for the acquisition tests that only read (starting the OPC UA
server costs seconds; the function-scoped fixtures of tests/support/plant.py are for tests that
need a private one). Faults a test applies are cleared after it."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest_asyncio

from simulators.simulation import SimulationOptions
from tests.support.plant import TIME_SCALE, PlantSim
from tests.support.services import SocatPtyPair


async def shared_plant(*, serial: bool = False, **options: Any) -> AsyncIterator[PlantSim]:
    """`serial=True`: the Modbus devices also on every other transport (RTU over TCP, and RTU
    and ASCII each on a socat pseudo-terminal pair), for `PlantSim.modbus_source`."""
    options.setdefault("time_scale", TIME_SCALE)
    options.setdefault("tick_s", 0.1)
    with ExitStack() as stack:
        devices: dict[str, str] = {}
        links: dict[str, SocatPtyPair] = {}
        if serial:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="serial-")))
            for transport in ("rtu", "ascii"):
                pair = stack.enter_context(SocatPtyPair(workdir / transport))
                devices[transport], links[transport] = pair.device, pair
                options[f"modbus_{'' if transport == 'rtu' else 'ascii_'}serial_port"] = (
                    pair.far_end
                )
            options.setdefault("modbus_rtu_over_tcp_port", 0)
        sim = PlantSim(SimulationOptions(opcua_port=0, modbus_port=0, **options))
        sim.serial_devices = devices
        sim.serial_links = links
        await sim.start()
        try:
            yield sim
        finally:
            await sim.stop()


def module_plant_fixtures(**options: Any) -> tuple[Any, Any]:
    """The fixtures `module_plant` (one simulator for the module) and `plant_sim` (that same one,
    faults cleared after each test; it overrides tests/support/plant.py's private plant). Assign
    both at module level: `module_plant, plant_sim = module_plant_fixtures()`."""

    @pytest_asyncio.fixture(name="module_plant", scope="module", loop_scope="module")
    async def module_plant() -> AsyncIterator[PlantSim]:
        async for sim in shared_plant(**options):
            yield sim

    @pytest_asyncio.fixture(name="plant_sim", loop_scope="module")
    async def plant_sim(module_plant: PlantSim) -> AsyncIterator[PlantSim]:
        yield module_plant
        await module_plant.apply("clear")

    return module_plant, plant_sim
