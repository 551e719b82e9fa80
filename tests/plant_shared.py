"""One simulator per test module, for the acquisition tests that only read (starting the OPC UA
server costs seconds; the function-scoped fixtures of tests/plant.py are for tests that need a
private one). Faults a test applies are cleared after it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio

from simulators.simulation import SimulationOptions
from tests.plant import TIME_SCALE, PlantSim


async def shared_plant(**options: Any) -> AsyncIterator[PlantSim]:
    options.setdefault("time_scale", TIME_SCALE)
    options.setdefault("tick_s", 0.1)
    sim = PlantSim(SimulationOptions(opcua_port=0, modbus_port=0, **options))
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


def module_plant_fixtures(**options: Any) -> tuple[Any, Any]:
    """The fixtures `module_plant` (one simulator for the module) and `plant_sim` (that same one,
    faults cleared after each test; it overrides tests/plant.py's private plant). Assign both at
    module level: `module_plant, plant_sim = module_plant_fixtures()`."""

    @pytest_asyncio.fixture(name="module_plant", scope="module", loop_scope="module")
    async def module_plant() -> AsyncIterator[PlantSim]:
        async for sim in shared_plant(**options):
            yield sim

    @pytest_asyncio.fixture(name="plant_sim", loop_scope="module")
    async def plant_sim(module_plant: PlantSim) -> AsyncIterator[PlantSim]:
        yield module_plant
        await module_plant.apply("clear")

    return module_plant, plant_sim
