"""The worker link's frames: samples cross exactly (NaN, infinities, Bad, raw, unicode), nothing
but plain types is ever loaded, and a broken or oversized frame is refused with a clear error."""

from __future__ import annotations

import asyncio
import math
import pickle
import random

import pytest

from edge_agent.contracts.link_frames import (
    MAX_FRAME_BYTES,
    LinkError,
    apply_stats_row,
    decode_payload,
    encode_frame,
    read_frame,
    sample_rows,
    samples_from_rows,
    stats_row,
)
from edge_agent.contracts.samples import Quality, Sample
from edge_agent.contracts.status import SourceStats

VALUES: list[object] = [0.0, -0.0, 1.5, math.nan, math.inf, -math.inf, 7, -(2**63), True, False,
                        "läuft", "", None, 2**70]  # fmt: skip


def random_samples(rng: random.Random, n: int) -> list[Sample]:
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


def test_samples_cross_exactly() -> None:
    rng = random.Random(19)
    for _ in range(200):
        samples = random_samples(rng, rng.randrange(0, 40))
        kind, rows = decode_payload(encode_frame("samples", sample_rows(samples))[4:])
        back = samples_from_rows(rows)
        assert kind == "samples"
        # Pickled again, byte for byte: NaN compares unequal to itself, its bits do not.
        assert pickle.dumps(sample_rows(back)) == pickle.dumps(sample_rows(samples))
        assert [type(s.value) for s in back] == [type(s.value) for s in samples]
        assert [s.quality for s in back] == [s.quality for s in samples]


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
    "rows",
    [{"a": 1}, [("t", 1.0)], [("t", 1.0, "excellent", 1, None, None, None)], [5]],
)
def test_malformed_rows_are_refused(rows: object) -> None:
    with pytest.raises(LinkError, match="sample"):
        samples_from_rows(rows)


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
