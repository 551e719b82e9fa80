"""The Modbus codec: every type, every byte order, scale/offset, bits and strings."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.base import WriteRefused
from drivers.modbus_codec import (
    block_decoder,
    block_segments,
    bytes_to_registers,
    decode,
    encode,
    registers_to_bytes,
)
from edge_agent.config import ModbusTag


def tag(**kw: object) -> ModbusTag:
    return ModbusTag.model_validate({"id": "t.x", "address": 0, **kw})


# 0x41200000 is 10.0 as float32: A=0x41 B=0x20 C=0x00 D=0x00.
@pytest.mark.parametrize(
    ("order", "wire"),
    [
        ("ABCD", [0x4120, 0x0000]),
        ("CDAB", [0x0000, 0x4120]),
        ("BADC", [0x2041, 0x0000]),
        ("DCBA", [0x0000, 0x2041]),
    ],
)
def test_float32_in_every_byte_order(order: str, wire: list[int]) -> None:
    t = tag(type="float32", byte_order=order)
    assert decode(t, wire) == 10.0
    assert encode(t, 10.0) == wire


@pytest.mark.parametrize(
    ("order", "wire"),
    [
        ("ABCD", [0x0102, 0x0304, 0x0506, 0x0708]),
        ("CDAB", [0x0708, 0x0506, 0x0304, 0x0102]),
        ("BADC", [0x0201, 0x0403, 0x0605, 0x0807]),
        ("DCBA", [0x0807, 0x0605, 0x0403, 0x0201]),
    ],
)
def test_uint64_in_every_byte_order(order: str, wire: list[int]) -> None:
    t = tag(type="uint64", byte_order=order)
    assert decode(t, wire) == 0x0102030405060708
    assert encode(t, 0x0102030405060708) == wire


@pytest.mark.parametrize(
    ("type_", "value", "fmt"),
    [
        ("int16", -12345, ">h"),
        ("uint16", 54321, ">H"),
        ("int32", -123456789, ">i"),
        ("uint32", 4000000000, ">I"),
        ("int64", -(2**62) + 7, ">q"),
        ("uint64", 2**63 + 11, ">Q"),
        ("float64", -1234.5678, ">d"),
    ],
)
def test_each_numeric_type_big_endian(type_: str, value: float, fmt: str) -> None:
    wire = bytes_to_registers(struct.pack(fmt, value), "ABCD")
    t = tag(type=type_)
    decoded = decode(t, wire)
    assert decoded == value
    assert type(decoded) is type(value)
    assert encode(t, value) == wire


def test_int16_byte_swapped() -> None:
    assert decode(tag(type="int16", byte_order="BADC"), [0xC7CF]) == -12345  # 0xCFC7


def test_scale_and_offset_give_engineering_units_and_invert_on_write() -> None:
    t = tag(type="int16", scale=0.1, offset=-50.0)
    assert decode(t, [12345]) == pytest.approx(1184.5)
    assert encode(t, 1184.5) == [12345]


def test_bit_in_register_and_bool() -> None:
    status = 0b0000_0000_0000_0101
    assert decode(tag(type="bit", bit=0), [status]) is True
    assert decode(tag(type="bit", bit=1), [status]) is False
    assert decode(tag(type="bit", bit=2), [status]) is True
    assert decode(tag(type="bool"), [0]) is False
    assert decode(tag(type="bool"), [7]) is True


def test_strings_strip_padding_and_honour_byte_swap() -> None:
    assert decode(tag(type="string", length=3), [0x4142, 0x4300, 0x0000]) == "ABC"
    assert decode(tag(type="string", length=2, byte_order="BADC"), [0x4241, 0x0043]) == "ABC"
    assert encode(tag(type="string", length=3), "AB") == [0x4142, 0, 0]


def test_writes_refuse_what_the_type_cannot_hold() -> None:
    with pytest.raises(WriteRefused, match="does not fit in uint16"):
        encode(tag(type="uint16"), 70000)
    with pytest.raises(WriteRefused, match="longer than 4 bytes"):
        encode(tag(type="string", length=2), "ABCDE")
    with pytest.raises(WriteRefused, match="not writable"):
        encode(tag(type="bit", bit=3), True)
    with pytest.raises(WriteRefused, match="not a number"):
        encode(tag(type="float32"), "hot")


@given(st.binary(min_size=8, max_size=8), st.sampled_from(["ABCD", "CDAB", "BADC", "DCBA"]))
def test_reordering_round_trips(data: bytes, order: str) -> None:
    assert registers_to_bytes(bytes_to_registers(data, order), order) == data


@pytest.mark.parametrize(
    "kw",
    [
        {"type": t, "byte_order": o, **extra}
        for t in ("int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64")
        for o in ("ABCD", "CDAB", "BADC", "DCBA")
        for extra in ({}, {"scale": 0.5, "offset": 3.0})
    ]
    + [{"type": "bit", "bit": 3}, {"type": "bool"}, {"type": "string", "length": 2}],
)
def test_block_decoder_agrees_with_decode(kw: dict[str, object]) -> None:
    t = tag(**kw)
    words = [0x4142, 0x8C01, 0x7F00, 0x0A0B][: t.registers]
    block = struct.pack(">3H", 1, 2, 3) + struct.pack(f">{len(words)}H", *words)
    assert block_decoder(t)(block, 6) == decode(t, words)


def test_block_segments_decode_runs_in_one_call_and_agree_with_decode() -> None:
    from drivers.modbus import _decode_block
    from drivers.modbus_plan import merge

    tags = [
        ModbusTag.model_validate({"id": f"t.f{i}", "address": 2 * i, "type": "float32"})
        for i in range(3)
    ] + [
        tag(id="t.scaled", address=6, type="int16", scale=0.1),
        tag(id="t.b0", address=7, type="bit", bit=0),
        tag(id="t.b1", address=7, type="bit", bit=1),
        tag(id="t.s", address=8, type="string", length=2),
        tag(id="t.l", address=10, type="float32", byte_order="CDAB"),
    ]
    (request,) = merge(tags, max_gap=0, max_registers=125)
    segments = block_segments(request.tags, 0)
    assert [len(ids) for ids, *_ in segments] == [3, 1, 1, 1, 1, 1]
    words = [*bytes_to_registers(struct.pack(">fff", 1.5, float("nan"), -2.0), "ABCD")]
    words += [123, 0b10, 0x4142, 0x4300, *bytes_to_registers(struct.pack(">f", 7.0), "CDAB")]
    samples = {s.tag: s for s in _decode_block(segments, words, request, 1)}
    assert samples["t.f0"].value == 1.5
    assert (samples["t.f1"].value, samples["t.f1"].reason) == (None, "not_finite")
    assert samples["t.f2"].value == -2.0
    for t in tags:
        if t.id != "t.f1":
            own = words[t.address : t.address + t.registers]
            assert samples[t.id].value == decode(t, own), t.id


# -------------------------------------------------------------- float32 as the instrument meant it


@pytest.mark.parametrize("order", ["ABCD", "CDAB", "BADC", "DCBA"])
def test_float32_is_published_with_float32_precision_in_every_path(order: str) -> None:
    """18.404083 on the wire, not 18.404083251953125, whichever decoder runs."""
    t = tag(type="float32", byte_order=order)
    wire = encode(t, 18.404083)
    assert repr(decode(t, wire)) == "18.404083"
    block = registers_to_bytes(wire, "ABCD")  # a response block is packed big-endian
    assert repr(block_decoder(t)(block, 0)) == "18.404083"
    run = [tag(id=f"t.{i}", address=2 * i, type="float32", byte_order=order) for i in range(3)]
    blocks = b"".join(registers_to_bytes(encode(r, 18.404083), "ABCD") for r in run)
    values = [v for _ids, at, read, _f in block_segments(run, 0) for v in read(blocks, at)]
    assert [repr(v) for v in values] == ["18.404083"] * 3


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_float32_shortest_form_reads_back_as_the_same_float32(bits: int) -> None:
    from edge_agent.contracts.samples import shortest_float32

    (wide,) = struct.unpack(">f", bits.to_bytes(4, "big"))
    short = shortest_float32(wide)
    if wide != wide:  # NaN stays NaN (the driver marks it Bad)
        assert short != short
        return
    assert struct.pack(">f", short) == struct.pack(">f", wide)
    assert len(repr(short)) <= len(repr(wide))
