"""Simulator fixtures: the demo plant's OPC UA and Modbus servers on free loopback ports.

    async def test_x(plant_sim: PlantSim) -> None:
        cfg = plant_sim.agent_config()          # config/demo.toml, endpoints rewritten
        await plant_sim.apply("bad:fsf.matte_temp")
        plant_sim.plant.write("fsf.escrap_feed_sp", 20.0)

Starting an asyncua server costs seconds (it loads the standard address space), so tests that
can share one plant use `shared_plant_sim` (one per test module; mark the module
`pytestmark = pytest.mark.asyncio(loop_scope="module")` and `await sim.reset()` where a test
leaves faults or setpoints behind).

The servers run at `TIME_SCALE` (one simulated minute per wall second) so that lags of minutes
settle within seconds. `plant_sim_factory` starts further simulations with other options
(security, users, synthetic tags, another time scale).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

import pytest
import pytest_asyncio

from edge_agent.config import AgentConfig, ModbusSource
from simulators.agent_config import demo_config, synthetic_config
from simulators.simulation import Simulation, SimulationOptions
from tests.support.services import SocatPtyPair

TIME_SCALE = 60.0


MODBUS_TRANSPORTS = ("tcp", "rtu_over_tcp", "rtu", "ascii")


class PlantSim(Simulation):
    """A running `Simulation` with helpers for tests."""

    # The agent's ends of the pseudo-terminals the simulator serves RTU and ASCII on, and the
    # socat processes that join them (the cables).
    serial_devices: dict[str, str] = {}  # noqa: RUF012 (replaced per instance)
    serial_links: dict[str, SocatPtyPair] = {}  # noqa: RUF012 (replaced per instance)

    async def server_down(self, which: Literal["opcua", "modbus"]) -> None:
        """Stop one server, sessions and all, keeping its port and address space: an outage."""
        if which == "opcua":
            assert self.opcua.server is not None
            await self.opcua.server.stop()
        else:
            await self.modbus.stop()

    async def server_up(self, which: Literal["opcua", "modbus"]) -> None:
        """The end of `server_down`: the same server listens again on the same port."""
        if which == "opcua":
            assert self.opcua.server is not None
            await self.opcua.server.start()
        else:
            await self.modbus.start()

    async def unplug(self, transport: str) -> None:
        """Pull the serial cable: the agent's device node disappears, as a USB adapter's does."""
        self.serial_links[transport].stop()

    async def plug(self, transport: str) -> None:
        """Plug it back in; the simulator reopens its end of the line."""
        self.serial_links[transport].start()
        await self.modbus.restart()

    def modbus_source(self, source: ModbusSource, transport: str) -> ModbusSource:
        """`source` pointed at this simulation over `transport` (serial ones need serial=True)."""
        link: dict[str, Any] = {"transport": transport}
        if transport == "tcp":
            link.update(endpoint=self.modbus_endpoint, serial_port=None)
        elif transport == "rtu_over_tcp":
            link.update(endpoint=self.modbus_rtu_over_tcp_endpoint, serial_port=None)
        else:
            # A pseudo-terminal refuses parity bits (tcsetattr: EINVAL): 8N1 on it.
            link.update(endpoint="", serial_port=self.serial_devices[transport], parity="N")
        return ModbusSource.model_validate({**source.model_dump(), **link})

    def modbus_sources_on_two_links(self, poll_interval_s: float = 0.1) -> list[dict[str, Any]]:
        """The demo's Modbus sources as config tables, polled every `poll_interval_s`: offgas on
        the Modbus TCP port, kiln behind the RTU-over-TCP gateway port (two links, so that two
        acquisition workers each get one). Needs `modbus_rtu_over_tcp_port` set."""
        demo = demo_config("opc.tcp://unused:1", self.modbus_endpoint)
        sources = [s for s in demo["source"] if s["protocol"] == "modbus"]
        for s in sources:
            s["poll_interval_s"] = poll_interval_s
            if s["name"] == "kiln":
                s.update(transport="rtu_over_tcp", endpoint=self.modbus_rtu_over_tcp_endpoint)
        return sources

    @property
    def modbus_port(self) -> int:
        return self.modbus.options.port

    @property
    def opcua_port(self) -> int:
        return self.opcua.options.port

    async def reset(self) -> None:
        """Clear every fault and put the setpoints and operator flags back to their defaults."""
        await self.apply("clear")
        fresh = type(self.plant)(seed=self.options.seed)
        for tag, value in fresh.setpoints.items():
            self.plant.write(tag, value)
        self.plant.write("fsf.advisor_permissive", fresh.advisor_permissive)
        self.plant.write("fsf.agent_heartbeat", fresh.agent_heartbeat)
        await self.publish()

    def agent_config_dict(self) -> dict[str, Any]:
        return demo_config(self.opcua_endpoint, self.modbus_endpoint)

    def agent_config(self, **sections: Any) -> AgentConfig:
        """config/demo.toml pointed at this simulation; keyword args replace whole sections."""
        doc = self.agent_config_dict()
        doc.update(sections)
        return AgentConfig.model_validate(doc)

    def synthetic_agent_config(self, **kw: Any) -> AgentConfig:
        n = self.options.synthetic_tags
        return AgentConfig.model_validate(
            synthetic_config(self.opcua_endpoint, self.modbus_endpoint, n, **kw)
        )


StartPlant = Callable[..., Awaitable[PlantSim]]


async def _started(tmp_path: Path, started: list[PlantSim], **options: Any) -> PlantSim:
    options.setdefault("time_scale", TIME_SCALE)
    options.setdefault("tick_s", 0.1)
    if options.pop("secure", False):
        options["cert_dir"] = tmp_path / f"pki-{len(started)}"
    sim = PlantSim(SimulationOptions(opcua_port=0, modbus_port=0, **options))
    await sim.start()
    started.append(sim)
    return sim


@pytest.fixture
async def plant_sim_factory(tmp_path: Path) -> AsyncIterator[StartPlant]:
    """Start simulations with other options: `await plant_sim_factory(secure=True)`,
    `users={"operator": "pw"}`, `synthetic_tags=2000`, `time_scale=0` (a still plant),
    `serve_opcua=False` (Modbus only, starts in milliseconds)."""
    started: list[PlantSim] = []

    async def start(**options: Any) -> PlantSim:
        return await _started(tmp_path, started, **options)

    yield start
    for sim in reversed(started):
        await sim.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_plant_sim(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PlantSim]:
    """One demo plant for a whole test module (see the module docstring)."""
    sim = await _started(tmp_path_factory.mktemp("plant"), [])
    yield sim
    await sim.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_modbus_sim(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PlantSim]:
    """Like `shared_plant_sim`, Modbus only: it starts in milliseconds, not seconds."""
    sim = await _started(tmp_path_factory.mktemp("plant"), [], serve_opcua=False)
    yield sim
    await sim.stop()


@pytest.fixture
async def plant_sim(plant_sim_factory: StartPlant) -> PlantSim:
    """The demo plant, both servers running, seed 0, time scale 60."""
    return await plant_sim_factory()
