"""The outbox's row encoding (edge_agent/outbox/format.py): the shared-time layout of schema 4
decodes to exactly the samples given, as the full rows of schema 3 did (kept here as the
reference), and files written with those full rows stay readable."""

from __future__ import annotations

import math
import pickle
import random
import sqlite3
from pathlib import Path

from edge_agent.contracts.samples import Quality, Sample, Value
from edge_agent.outbox import Outbox
from edge_agent.outbox.format import ENCODING_PICKLE_ROWS, decode, encode

T0 = 1_795_000_000_000_000_000
CODE = {Quality.GOOD: 0, Quality.UNCERTAIN: 1, Quality.BAD: 2}


def full_rows(samples: list[Sample]) -> bytes:
    """Schema 3's encoding, as it was: one full tuple per sample, pickled with the memo."""
    rows = [
        (s.tag, s.value, CODE[s.quality], s.acq_ns, s.source_ns, s.reason)
        if s.raw is None
        else (s.tag, s.value, CODE[s.quality], s.acq_ns, s.source_ns, s.reason, s.raw)
        for s in samples
    ]
    return pickle.dumps(rows, protocol=5)


def exact(samples: list[Sample]) -> list[tuple[object, ...]]:
    """Every field with its type; repr tells NaN, -0.0, 1 and True apart, as == does not."""
    return [
        tuple((type(v).__name__, repr(v)) for v in (s.tag, s.value, s.quality, s.acq_ns,
                                                     s.source_ns, s.reason, s.raw))
        for s in samples
    ]  # fmt: skip


def value(rng: random.Random) -> Value | None:
    return rng.choice(
        [1.5, -0.0, 0.0, math.nan, math.inf, -math.inf, 5e-324, 7, 2**70, True, False, None,
         "tapping", "é\"\\\n😀", rng.uniform(-1e6, 1e6)]
    )  # fmt: skip


def batch(rng: random.Random) -> list[Sample]:
    acq = rng.choice([T0, T0 + 1])
    out = []
    for i in range(rng.randint(0, 30)):
        shared = rng.random() < 0.6  # most samples of a read share everything but tag and value
        out.append(
            Sample(
                rng.choice([f"fsf.t{i}", "fsf.é", "_alarms.x"]),
                value(rng),
                Quality.GOOD if shared else rng.choice(list(Quality)),
                acq if shared else rng.choice([acq, T0 + 5]),
                None if shared else rng.choice([None, T0 - 3]),
                None if shared else rng.choice([None, "stale_input", ""]),
                None if shared else rng.choice([None, 3000.0, -1, math.nan, "x"]),
            )
        )
    return out


def test_random_batches_decode_to_exactly_what_was_encoded_in_both_encodings() -> None:
    rng = random.Random(4)
    for _ in range(3000):
        samples = batch(rng)
        assert exact(decode(encode(samples))) == exact(samples)
        assert exact(decode(full_rows(samples), ENCODING_PICKLE_ROWS)) == exact(samples)


def test_a_healthy_read_is_smaller_than_with_full_rows() -> None:
    samples = [Sample(f"fsf.t{i}", 1000.0 + i, Quality.GOOD, T0) for i in range(500)]
    assert len(encode(samples)) < 0.75 * len(full_rows(samples))


async def test_a_schema_3_file_with_full_rows_is_read_and_extended(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    box = await Outbox.open(path, ["mqtt"])
    await box.close()
    old = [Sample(f"fsf.t{i}", float(i), Quality.GOOD, T0) for i in range(3)]
    db = sqlite3.connect(path)
    db.execute(
        "INSERT INTO batch (created_ns, payload, samples, nbytes, encoding) VALUES (1, ?, 3, 0, ?)",
        (full_rows(old), ENCODING_PICKLE_ROWS),
    )
    db.execute("PRAGMA user_version = 3")
    db.commit()
    db.close()

    box = await Outbox.open(path, ["mqtt"])
    try:
        new = [Sample("fsf.t9", 9.5, Quality.GOOD, T0 + 1), Sample.bad("fsf.t8", "timeout", T0)]
        await box.append(new)
        await box.close()  # from the file, not the in-memory copy of recent batches
        box = await Outbox.open(path, ["mqtt"])
        got = await box.cursor("mqtt").read()
        assert [exact(b.samples) for b in got] == [exact(old), exact(new)]
    finally:
        await box.close()
