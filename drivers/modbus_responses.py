"""Read responses with a cheap decode and a cheap `str`, registered on every client we make.

pymodbus (3.16) decodes a register response one `struct.unpack` per register, and its decoder
builds `str(pdu)` (every register formatted) for a debug log line whether or not debug logging
is on: together about 7 % of the agent's event loop at 20 000 tags/s, per the end-to-end
benchmark's profile (docs/performance.md). The library's public `client.register()` accepts
response classes of our own for a function code, so the fix needs no patch: the same classes,
decoded in one `struct` call, keeping the data bytes (`block`) so that our block decoder does
not pack the registers back into bytes, and a `str` that names the response without formatting
its registers.
"""

from __future__ import annotations

import struct

from pymodbus.client.base import ModbusBaseClient
from pymodbus.exceptions import ModbusIOException
from pymodbus.pdu.bit_message import ReadCoilsResponse, ReadDiscreteInputsResponse
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersResponse,
    ReadInputRegistersResponse,
)

_UNPACK = [struct.Struct(f">{n}H").unpack_from for n in range(126)]


class _Brief:
    """`str(pdu)` without the data: pymodbus formats it for a log line nobody may read."""

    function_code: int
    dev_id: int
    transaction_id: int

    def __str__(self) -> str:
        return (
            f"{type(self).__name__}(dev_id={self.dev_id}, transaction_id={self.transaction_id}, "
            f"function_code={self.function_code})"
        )


class HoldingRegisters(_Brief, ReadHoldingRegistersResponse):
    """Function 3: `registers` as pymodbus gives them, plus the raw data bytes in `block`."""

    block: bytes = b""

    def decode(self, data: bytes) -> None:
        count = int(data[0])
        if count >= len(data):
            raise ModbusIOException(
                f"byte_count {count} > length of packet {len(data)}",
                function_code=self.function_code,
            )
        self.block = bytes(data[1 : 1 + count - count % 2])
        self.registers = list(_UNPACK[len(self.block) // 2](self.block))


class InputRegisters(HoldingRegisters, ReadInputRegistersResponse):
    """Function 4, decoded as function 3."""

    function_code = 4


class Coils(_Brief, ReadCoilsResponse):
    """Function 1: pymodbus's decode, a brief `str`."""


class DiscreteInputs(_Brief, ReadDiscreteInputsResponse):
    """Function 2: pymodbus's decode, a brief `str`."""


RESPONSES = (HoldingRegisters, InputRegisters, Coils, DiscreteInputs)


def register_responses(client: ModbusBaseClient) -> None:
    """Make `client` decode the four read responses with the classes above."""
    for response in RESPONSES:
        client.register(response)
