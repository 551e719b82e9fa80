"""One simulator per test module, for the acquisition tests that only read (starting the OPC UA
server costs seconds; the function-scoped fixtures of tests/plant.py are for tests that need a
private one). Faults a test applies are cleared after it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

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
