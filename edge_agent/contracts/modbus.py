"""Modbus tag and source settings: everything the Modbus driver needs to read and write a device.

A tag is a register address in one of the four tables, a data type spread over one or more
16-bit registers in a given byte order, and a linear scale; the driver plans its reads from these.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import Field, model_validator

from edge_agent.contracts.source import SourceSettings, TagPoint

ModbusTable = Literal["coil", "discrete_input", "holding", "input"]
ModbusType = Literal[
    "bool", "bit", "int16", "uint16", "int32", "uint32", "int64", "uint64",
    "float32", "float64", "string",
]  # fmt: skip
ByteOrder = Literal["ABCD", "CDAB", "BADC", "DCBA"]
REGISTERS = {
    "bool": 1, "bit": 1, "int16": 1, "uint16": 1, "int32": 2, "uint32": 2,
    "int64": 4, "uint64": 4, "float32": 2, "float64": 4,
}  # fmt: skip


class ModbusPoint(TagPoint):
    """Where a tag lives on a Modbus device and how its registers become a value."""

    unit_id: int = Field(1, ge=0, le=255)
    table: ModbusTable = "holding"
    address: int = Field(ge=0, le=65535)
    type: ModbusType = "uint16"
    byte_order: ByteOrder = "ABCD"
    bit: int | None = Field(None, ge=0, le=15)
    length: int | None = Field(None, ge=1, le=125, description="registers, for strings")
    scale: float = 1.0
    offset: float = 0.0

    @model_validator(mode="after")
    def _shape(self) -> ModbusPoint:
        if self.type == "bit" and self.bit is None:
            raise ValueError("type 'bit' needs bit = 0..15")
        if self.type == "string" and self.length is None:
            raise ValueError("type 'string' needs length (registers)")
        if self.table in ("coil", "discrete_input") and self.type != "bool":
            raise ValueError(f"table {self.table!r} holds bits: type must be 'bool'")
        return self

    @property
    def registers(self) -> int:
        """How many 16-bit registers (or bits, for coils) this tag occupies."""
        return self.length if self.type == "string" and self.length else REGISTERS[self.type]


class ModbusSettings(SourceSettings):
    """One Modbus TCP device (or gateway): request pacing, read planning and its tags."""

    retries: int = Field(1, ge=0, le=5)
    pacing_ms: float = Field(0.0, ge=0)
    max_gap: int = Field(8, ge=0, le=124)
    max_registers: int = Field(125, ge=1, le=125)
    tag: Sequence[ModbusPoint] = []
