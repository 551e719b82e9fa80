"""Modbus register codec: engineering values <-> 16-bit registers, for every tag type we map.

Devices disagree on how a multi-register value is laid out. We name a layout by where the bytes
of the big-endian value `A B C D` (`A` most significant) end up on the wire:

- `ABCD`: big-endian words in big-endian order (the Modbus specification's own layout);
- `CDAB`: word-swapped (little-endian word order, common on PLCs);
- `BADC`: byte-swapped inside each word;
- `DCBA`: fully little-endian.

For 64-bit values the same rule extends to four words. pymodbus's `convert_from_registers` only
handles the word order, so byte swapping is done here and the whole codec is ours.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence
from typing import Any

from drivers.base import WriteRefused
from edge_agent.contracts.modbus import ModbusPoint
from edge_agent.contracts.samples import Value, shortest_float32, shortest_float32s

_STRUCT = {
    "int16": "h", "uint16": "H", "int32": "i", "uint32": "I",
    "int64": "q", "uint64": "Q", "float32": "f", "float64": "d",
}  # fmt: skip
_INTEGER = frozenset({"int16", "uint16", "int32", "uint32", "int64", "uint64"})


def registers_to_bytes(registers: Sequence[int], byte_order: str) -> bytes:
    """Reorder wire registers into the value's big-endian bytes."""
    words = list(registers)
    if byte_order in ("CDAB", "DCBA"):
        words.reverse()
    if byte_order in ("BADC", "DCBA"):
        words = [((w & 0xFF) << 8) | (w >> 8) for w in words]
    return b"".join(w.to_bytes(2, "big") for w in words)


def bytes_to_registers(data: bytes, byte_order: str) -> list[int]:
    """The inverse of `registers_to_bytes`: big-endian value bytes to wire registers."""
    words = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    if byte_order in ("BADC", "DCBA"):
        words = [((w & 0xFF) << 8) | (w >> 8) for w in words]
    if byte_order in ("CDAB", "DCBA"):
        words.reverse()
    return words


def decode(tag: ModbusPoint, registers: Sequence[int]) -> Value:
    """The tag's engineering value from its own registers (exactly `tag.registers` of them).

    Integers stay integers unless a scale or offset is configured; strings are ASCII with
    trailing NULs and spaces removed (word order does not apply to strings, byte swap does).
    """
    if tag.type == "bool":
        return bool(registers[0])
    if tag.type == "bit":
        assert tag.bit is not None
        return bool((registers[0] >> tag.bit) & 1)
    if tag.type == "string":
        order = "BADC" if tag.byte_order in ("BADC", "DCBA") else "ABCD"
        return registers_to_bytes(registers, order).rstrip(b"\x00 ").decode("latin-1")
    (raw,) = struct.unpack(">" + _STRUCT[tag.type], registers_to_bytes(registers, tag.byte_order))
    if tag.type == "float32":
        raw = shortest_float32(raw)
    if tag.scale == 1.0 and tag.offset == 0.0:
        return raw  # type: ignore[no-any-return]
    return float(raw) * tag.scale + tag.offset


BlockDecoder = Callable[[bytes, int], Value]


def block_decoder(tag: ModbusPoint) -> BlockDecoder:
    """A decoder of the tag's value at a byte offset of a block of registers packed big-endian.

    Built once per tag: a poller decodes thousands of values a second, and one precompiled
    `struct` call per value (where the byte order allows it) costs a fraction of `decode`.
    """
    direct = _direct_struct(tag)
    if direct is None:
        words = struct.Struct(f">{tag.registers}H")
        return lambda block, at: decode(tag, words.unpack_from(block, at))
    unpack = direct.unpack_from
    if tag.type == "float32":
        scale, offset = tag.scale, tag.offset
        return lambda block, at: shortest_float32(unpack(block, at)[0]) * scale + offset
    if tag.scale == 1.0 and tag.offset == 0.0:
        return lambda block, at: unpack(block, at)[0]  # type: ignore[no-any-return]
    scale, offset = tag.scale, tag.offset
    return lambda block, at: float(unpack(block, at)[0]) * scale + offset


# Tags decoded together: their ids, the byte offset of the first in the block, a function from
# (block, offset) to their values, and whether those values can be non-finite floats.
Segment = tuple[tuple[str, ...], int, Callable[[bytes, int], Sequence[Value]], bool]


def block_segments(tags: Sequence[ModbusPoint], start: int) -> list[Segment]:
    """How to decode the tags of one response block, with one `struct` call per run of
    adjacent tags of the same layout (a block of 60 float32 is one call, not 60)."""
    segments: list[Segment] = []
    run: list[ModbusPoint] = []
    for tag in sorted(tags, key=lambda t: t.address):
        if run and _same_run(run[-1], tag):
            run.append(tag)
            continue
        if run:
            segments.append(_segment(run, start))
        run = [tag]
    if run:
        segments.append(_segment(run, start))
    return segments


