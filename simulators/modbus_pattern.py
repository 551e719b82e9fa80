"""Unit 5, the test pattern: one known value of every Modbus type in every byte order, writable.

The plant's own units carry only the types its instruments use. Unit 5 is what an integrator
hooks up first to check a driver: every integer and float width in each of the four byte orders,
a flag register, a bit, strings, and coils, at fixed 0-based addresses (docs/simulators.md). Its
holding registers and coils accept writes and keep them, so a write can be read back.

The words are built here with `struct` and explicit byte permutations, independently of the
agent's codec, so that a wrong decoder cannot agree with itself.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

PATTERN_UNIT = 5
BYTE_ORDERS = ("ABCD", "CDAB", "BADC", "DCBA")
_NUMBERS: tuple[tuple[str, str, int | float], ...] = (
    ("int16", "h", -12345), ("uint16", "H", 54321),
    ("int32", "i", -123456789), ("uint32", "I", 3456789012),
    ("int64", "q", -1234567890123456789), ("uint64", "Q", 12345678901234567890),
    ("float32", "f", -1234.5), ("float64", "d", 98765.4321),
)  # fmt: skip


@dataclass(frozen=True)
class PatternValue:
    """One value of the pattern: its tag name, layout, 0-based address and engineering value."""

    name: str
    type: str
    byte_order: str
    address: int
    value: int | float | bool | str
    length: int | None = None  # registers, for strings
    bit: int | None = None


def _reorder(data: bytes, byte_order: str) -> bytes:
    """Big-endian value bytes to wire order: DCBA reverses them all, CDAB reverses the words,
    BADC swaps the bytes inside each word."""
    if byte_order == "DCBA":
        return data[::-1]
    words = [data[i : i + 2] for i in range(0, len(data), 2)]
    if byte_order == "CDAB":
        words.reverse()
    if byte_order == "BADC":
        words = [w[::-1] for w in words]
    return b"".join(words)


def _layout() -> tuple[list[PatternValue], dict[str, list[int]]]:
    values: list[PatternValue] = []
    words: dict[str, list[int]] = {}
    address = 0

    def place(value: PatternValue, data: bytes) -> None:
        nonlocal address
        words[value.name] = list(struct.unpack(f">{len(data) // 2}H", data))
        values.append(value)
        address += len(data) // 2

    for type_, code, number in _NUMBERS:
        for order in BYTE_ORDERS:
            raw = _reorder(struct.pack(">" + code, number), order)
            place(PatternValue(f"{type_}_{order.lower()}", type_, order, address, number), raw)
    place(PatternValue("flag", "bool", "ABCD", address, True), b"\x00\x01")
    place(PatternValue("bit_3", "bit", "ABCD", address, True, bit=3), b"\x00\x08")
    for order in ("ABCD", "BADC"):
        text = "KILN-07"
        data = text.encode().ljust(8, b"\x00")
        raw = data if order == "ABCD" else _reorder(data, "BADC")
        place(PatternValue(f"name_{order.lower()}", "string", order, address, text, 4), raw)
    # A setpoint to write to, starting at 0.
    place(PatternValue("setpoint", "float32", "ABCD", address, 0.0), b"\x00" * 4)
    return values, words


PATTERN, _WORDS = _layout()
PATTERN_REGISTERS = sum(len(w) for w in _WORDS.values())
# Coils 0..7 alternate, starting True; writable.
PATTERN_COILS = [i % 2 == 0 for i in range(8)]


def pattern_image() -> list[int]:
    """The holding registers of unit 5, from address 0."""
    return [word for value in PATTERN for word in _WORDS[value.name]]


def pattern_tags(source: str = "pattern") -> list[dict[str, Any]]:
    """Agent-config tag tables (TOML-shaped) that read the whole pattern, and the coils."""
    tags: list[dict[str, Any]] = []
    for v in PATTERN:
        tag: dict[str, Any] = {
            "id": f"{source}.{v.name}", "unit_id": PATTERN_UNIT, "table": "holding",
            "address": v.address, "type": v.type, "byte_order": v.byte_order,
        }  # fmt: skip
        if v.length:
            tag["length"] = v.length
        if v.bit is not None:
            tag["bit"] = v.bit
        if v.name == "setpoint":
            tag.update(writable=True, min=-1000.0, max=1000.0)
        tags.append(tag)
    for i in range(len(PATTERN_COILS)):
        tags.append({"id": f"{source}.coil_{i}", "unit_id": PATTERN_UNIT, "table": "coil",
                     "address": i, "type": "bool"})  # fmt: skip
    return tags


def expected_values(source: str = "pattern") -> dict[str, int | float | bool | str]:
    """What a correct driver reads from the pattern (before any write)."""
    found: dict[str, int | float | bool | str] = {f"{source}.{v.name}": v.value for v in PATTERN}
    found.update({f"{source}.coil_{i}": bit for i, bit in enumerate(PATTERN_COILS)})
    return found
