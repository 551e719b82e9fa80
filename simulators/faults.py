"""Faults on demand: what a client sees when an instrument, a server or a network misbehaves.

One `Faults` object is shared by the OPC UA and Modbus servers. Value faults (status, freeze,
spike, NaN) change what is *published* for a tag, never the plant itself; Modbus faults change
how requests are answered. Connection drops, restarts and totaliser resets act immediately and
live on `Simulation` and `Plant`. `parse()` reads the `--fault` syntax of `edge-agent-sim`.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from simulators.tags import ALL_TAGS, REGISTERS

Value = float | int | bool
Status = Literal["bad", "uncertain"]
ModbusException = Literal["illegal_address", "device_busy"]
EXCEPTION_CODES: dict[ModbusException, int] = {"illegal_address": 2, "device_busy": 6}
# The registers of a failed integer input, per encoding (the conventions the agent's
# `no_value = "default"` recognises; docs/acquisition.md).
NO_VALUE_WORDS: dict[str, list[int]] = {
    "int16": [0x8000],
    "uint16": [0xFFFF],
    "uint32": [0xFFFF, 0xFFFF],
}


class FaultError(ValueError):
    """A fault specification that names no tag or has a bad argument."""


@dataclass
class Faults:
    status: dict[str, Status] = field(default_factory=dict)
    frozen: dict[str, Value] = field(default_factory=dict)
    override: dict[str, float] = field(default_factory=dict)  # spikes and NaN
    no_value: set[str] = field(default_factory=set)  # Modbus integer tags showing their marker
    # (unit id, table, register address) -> Modbus exception code
    modbus_exceptions: dict[tuple[int, str, int], int] = field(default_factory=dict)
    modbus_delay_s: float = 0.0
    opcua_delay_s: float = 0.0  # before answering each OPC UA Read
    # Line faults: unit ids that never answer, and how many next replies get a broken CRC.
    silent_units: set[int] = field(default_factory=set)
    corrupt_replies: int = 0
    # Replies each unit id produced (sent or, for a silent unit, swallowed): what a test counts.
    replies: Counter[int] = field(default_factory=Counter)

    # ------------------------------------------------------------------------------ value faults

    def set_status(self, tag: str, status: Status) -> None:
        self.status[_known(tag)] = status

    def freeze(self, tag: str, current: Value) -> None:
        self.frozen[_known(tag)] = current

    def spike(self, tag: str, value: float | None = None) -> None:
        """Publish `value`, by default twice the top of the instrument's range."""
        spec = ALL_TAGS[_known(tag)]
        self.override[tag] = value if value is not None else 2 * spec.eu_range[1] or 1e6

    def nan(self, tag: str) -> None:
        self.override[_known(tag)] = math.nan

    def no_value_marker(self, tag: str) -> None:
        """The register shows its type's "no value" marker, as a device with a failed input
        does (int16 0x8000, uint16 0xFFFF, uint32 0xFFFFFFFF: see NO_VALUE_WORDS)."""
        for reg in REGISTERS:
            if reg.tag == _known(tag):
                if reg.encoding not in NO_VALUE_WORDS:
                    raise FaultError(f"{tag} is {reg.encoding}: no-value markers are for integers")
                self.no_value.add(tag)
                return
        raise FaultError(f"{tag} is not served over Modbus")

    def modbus_exception(self, tag: str, kind: ModbusException) -> None:
        """Answer every request that touches `tag`'s registers with this exception."""
        for reg in REGISTERS:
            if reg.tag == _known(tag):
                for address in range(reg.address, reg.address + reg.count):
                    self.modbus_exceptions[(reg.unit_id, reg.table, address)] = EXCEPTION_CODES[
                        kind
                    ]
                return
        raise FaultError(f"{tag} is not served over Modbus")

    def clear(self, tag: str | None = None) -> None:
        """Clear the faults on one tag, or every fault when `tag` is None."""
        if tag is None:
            self.status.clear()
            self.frozen.clear()
            self.override.clear()
            self.no_value.clear()
            self.modbus_exceptions.clear()
            self.modbus_delay_s = self.opcua_delay_s = 0.0
            self.silent_units.clear()
            self.corrupt_replies = 0
            return
        for table in (self.status, self.frozen, self.override):
            table.pop(tag, None)
        self.no_value.discard(tag)
        regs = {(r.unit_id, r.table, a) for r in REGISTERS if r.tag == tag
                for a in range(r.address, r.address + r.count)}  # fmt: skip
        for key in regs:
            self.modbus_exceptions.pop(key, None)

    def published(self, tag: str, value: Value) -> Value:
        """The value an instrument shows for the plant's `value` under the current faults."""
        if tag in self.override:
            return self.override[tag]
        return self.frozen.get(tag, value)

    def modbus_exception_for(self, unit_id: int, table: str, address: int, count: int) -> int:
        """The exception code for a request, or 0 when it is answered normally."""
        if not self.modbus_exceptions:
            return 0
        for a in range(address, address + count):
            code = self.modbus_exceptions.get((unit_id, table, a))
            if code:
                return code
        return 0

    def modbus_frame(self, unit_id: int, frame: bytes, *, has_crc: bool) -> bytes:
        """The reply frame as the line delivers it: dropped for a silent unit, or with its CRC
        broken (RTU framings only) while `corrupt_replies` lasts."""
        self.replies[unit_id] += 1
        if unit_id in self.silent_units:
            return b""
        if has_crc and self.corrupt_replies > 0:
            self.corrupt_replies -= 1
            return frame[:-1] + bytes([frame[-1] ^ 0xFF])
        return frame


