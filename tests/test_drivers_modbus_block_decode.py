"""The block decode against its per-value reference: same samples, bit for bit, on random blocks.

`shortest_float32s` (one format and one pack per block) must give exactly what
`shortest_float32` gives value by value, and `_decode_block` (one `struct` call and one
`shortest_float32s` per run of tags, `Sample`s built by `map`) exactly what decoding each tag on
its own registers gives: the same values (the same float, not only an equal one: -0.0 is not
0.0), the same qualities and reasons, for every type, byte order, scale and offset.
"""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Sequence

import pytest

from drivers.modbus import _decode_block
from drivers.modbus_codec import block_segments, decode
from drivers.modbus_plan import merge
from edge_agent.config import ModbusTag
from edge_agent.contracts.samples import Quality, Sample, shortest_float32, shortest_float32s

# Bit patterns a device can send that are worth meeting on purpose: both zeros, both
# infinities, quiet and signalling NaNs with payloads, the largest and smallest normals and
# subnormals.
SPECIAL = [
    0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00000, 0x7F800001,
    0x7FBFFFFF, 0xFFFFFFFF, 0x7FC00001, 0x00000001, 0x807FFFFF, 0x00800000, 0x7F7FFFFF,
    0xFF7FFFFF, 0x3F800000, 0x3DCCCCCD,
]  # fmt: skip


def float_key(v: object) -> object:
    """Identity of a value for comparison: floats by their bits (NaN, -0.0), others as is."""
    return ("float", struct.pack("<d", v)) if isinstance(v, float) else (type(v).__name__, v)


def sample_key(s: Sample) -> tuple[object, ...]:
    return (s.tag, float_key(s.value), s.quality, s.acq_ns, s.source_ns, s.reason, s.raw)


def random_words(rng: random.Random, n: int) -> list[int]:
    """float32 bit patterns over every exponent, with specials, subnormals and instrument-like
    values (a few decimals, which round-trip at six digits)."""
    words = []
    for _ in range(n):
        r = rng.random()
        if r < 0.05:
            words.append(rng.choice(SPECIAL))
        elif r < 0.15:  # subnormal, either sign
            words.append(rng.getrandbits(23) | rng.getrandbits(1) << 31)
        elif r < 0.45:
            value = round(rng.uniform(-5000, 5000), rng.randint(0, 4))
            words.append(int.from_bytes(struct.pack(">f", value), "big"))
        else:
            words.append(rng.getrandbits(32))
    return words


def as_floats(words: Sequence[int]) -> tuple[float, ...]:
    return struct.unpack(f">{len(words)}f", struct.pack(f">{len(words)}I", *words))


@pytest.mark.parametrize("seed", range(4))
def test_shortest_float32s_is_shortest_float32_for_each_value(seed: int) -> None:
    """About a million values over four seeds, in blocks of every length up to 125."""
    rng = random.Random(seed)
    checked = 0
    while checked < 250_000:
        xs = as_floats(random_words(rng, rng.randint(0, 125)))
        got = shortest_float32s(xs)
        assert list(map(float_key, got)) == [float_key(shortest_float32(x)) for x in xs], xs
        checked += len(xs)


def test_shortest_float32s_keeps_every_special_pattern() -> None:
    xs = as_floats(SPECIAL * 3)
    assert list(map(float_key, shortest_float32s(xs))) == [
        float_key(shortest_float32(x)) for x in xs
    ]
    assert shortest_float32s(()) == []


def test_shortest_float32s_every_exponent_and_sign() -> None:
    """Every one of the 512 sign and exponent combinations, with random mantissas."""
    rng = random.Random(7)
    words = [
        (sign << 31) | (exponent << 23) | rng.getrandbits(23)
        for sign in (0, 1)
        for exponent in range(256)
        for _ in range(40)
    ]
    xs = as_floats(words)
    assert list(map(float_key, shortest_float32s(xs))) == [
        float_key(shortest_float32(x)) for x in xs
    ]


# ------------------------------------------------------------------------------ the block decode

TYPES = ["int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64"]


def random_layout(rng: random.Random) -> list[ModbusTag]:
    """Tags packed into at most 125 registers: runs of one layout, mixed types, bits, strings."""
    tags: list[ModbusTag] = []
    address = 0
    while True:
        kind = rng.choice([*TYPES, "float32", "float32", "bit", "bool", "string"])
        run = rng.randint(1, 12)
        order = rng.choice(["ABCD", "CDAB", "BADC", "DCBA"])
        scaled = rng.random() < 0.3
        extra: dict[str, object] = {"type": kind, "byte_order": order}
        if scaled and kind not in ("bit", "bool", "string"):
            extra |= {"scale": rng.choice([0.1, 2.5, -1.0]), "offset": rng.choice([0.0, -40.0])}
        if kind == "string":
            extra["length"] = rng.randint(1, 4)
        if kind == "bit":
            extra["bit"] = rng.randint(0, 15)
        for _ in range(run):
            t = ModbusTag.model_validate({"id": f"t.v{len(tags)}", "address": address, **extra})
            if address + t.registers > 125:
                return tags
            tags.append(t)
            address += t.registers + (1 if rng.random() < 0.1 else 0)


def reference(tags: Sequence[ModbusTag], words: Sequence[int], acq: int) -> list[Sample]:
    """Each tag decoded on its own registers; a non-finite float is Bad `not_finite`."""
    out = []
    for t in sorted(tags, key=lambda t: t.address):
        value = decode(t, words[t.address : t.address + t.registers])
        if isinstance(value, float) and not math.isfinite(value):
            out.append(Sample(t.id, None, Quality.BAD, acq, None, "not_finite"))
        else:
            out.append(Sample(t.id, value, Quality.GOOD, acq))
    return out


@pytest.mark.parametrize("seed", range(3))
def test_decode_block_is_the_per_tag_decode(seed: int) -> None:
    """Each layout reads a block, the same block again (the decoders remember the last bytes of
    each run), then a block that differs in some registers: every read equals the reference."""
    rng = random.Random(100 + seed)
    for _ in range(300):
        tags = random_layout(rng)
        if not tags:
            continue
        (request,) = merge(tags, max_gap=1, max_registers=125)
        segments = block_segments(request.tags, request.start)
        words = [w >> 16 for w in random_words(rng, request.count)]
        words = [w if rng.random() < 0.5 else rng.getrandbits(16) for w in words]
        changed = [w if rng.random() < 0.8 else rng.getrandbits(16) for w in words]
        for acq, block in enumerate([words, words, changed, words]):
            got = _decode_block(segments, block, request, acq)
            want = reference(tags, [0] * request.start + block, acq)
            assert list(map(sample_key, got)) == list(map(sample_key, want))
