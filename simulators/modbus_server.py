"""The off-gas line and the kiln over Modbus: TCP, RTU over TCP and RTU on a serial port.

Unit 1 is the off-gas analyser (input registers), unit 2 the waste heat boiler and unit 3 the
kiln (holding registers); unit 4 holds the synthetic benchmark tags when asked for, unit 5 the
writable test pattern (simulators/modbus_pattern.py). Addresses are the 0-based addresses on the
wire: pymodbus' SimDevice (3.16 API) has none of the legacy datastore's +1 offset. The registers
of each unit are a plain image refreshed from the plant on every tick; an `action` hook answers
each request from the image, after the faults (delay, exceptions) had their say. The plant's
registers are read-only: writes get exception 2 (illegal data address).

The same devices can be served at once as Modbus TCP, as RTU frames over TCP (what a serial
gateway speaks) and as RTU on a serial port: the far end of a `socat` pseudo-terminal pair in
tests and demos, a real RS-485 adapter otherwise (docs/simulators.md). The line faults act on
the outgoing frames: a silent unit's answers are dropped, a corrupted frame has its CRC broken.
"""

from __future__ import annotations

import asyncio
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from simulators.faults import NO_VALUE_WORDS, Faults
from simulators.modbus_pattern import PATTERN_COILS, PATTERN_UNIT, pattern_image
from simulators.plant import Plant, Value
from simulators.tags import REGISTERS, Register

SYNTHETIC_UNIT = 4
_TABLE_BY_FC = {3: "holding", 4: "input"}


def encode(reg: Register, value: Value) -> list[int]:
    """The register words for one engineering value (docs/simulators.md, register map)."""
    number = float(value)
    if reg.encoding == "float32":
        hi, lo = struct.unpack(">HH", struct.pack(">f", number))
        return [hi, lo] if reg.byte_order == "ABCD" else [lo, hi]
    if math.isnan(number):
        return [0x8000] if reg.count == 1 else [0xFFFF, 0xFFFF]  # documented "no value"
    raw = round(number / reg.scale)
    if reg.encoding == "int16":
        return [max(-32768, min(32767, raw)) & 0xFFFF]
    if reg.encoding == "uint16":
        return [max(0, min(0xFFFF, raw))]
    raw %= 2**32  # uint32 totalisers wrap like the real counter
    hi, lo = raw >> 16, raw & 0xFFFF
    return [hi, lo] if reg.byte_order == "ABCD" else [lo, hi]


@dataclass
class ModbusOptions:
    host: str = "127.0.0.1"
    port: int = 5020
    synthetic_tags: int = 0
    rtu_over_tcp_port: int | None = None  # also serve RTU frames over TCP (0: a free port)
    serial_port: str | None = None  # also serve RTU on this serial port (a pty's far end)
    ascii_serial_port: str | None = None  # also serve Modbus ASCII on this one
    baudrate: int = 19200


Framing = str  # "socket" | "rtu" | "ascii" (FramerType values)


