"""Modbus tag and source settings: everything the Modbus driver needs to read and write a device.

A tag is a register address in one of the four tables, a data type spread over one or more
16-bit registers in a given byte order, and a linear scale; the driver plans its reads from these.
A source is one link (a TCP server, a gateway carrying RTU frames, or a serial port) with its
line settings, pacing, device back-off and the workarounds devices need.
"""

from __future__ import annotations

import os
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


ModbusTransport = Literal["tcp", "rtu_over_tcp", "rtu", "ascii"]
SERIAL_TRANSPORTS = ("rtu", "ascii")


class ModbusSettings(SourceSettings):
    """A Modbus device (or several unit ids) on one link: a TCP server, a gateway or a serial port.

    Sources naming the same serial port or the same gateway share one bus (one connection, one
    request at a time); the link settings of all of them must then agree. Serial words are
    pymodbus's own (`baudrate`, `bytesize`, `parity`, `stopbits`); the default 8E1 at 19200 baud
    is the Modbus serial line specification's.
    """

    transport: ModbusTransport = "tcp"
    endpoint: str = Field("", description="tcp://host[:port], for tcp and rtu_over_tcp")
    serial_port: str | None = Field(None, description="for rtu and ascii: /dev/ttyUSB0")
    baudrate: int = Field(19200, ge=300, le=4_000_000)
    bytesize: Literal[7, 8] = 8
    parity: Literal["N", "E", "O"] = "E"
    stopbits: Literal[1, 2] = 1
    # Silence before each frame; None: 3.5 character times (1.75 ms above 19200 baud).
    inter_frame_ms: float | None = Field(None, ge=0, le=1000)
    pause_between_requests_ms: float = Field(0.0, ge=0, le=10_000)
    pause_after_connect_ms: float = Field(0.0, ge=0, le=60_000)
    retries: int = Field(1, ge=0, le=5, description="after a timeout")
    busy_retries: int = Field(0, ge=0, le=10, description="after exception 6, device busy")
    busy_retry_wait_ms: float = Field(100.0, ge=0, le=10_000)
    # Device back-off: after this many timeouts in a row a unit id is asked only every
    # `unreachable_retry_s` until it answers; its tags are Bad "device_unreachable" meanwhile.
    unreachable_after: int = Field(3, ge=1, le=100)
    unreachable_retry_s: float = Field(10.0, gt=0, le=3600)
    max_gap: int = Field(8, ge=0, le=124)
    max_registers: int = Field(125, ge=1, le=125)
    one_request_per_tag: bool = False
    address_base: Literal[0, 1] = Field(0, description="1: tag addresses count from 1")
    tag: Sequence[ModbusPoint] = []

    @model_validator(mode="after")
    def _link(self) -> ModbusSettings:
        if self.transport in SERIAL_TRANSPORTS:
            if not self.serial_port:
                raise ValueError(f"transport {self.transport!r} needs serial_port")
            if self.endpoint:
                raise ValueError(f"transport {self.transport!r} uses serial_port, not endpoint")
        else:
            if not self.endpoint.startswith("tcp://"):
                raise ValueError(
                    f"transport {self.transport!r} needs endpoint = 'tcp://host[:port]' "
                    f"(got: {self.endpoint!r})"
                )
            if self.serial_port:
                raise ValueError(f"transport {self.transport!r} uses endpoint, not serial_port")
        if self.address_base == 1:
            for tag in self.tag:
                if tag.address < 1:
                    raise ValueError(f"tag {tag.id}: address 0 with address_base = 1")
        return self

    @property
    def link(self) -> str:
        """What sources share a bus by: the serial port (symlinks resolved) or the endpoint."""
        if self.transport in SERIAL_TRANSPORTS:
            return os.path.realpath(self.serial_port or "")
        return self.endpoint.rstrip("/")
