"""Runs the plant behind its servers: one clock, the OPC UA server, the Modbus server, faults.

The clock steps the plant by wall time times `time_scale` (60: a simulated minute per second)
and republishes every tick. `edge-agent-sim`, `edge-agent demo` and the test fixtures all start
this same class.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal

from simulators.faults import Faults, FaultSpec, parse
from simulators.modbus_server import ModbusOptions, ModbusPlantServer
from simulators.opcua_server import OpcUaOptions, OpcUaPlantServer
from simulators.plant import Plant

Which = Literal["opcua", "modbus", "all"]


@dataclass
class SimulationOptions:
    host: str = "127.0.0.1"
    opcua_port: int = 4840  # 0: pick a free port
    modbus_port: int = 5020  # 0: pick a free port
    modbus_rtu_over_tcp_port: int | None = None  # also serve RTU over TCP (0: a free port)
    modbus_serial_port: str | None = None  # also serve RTU on this serial port
    modbus_ascii_serial_port: str | None = None  # and Modbus ASCII on this one
    time_scale: float = 1.0
    seed: int = 0
    tick_s: float = 0.2  # wall seconds between plant steps and publications
    cert_dir: Path | None = None  # enables the signed/encrypted OPC UA endpoints
    users: dict[str, str] = field(default_factory=dict)
    synthetic_tags: int = 0
    synthetic_rate_hz: float = 1.0  # how often every synthetic value changes
    # Either server can be left out (an asyncua server takes seconds to start).
    serve_opcua: bool = True
    serve_modbus: bool = True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def synthetic_values(n: int, t_s: float) -> list[float]:
    """Deterministic, always-changing values for the benchmark tags."""
    return [100.0 + 10.0 * math.sin(0.1 * t_s + 0.37 * i) for i in range(n)]


class Simulation:
    def __init__(
        self, options: SimulationOptions | None = None, plant: Plant | None = None
    ) -> None:
        self.options = o = options or SimulationOptions()
        self.plant = plant or Plant(seed=o.seed)
        self.faults = Faults()
        self.opcua = OpcUaPlantServer(
            self.plant, self.faults,
            OpcUaOptions(o.host, o.opcua_port or free_port(o.host), o.cert_dir, o.users,
                         o.synthetic_tags),
        )  # fmt: skip
        self.modbus = ModbusPlantServer(
            self.plant,
            self.faults,
            ModbusOptions(o.host, o.modbus_port, o.synthetic_tags, o.modbus_rtu_over_tcp_port,
                          o.modbus_serial_port, o.modbus_ascii_serial_port),
        )  # fmt: skip
        self._clock: asyncio.Task[None] | None = None
        self._synthetic_at = -math.inf

    @property
    def opcua_endpoint(self) -> str:
        return self.opcua.endpoint

    @property
    def modbus_endpoint(self) -> str:
        return self.modbus.endpoint

    @property
    def modbus_rtu_over_tcp_endpoint(self) -> str:
        return self.modbus.rtu_over_tcp_endpoint

    async def start(self) -> None:
        """Start both servers and the clock; if either server cannot start, stop the other."""
        try:
            if self.options.serve_modbus:
                await self.modbus.start()
            if self.options.serve_opcua:
                await self._start_opcua()
        except BaseException:
            await self.stop()
            raise
        await self.publish()
        self._clock = asyncio.create_task(self._run_clock(), name="plant-clock")

    async def _start_opcua(self) -> None:
        """asyncua must know its port before it binds (the endpoint URLs carry it), so port 0
        means "a port that was free a moment ago": if another process took it since, retry."""
        for attempt in range(3):
            try:
                await self.opcua.start()
                return
            except OSError:
                if self.options.opcua_port != 0 or attempt == 2:
                    raise
                await self.opcua.stop()
                self.opcua.options.port = free_port(self.options.host)

    async def stop(self) -> None:
        if self._clock is not None:
            self._clock.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._clock
            self._clock = None
        await self.opcua.stop()
        await self.modbus.stop()

    async def __aenter__(self) -> Simulation:
        await self.start()
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def publish(self) -> None:
        """Push the plant's current values to both servers now (tests call this after writes)."""
        synthetic = None
        if self.options.synthetic_tags:
            now = time.monotonic()
            if now - self._synthetic_at >= 1 / self.options.synthetic_rate_hz:
                self._synthetic_at = now
                synthetic = synthetic_values(self.options.synthetic_tags, now)
        self.modbus.publish(synthetic)
        await self.opcua.publish(synthetic or ())

    async def _run_clock(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(self.options.tick_s)
            now = time.monotonic()
            self.plant.step((now - last) * self.options.time_scale)
            last = now
            await self.publish()

    # -------------------------------------------------------------------------------- faults

    def _serves(self, which: Which) -> tuple[bool, bool]:
        o = self.options
        return (o.serve_opcua and which in ("opcua", "all"),
                o.serve_modbus and which in ("modbus", "all"))  # fmt: skip

    async def drop_connections(self, which: Which = "all") -> None:
        opcua, modbus = self._serves(which)
        if opcua:
            self.opcua.drop_connections()
        if modbus:
            self.modbus.drop_connections()

    async def restart(self, which: Which = "all", *, renumber: bool = False) -> None:
        """Restart server(s) on the same ports; `renumber` also moves the OPC UA namespace index."""
        opcua, modbus = self._serves(which)
        if opcua:
            await self.opcua.restart(renumber=renumber)
        if modbus:
            await self.modbus.restart()

    async def apply(self, fault: str | FaultSpec) -> None:
        """Apply one fault in `edge-agent-sim --fault` syntax (see simulators.faults)."""
        spec = parse(fault) if isinstance(fault, str) else fault
        f, tag = self.faults, spec.target
        match spec.kind:
            case "bad" | "uncertain":
                f.set_status(tag, spec.kind)
            case "freeze":
                f.freeze(tag, self.plant.values[tag])
            case "spike":
                f.spike(tag, spec.argument)
            case "nan":
                f.nan(tag)
            case "novalue":
                f.no_value_marker(tag)
            case "illegal_address" | "device_busy":
                f.modbus_exception(tag, spec.kind)
            case "slow_modbus":
                f.modbus_delay_s = spec.argument or 0.0
            case "slow_opcua":
                f.opcua_delay_s = spec.argument or 0.0
            case "silent_unit":
                f.silent_units.add(int(spec.argument or 0))
            case "corrupt_crc":
                f.corrupt_replies = int(spec.argument or 0)
            case "running":
                self.plant.set_running(bool(spec.argument))
            case "analyser":
                self.plant.set_analyser_status(int(spec.argument or 0))
            case "reset":
                self.plant.reset_totaliser(tag)
            case "drop":
                await self.drop_connections(tag)  # type: ignore[arg-type]
            case "restart":
                await self.restart(tag)  # type: ignore[arg-type]
            case "renumber":
                await self.restart("opcua", renumber=True)
            case "clear":
                f.clear(tag or None)
                if not tag:
                    self.plant.set_analyser_status(0)
                    self.plant.set_running(True)
        await self.publish()