class ModbusPlantServer:
    """The Modbus servers for units 1-5 (TCP, optionally RTU over TCP and serial RTU), restartable
    on the same addresses."""

    def __init__(self, plant: Plant, faults: Faults, options: ModbusOptions) -> None:
        self.plant, self.faults, self.options = plant, faults, options
        self.servers: list[ModbusTcpServer | ModbusSerialServer] = []
        self.images: dict[tuple[int, str], list[int]] = {}
        for reg in REGISTERS:
            size = reg.address + reg.count
            image = self.images.setdefault((reg.unit_id, reg.table), [0] * size)
            image.extend([0] * (size - len(image)))
        if options.synthetic_tags:
            self.images[(SYNTHETIC_UNIT, "holding")] = [0] * (2 * options.synthetic_tags)
        self.images[(PATTERN_UNIT, "holding")] = pattern_image()
        self.publish()

    @property
    def endpoint(self) -> str:
        return f"tcp://{self.options.host}:{self.options.port}"

    @property
    def rtu_over_tcp_endpoint(self) -> str:
        if self.options.rtu_over_tcp_port is None:
            raise RuntimeError("this simulation serves no RTU over TCP (rtu_over_tcp_port)")
        return f"tcp://{self.options.host}:{self.options.rtu_over_tcp_port}"

    async def start(self) -> None:
        o = self.options
        self.servers = [await self._tcp(FramerType.SOCKET, o.port)]
        if o.rtu_over_tcp_port is not None:
            self.servers.append(await self._tcp(FramerType.RTU, o.rtu_over_tcp_port))
        serial = ((o.serial_port, FramerType.RTU), (o.ascii_serial_port, FramerType.ASCII))
        for port, framer in serial:
            if port:
                server = ModbusSerialServer(
                    self._devices(), framer=framer, port=port, baudrate=o.baudrate,
                    trace_packet=self._line_faults(framer.value),
                )  # fmt: skip
                await server.serve_forever(background=True)
                self.servers.append(server)

    async def _tcp(self, framer: FramerType, port: int) -> ModbusTcpServer:
        framing = "socket" if framer == FramerType.SOCKET else "rtu"
        server = ModbusTcpServer(
            self._devices(), framer=framer, address=(self.options.host, port),
            trace_packet=self._line_faults(framing),
        )  # fmt: skip
        await server.serve_forever(background=True)
        listener: Any = server.transport  # an asyncio.Server once listening
        if port == 0 and listener is not None:
            port = listener.sockets[0].getsockname()[1]
            if framer == FramerType.SOCKET:
                self.options.port = port
            else:
                self.options.rtu_over_tcp_port = port
        return server

    def _devices(self) -> list[SimDevice]:
        units = sorted({unit for unit, _ in self.images})
        devices = [SimDevice(unit, simdata=self._blocks(unit), action=partial(self._answer, unit))
                   for unit in units if unit != PATTERN_UNIT]  # fmt: skip
        devices.append(_pattern_device(self.images[(PATTERN_UNIT, "holding")], self.faults))
        # Unit 0 stands for every other unit id: answered like a gateway with nobody behind it.
        everything = [SimData(0, count=65535, values=0, datatype=DataType.REGISTERS)]
        bits = [SimData(0, values=[False] * 16, datatype=DataType.BITS)]
        devices.append(SimDevice(0, simdata=(bits, list(bits), everything, list(everything)),
                                 action=_no_such_unit))  # fmt: skip
        return devices

    async def stop(self) -> None:
        servers, self.servers = self.servers, []
        for server in servers:
            await server.shutdown()  # type: ignore[no-untyped-call]

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    def drop_connections(self) -> None:
        for server in self.servers:
            if isinstance(server, ModbusTcpServer):
                for connection in list(server.active_connections.values()):
                    connection.close()

    def _line_faults(self, framing: Framing) -> Callable[[bool, bytes], bytes]:
        """The trace hook that lets the faults touch every frame the server sends."""

        def outgoing(sending: bool, frame: bytes) -> bytes:
            if not sending or len(frame) < 4:
                return frame
            if framing == "ascii":  # ":" then the unit id in two hex digits
                unit = int(frame[1:3], 16)
            else:
                unit = frame[6] if framing == "socket" and len(frame) > 6 else frame[0]
            return self.faults.modbus_frame(unit, frame, has_crc=framing == "rtu")

        return outgoing

    def publish(self, synthetic: list[float] | None = None) -> None:
        """Refresh the register images from the plant's values and the value faults."""
        values = self.plant.values
        no_value = self.faults.no_value
        for reg in REGISTERS:
            if reg.tag in no_value:
                words = NO_VALUE_WORDS[reg.encoding]
            else:
                words = encode(reg, self.faults.published(reg.tag, values[reg.tag]))
            self.images[(reg.unit_id, reg.table)][reg.address : reg.address + reg.count] = words
        if synthetic:
            image = self.images[(SYNTHETIC_UNIT, "holding")]
            packed = struct.pack(f">{len(synthetic)}f", *synthetic)
            image[:] = struct.unpack(f">{2 * len(synthetic)}H", packed)

    def _blocks(
        self, unit: int
    ) -> tuple[list[SimData], list[SimData], list[SimData], list[SimData]]:
        def block(table: str) -> list[SimData]:
            image = self.images.get((unit, table))
            if not image:
                return [SimData(0, datatype=DataType.INVALID)]
            return [
                SimData(0, count=len(image), values=0, datatype=DataType.REGISTERS, readonly=True)
            ]

        bits = [SimData(0, values=[False] * 16, datatype=DataType.BITS, readonly=True)]
        return (bits, list(bits), block("holding"), block("input"))

    async def _answer(
        self, unit: int, function_code: int, start_address: int, address: int, count: int,
        registers: list[int], set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:  # fmt: skip
        if self.faults.modbus_delay_s:
            await asyncio.sleep(self.faults.modbus_delay_s)
        table = _TABLE_BY_FC.get(function_code)
        if table is None or set_values is not None:
            return ExcCodes.ILLEGAL_ADDRESS
        if code := self.faults.modbus_exception_for(unit, table, address, count):
            return ExcCodes(code)
        image = self.images[(unit, table)]
        offset = address - start_address
        registers[offset : offset + count] = image[address : address + count]
        return None


async def _no_such_unit(*_: object) -> ExcCodes:
    return ExcCodes.GATEWAY_NO_RESPONSE


def _pattern_device(image: list[int], faults: Faults) -> SimDevice:
    """Unit 5: its holding registers and coils keep what is written (the image is shared by every
    server, so a write over one transport reads back over another)."""

    async def answer(
        function_code: int, start_address: int, address: int, count: int,
        registers: list[int], set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:  # fmt: skip
        if faults.modbus_delay_s:
            await asyncio.sleep(faults.modbus_delay_s)
        if function_code in (3, 6, 16):
            offset = address - start_address
            if set_values is not None:
                image[address : address + count] = [int(v) for v in set_values]
            registers[offset : offset + count] = image[address : address + count]
        return None

    holding = [SimData(0, count=len(image), values=0, datatype=DataType.REGISTERS)]
    coils = [SimData(0, values=list(PATTERN_COILS) + [False] * 8, datatype=DataType.BITS)]
    bits = [SimData(0, values=[False] * 16, datatype=DataType.BITS, readonly=True)]
    invalid = [SimData(0, datatype=DataType.INVALID)]
    return SimDevice(PATTERN_UNIT, simdata=(coils, bits, holding, invalid), action=answer)
