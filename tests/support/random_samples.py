"""Random samples of every kind the bus carries, for equivalence tests of optimised code
against its straightforward reference: NaN, ±inf, None, text, flags, ints, Bad with and without
a value, Uncertain, the instrument's own time or none, a raw value, unicode tag ids."""

from __future__ import annotations

import math
import random

from edge_agent.contracts.samples import Quality, Sample, Value

TAGS = ["a.x", "a.y", "ü.temp°C", "b.flow", "b.state", "kpi.é", "b.status"]
ODD_VALUES: list[Value | None] = [math.nan, math.inf, -math.inf, None, "on", "", True, False]
INTS: list[Value] = [0, 1, 7, -3, 2**15, -(2**31), 65535]


def random_value(rng: random.Random) -> Value | None:
    roll = rng.random()
    if roll < 0.2:
        return rng.choice(ODD_VALUES)
    if roll < 0.4:
        return rng.choice(INTS)
    return rng.choice([rng.uniform(-1e3, 1e3), rng.uniform(-1e9, 1e9), 0.0, -0.0])


def random_sample(rng: random.Random, tag: str, acq_ns: int) -> Sample:
    quality = rng.choice([Quality.GOOD] * 6 + [Quality.UNCERTAIN, Quality.BAD])
    value = random_value(rng)
    if quality is Quality.BAD and rng.random() < 0.7:
        value = None  # a failed read (but Bad with a value occurs, from a server that sends one)
    source = None if rng.random() < 0.6 else acq_ns - rng.randint(0, 2 * 10**9)
    reason = rng.choice([None, None, "BadSensorFailure", "stale", "ünknown"])
    raw = rng.choice([None, None, 32768, 1.5, "x"])
    return Sample(tag, value, quality, acq_ns, source, reason, raw)


def random_batch(rng: random.Random, acq_ns: int, tags: list[str] = TAGS) -> list[Sample]:
    """1 to 12 samples of random tags (a tag may come twice), acquired at `acq_ns` or later."""
    batch = []
    for _ in range(rng.randint(1, 12)):
        batch.append(random_sample(rng, rng.choice(tags), acq_ns))
        if rng.random() < 0.2:
            acq_ns += rng.randint(1, 2 * 10**8)
    return batch
