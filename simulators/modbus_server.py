"""The off-gas line and the kiln over Modbus TCP (pymodbus 3.16 SimDevice API).

Unit 1 is the off-gas analyser (input registers), unit 2 the waste heat boiler and unit 3 the
kiln (holding registers); unit 4 holds the synthetic benchmark tags when asked for. Addresses
are the 0-based addresses on the wire: pymodbus' SimDevice has none of the legacy datastore's
+1 offset. The registers of each unit are a plain image refreshed from the plant on every tick;
an `action` hook answers each request from the image, after the faults (delay, exceptions) had
their say. Every register is read-only: writes get exception 2 (illegal data address).
"""

from __future__ import annotations

import asyncio
import math
import struct
from dataclasses import dataclass
from functools import partial
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from simulators.faults import NO_VALUE_WORDS, Faults
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


class ModbusPlantServer:
    """One Modbus TCP server for units 1-3 (and 4: synthetic), restartable on the same port."""

    def __init__(self, plant: Plant, faults: Faults, options: ModbusOptions) -> None:
        self.plant, self.faults, self.options = plant, faults, options
        self.server: ModbusTcpServer | None = None
        self.images: dict[tuple[int, str], list[int]] = {}
        for reg in REGISTERS:
            size = reg.address + reg.count
            image = self.images.setdefault((reg.unit_id, reg.table), [0] * size)
            image.extend([0] * (size - len(image)))
        if options.synthetic_tags:
            self.images[(SYNTHETIC_UNIT, "holding")] = [0] * (2 * options.synthetic_tags)
        self.publish()

    @property
    def endpoint(self) -> str:
        return f"tcp://{self.options.host}:{self.options.port}"

    async def start(self) -> None:
        units = sorted({unit for unit, _ in self.images})
        devices = [SimDevice(unit, simdata=self._blocks(unit), action=partial(self._answer, unit))
                   for unit in units]  # fmt: skip
        # Unit 0 stands for every other unit id: answered like a gateway with nobody behind it.
        everything = [SimData(0, count=65535, values=0, datatype=DataType.REGISTERS)]
        bits = [SimData(0, values=[False] * 16, datatype=DataType.BITS)]
        devices.append(SimDevice(0, simdata=(bits, list(bits), everything, list(everything)),
                                 action=_no_such_unit))  # fmt: skip
        self.server = ModbusTcpServer(devices, address=(self.options.host, self.options.port))
        await self.server.serve_forever(background=True)
        listener: Any = self.server.transport  # an asyncio.Server once listening
        if self.options.port == 0 and listener is not None:
            self.options.port = listener.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            server, self.server = self.server, None
            await server.shutdown()  # type: ignore[no-untyped-call]

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    def drop_connections(self) -> None:
        if self.server is not None:
            for connection in list(self.server.active_connections.values()):
                connection.close()

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