def _known(tag: str) -> str:
    if tag not in ALL_TAGS:
        raise FaultError(f"unknown tag {tag!r}")
    return tag


FAULT_SYNTAX = """\
bad:TAG | uncertain:TAG      OPC UA status BadSensorFailure / UncertainSensorNotAccurate
freeze:TAG                   value stops changing, quality stays Good
spike:TAG[=VALUE]            out-of-range value (default 2x the EURange high)
nan:TAG                      NaN (float tags)
novalue:TAG                  Modbus integer register shows its "no value" marker (0x8000, ...)
illegal_address:TAG | device_busy:TAG   Modbus exception 2 / 6 on the tag's registers
slow_modbus:SECONDS          delay every Modbus reply
silent_unit:UNIT             that Modbus unit id never answers (until clear)
corrupt_crc:COUNT            the next COUNT RTU replies fail their CRC
slow_opcua:SECONDS           delay every OPC UA Read response
analyser:BITS                offgas.analyser_status bits (1 calibrating, 2 fault, 4 maintenance)
running:0|1                  stop the furnace (feeds and oxygen to zero, bath cools) or restart it
reset:TAG                    totaliser restarts from 0
drop:opcua|modbus|all        close every client connection
restart:opcua|modbus|all     restart the server(s), same address space, new sessions
renumber:opcua               rebuild the OPC UA server; the namespace index of our URI moves
clear[:TAG]                  remove faults"""


@dataclass(frozen=True)
class FaultSpec:
    kind: str
    target: str
    argument: float | None = None


_KINDS = {"bad", "uncertain", "freeze", "spike", "nan", "novalue", "illegal_address", "device_busy",
          "slow_modbus", "slow_opcua", "analyser", "reset", "drop", "restart", "renumber",
          "clear", "running", "silent_unit", "corrupt_crc"}  # fmt: skip
# Faults whose argument is a number, not a tag.
_NUMERIC = ("slow_modbus", "slow_opcua", "analyser", "running", "silent_unit", "corrupt_crc")


def parse(text: str) -> FaultSpec:
    """Parse one `--fault` argument, e.g. `spike:fsf.matte_temp=2000` or `drop:all`."""
    kind, _, rest = text.strip().partition(":")
    if kind not in _KINDS:
        raise FaultError(f"unknown fault {kind!r} in {text!r}; known:\n{FAULT_SYNTAX}")
    target, _, arg = rest.partition("=")
    argument: float | None = None
    if kind in _NUMERIC:
        target, arg = "", rest
    if arg:
        try:
            argument = float(arg)
        except ValueError as exc:
            raise FaultError(f"{text!r}: {arg!r} is not a number") from exc
    if kind in ("drop", "restart") and target not in ("opcua", "modbus", "all"):
        raise FaultError(f"{text!r}: say opcua, modbus or all")
    if kind == "renumber" and target != "opcua":
        raise FaultError(f"{text!r}: only opcua has namespaces")
    if kind not in ("drop", "restart", "renumber", "clear", *_NUMERIC):
        _known(target)
    if kind in _NUMERIC and argument is None:
        raise FaultError(f"{text!r}: needs a number")
    return FaultSpec(kind, target, argument)