def _same_run(prev: ModbusPoint, tag: ModbusPoint) -> bool:
    return (
        _direct_struct(tag) is not None
        and tag.address == prev.address + prev.registers
        and (tag.type, tag.byte_order, tag.scale, tag.offset)
        == (prev.type, prev.byte_order, prev.scale, prev.offset)
    )


def _segment(run: list[ModbusPoint], start: int) -> Segment:
    first = run[0]
    ids = tuple(t.id for t in run)
    at = 2 * (first.address - start)
    floats = first.type in ("float32", "float64") or first.scale != 1.0 or first.offset != 0.0
    direct = _direct_struct(first)
    if direct is None:
        decode = block_decoder(first)
        return ids, at, lambda block, at: (decode(block, at),), floats
    layout = struct.Struct(direct.format[0] + direct.format[1:] * len(run))
    unpack: Callable[[bytes, int], Sequence[Any]] = layout.unpack_from
    if first.type == "float32":
        unpack = _shortest_float32s(unpack)
    if first.scale != 1.0 or first.offset != 0.0:
        unpack = _scaled(unpack, first.scale, first.offset)
    elif first.type != "float32":
        return ids, at, unpack, floats  # integers: one struct call, nothing to save
    return ids, at, _unless_unchanged(unpack, layout.size), floats


def _shortest_float32s(
    unpack: Callable[[bytes, int], Sequence[Any]],
) -> Callable[[bytes, int], list[float]]:
    return lambda block, at: shortest_float32s(unpack(block, at))


def _scaled(
    unpack: Callable[[bytes, int], Sequence[Any]], scale: float, offset: float
) -> Callable[[bytes, int], list[float]]:
    return lambda block, at: [float(v) * scale + offset for v in unpack(block, at)]


def _unless_unchanged(
    decode: Callable[[bytes, int], Sequence[Value]], size: int
) -> Callable[[bytes, int], Sequence[Value]]:
    """`decode`, skipped when the run's bytes are those of the previous read.

    Registers often hold still between polls (setpoints, status, values a PLC updates slower
    than it is polled): then the values are the previous read's, without formatting each float
    again. Comparing the bytes costs a slice per run; the values are a function of the bytes
    alone, so the result is the same either way.
    """
    last: list[Any] = [None, ()]

    def decode_run(block: bytes, at: int) -> Sequence[Value]:
        raw = block[at : at + size]
        if raw != last[0]:
            last[0], last[1] = raw, tuple(decode(block, at))
        return last[1]  # type: ignore[no-any-return]

    return decode_run


def _direct_struct(tag: ModbusPoint) -> struct.Struct | None:
    """A struct that reads the value straight from the block: big- or little-endian layouts."""
    code = _STRUCT.get(tag.type)
    if code is None:
        return None
    if tag.registers == 1:
        return struct.Struct((">" if tag.byte_order in ("ABCD", "CDAB") else "<") + code)
    if tag.byte_order == "ABCD":
        return struct.Struct(">" + code)
    if tag.byte_order == "DCBA":
        return struct.Struct("<" + code)
    return None


def encode(tag: ModbusPoint, value: Value) -> list[int]:
    """Registers to write for an engineering value; refuses what the type cannot hold."""
    if tag.type in ("bool", "bit"):
        if tag.type == "bit":
            raise WriteRefused(f"tag {tag.id}: a single bit of a register is not writable")
        return [1 if value else 0]
    if tag.type == "string":
        assert tag.length is not None
        data = str(value).encode("latin-1")
        if len(data) > 2 * tag.length:
            raise WriteRefused(f"tag {tag.id}: {value!r} is longer than {2 * tag.length} bytes")
        order = "BADC" if tag.byte_order in ("BADC", "DCBA") else "ABCD"
        return bytes_to_registers(data.ljust(2 * tag.length, b"\x00"), order)
    if isinstance(value, str):
        raise WriteRefused(f"tag {tag.id}: {value!r} is not a number")
    raw: float | int = value
    if tag.scale != 1.0 or tag.offset != 0.0 or not isinstance(value, int):
        raw = (float(value) - tag.offset) / tag.scale
    if tag.type in _INTEGER and isinstance(raw, float):
        if not math.isfinite(raw):
            raise WriteRefused(f"tag {tag.id}: {value!r} is not a finite number")
        raw = round(raw)
    try:
        data = struct.pack(">" + _STRUCT[tag.type], raw)
    except (struct.error, OverflowError) as exc:
        raise WriteRefused(f"tag {tag.id}: {value!r} does not fit in {tag.type}") from exc
    return bytes_to_registers(data, tag.byte_order)
