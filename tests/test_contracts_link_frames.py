"""The worker link's frames: samples cross exactly (NaN, infinities, Bad, raw, unicode), nothing
but plain types is ever loaded, and a broken or oversized frame is refused with a clear error."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import pickle
import random

import pytest

from edge_agent.contracts.link_frames import (
    MAX_FRAME_BYTES,
    BatchDecoder,
    BatchEncoder,
    LinkError,
    apply_stats_row,
    decode_payload,
    encode_frame,
    read_frame,
    stats_row,
)
from edge_agent.contracts.samples import Quality, Sample
from edge_agent.contracts.status import SourceStats

VALUES: list[object] = [0.0, -0.0, 1.5, math.nan, math.inf, -math.inf, 7, -(2**63), True, False,
                        "läuft", "", None, 2**70]  # fmt: skip


def sample_rows(samples: list[Sample]) -> list[tuple[object, ...]]:
    """The straightforward reference: one plain tuple per sample, every field as it is."""
    return [(s.tag, s.value, s.quality.value, s.acq_ns, s.source_ns, s.reason, s.raw)
            for s in samples]  # fmt: skip


def crossed(frames: bytes, decoder: BatchDecoder) -> list[Sample]:
    """What the main process makes of the frames one `encode` call wrote."""
    out: list[Sample] = []
    while frames:
        size = int.from_bytes(frames[:4], "big")
        kind, body = decode_payload(frames[4 : 4 + size])
        frames = frames[4 + size :]
        if kind == "tags":
            decoder.learn(body)
        else:
            out = decoder.decode(body)
    return out


def random_samples(rng: random.Random, n: int) -> list[Sample]:
    if rng.random() < 0.3:  # one read: shared acquisition time, all Good, nothing else
        acq = rng.randrange(1, 2**63)
        return [Sample(f"d.t{i}", rng.random(), Quality.GOOD, acq) for i in range(n)]
    out = []
    for i in range(n):
        quality = rng.choice(list(Quality))
        out.append(
            Sample(
                rng.choice(["fsf.matte_temp", "ofen.temperatur_°C", f"t.{i}", "炉.温度"]),
                rng.choice(VALUES),
                quality,
                rng.randrange(1, 2**63),
                rng.choice([None, rng.randrange(0, 2**63)]),
                rng.choice([None, "out_of_range", "connection_lost", "ünicode"]),
                rng.choice([None, 1e300, -5, "raw", math.nan]),
            )
        )
    return out


def stream(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


def test_batches_cross_exactly() -> None:
    """Against the reference rows over many random batches, tag lists repeating as a source's
    do: the same fields of the same types (1, 1.0 and True stay apart), NaN's bits included."""
    rng = random.Random(19)
    encoder, decoder = BatchEncoder(), BatchDecoder()
    earlier: list[list[Sample]] = []
    for _ in range(500):
        samples = random_samples(rng, rng.randrange(0, 40))
        if earlier and rng.random() < 0.3:  # the next cycle of an earlier source
            tags = [s.tag for s in rng.choice(earlier)]
            fresh = random_samples(rng, len(tags))
            samples = [dataclasses.replace(s, tag=t) for t, s in zip(tags, fresh, strict=True)]
        earlier.append(samples)
        back = crossed(encoder.encode(rng.choice(["samples", "record"]), samples), decoder)
        # Pickled, byte for byte: NaN compares unequal to itself, its bits do not.
        assert pickle.dumps(sample_rows(back)) == pickle.dumps(sample_rows(samples))
        assert [tuple(map(type, r)) for r in sample_rows(back)] == [
            tuple(map(type, r)) for r in sample_rows(samples)]  # fmt: skip


def test_mixed_numbers_are_not_folded_into_one() -> None:
    """1 == 1.0 == True, so a column that folds equal values must not hold them."""
    samples = [Sample("a", 1, Quality.GOOD, 5, None, None, 1),
               Sample("b", 1.0, Quality.GOOD, 5, None, None, 1.0),
               Sample("c", True, Quality.GOOD, 5, None, None, True)]  # fmt: skip
    back = crossed(BatchEncoder().encode("samples", samples), BatchDecoder())
    assert [(type(s.value), type(s.raw)) for s in back] == [
        (int, int),
        (float, float),
        (bool, bool),
    ]


def test_a_tag_list_is_sent_once_and_reused() -> None:
    encoder, decoder = BatchEncoder(), BatchDecoder()
    batch = [Sample(f"d.t{i}", float(i), Quality.GOOD, 7) for i in range(5)]
    first = encoder.encode("samples", batch)
    second = encoder.encode("samples", batch)
    assert len(second) < len(first)  # no tags frame the second time
    a, b = crossed(first, decoder), crossed(second, decoder)
    assert all(x.tag is y.tag for x, y in zip(a, b, strict=True))  # hashed once downstream
    with pytest.raises(LinkError, match="never sent"):
        BatchDecoder().decode(decode_payload(second[4:])[1])


async def test_frames_are_read_in_order_and_end_cleanly() -> None:
    data = encode_frame("a", [1]) + encode_frame("b", ("x", None))
    reader = stream(data)
    assert await read_frame(reader) == ("a", [1])
    assert await read_frame(reader) == ("b", ("x", None))
    assert await read_frame(reader) is None


async def test_a_frame_cut_short_is_an_error_not_an_end() -> None:
    data = encode_frame("samples", sample_rows(random_samples(random.Random(1), 5)))
    with pytest.raises(LinkError, match="inside a frame"):
        await read_frame(stream(data[:-3]))
    with pytest.raises(LinkError, match="inside a frame header"):
        await read_frame(stream(data[:2]))


async def test_an_oversized_frame_is_refused_before_it_is_read() -> None:
    header = (MAX_FRAME_BYTES + 1).to_bytes(4, "big")
    with pytest.raises(LinkError, match=f"{MAX_FRAME_BYTES + 1} bytes exceeds"):
        await read_frame(stream(header))


def test_only_plain_types_are_loaded() -> None:
    sample = Sample("fsf.t", 1.0, Quality.GOOD, 1)
    for hostile in (("samples", [sample]), ("x", Quality.GOOD), ("x", print)):
        payload = pickle.dumps(hostile, protocol=5)
        with pytest.raises(LinkError, match="refused"):
            decode_payload(payload)
    with pytest.raises(LinkError, match="not \\(kind, body\\)"):
        decode_payload(pickle.dumps([1, 2]))
    with pytest.raises(LinkError, match="cannot be read"):
        decode_payload(b"\x80\x05garbage")


@pytest.mark.parametrize(
    "body",
    [
        {"a": 1},
        (0, [1.0]),  # not 7 columns
        (0, [1.0, 2.0], (0,), (1,), (None,), (None,), (None,)),  # 2 values for 1 tag
        (0, [1.0], (9,), (1,), (None,), (None,), (None,)),  # no such quality
        (0, [1.0], [0, 0], (1,), (None,), (None,), (None,)),  # a column for 2 tags
        (0, [1.0], (0,), "1", (None,), (None,), (None,)),  # neither one value nor a list
        (3, [1.0], (0,), (1,), (None,), (None,), (None,)),  # an unknown tag list
    ],
)
def test_malformed_batches_are_refused(body: object) -> None:
    decoder = BatchDecoder()
    decoder.learn((0, ("fsf.t",)))
    with pytest.raises(LinkError, match="worker link batch"):
        decoder.decode(body)
    with pytest.raises(LinkError, match="tags frame"):
        decoder.learn((1, ("ok", 5)))


def test_a_tag_list_naming_tags_of_no_source_of_the_worker_is_refused() -> None:
    decoder = BatchDecoder()
    own = frozenset({"fsf.a", "fsf.b"})
    decoder.learn((0, ("fsf.a", "fsf.b")), own)
    with pytest.raises(LinkError, match=r"no source of it: \['kiln.x'\]"):
        decoder.learn((1, ("fsf.a", "kiln.x")), own)
    with pytest.raises(LinkError, match="never sent"):  # the refused list was not learnt
        decoder.decode((1, [1.0, 2.0], (0,), (1,), (None,), (None,), (None,)))


def test_stats_carry_on_from_earlier_runs() -> None:
    worker = SourceStats("d0", "modbus", 62, connected=True, reads=10, samples=620, overruns=1,
                         connects=1, read_seconds_total=0.5, last_read_s=0.05)  # fmt: skip
    worker.read_latency.observe(0.05)
    mirror = SourceStats("d0", "modbus", 62)
    apply_stats_row(mirror, stats_row(worker))
    assert (mirror.reads, mirror.samples, mirror.connected) == (10, 620, True)
    base = SourceStats("d0", "modbus", 62, reads=100, samples=6200, connects=3,
                       connection_losses=2)  # fmt: skip
    base.read_latency.observe(1.0)
    apply_stats_row(mirror, stats_row(worker), base)
    assert (mirror.reads, mirror.samples, mirror.connects, mirror.connection_losses) == (
        110, 6820, 4, 2)  # fmt: skip
    assert mirror.read_latency.count == 2
    assert mirror.read_latency.sum == pytest.approx(1.05)
    with pytest.raises(LinkError, match="stats row"):
        apply_stats_row(mirror, ("d0", True))
