"""Plausibility over whole batches: the fast path (a source without limits hands its batch on
as it is) gives exactly what the straightforward per-sample check gives, with and without
limits, over random batches."""

from __future__ import annotations

import random

from edge_agent.contracts.samples import Sample
from edge_agent.plausibility import Plausibility, TagLimits
from tests.support.random_samples import TAGS, random_batch

S = 1_000_000_000


def reference(check: Plausibility, samples: list[Sample]) -> list[Sample]:
    """Every sample through the check of its tag, one at a time."""
    out = []
    for s in samples:
        lim = check.limits.get(s.tag)
        out.append(check._check(s, lim) if lim is not None and lim.checks_anything else s)
    return out


def random_limits(rng: random.Random) -> dict[str, TagLimits]:
    limits = {}
    for tag in rng.sample(TAGS, rng.randint(0, 3)):
        low = rng.choice([None, -500.0, 0])
        high = rng.choice([None, 500.0, 10**6])
        markers = frozenset(rng.sample([0, 7, 2**15, 65535, "on"], rng.randint(0, 2)))
        step = rng.choice([None, None, 50.0, 1e6])
        limits[tag] = TagLimits(low, high, markers, step)
    return {t: lim for t, lim in limits.items() if lim.checks_anything}


def test_fast_and_reference_paths_give_the_same_samples() -> None:
    rng = random.Random(19)
    for case in range(300):
        limits = random_limits(rng) if case % 2 else {}  # half the sources have none at all
        fast, slow = Plausibility(dict(limits)), Plausibility(dict(limits))
        t = 1_800_000_000 * S
        for _ in range(20):
            t += rng.choice([1, S // 10, S, 30 * S])
            batch = random_batch(rng, t)
            got = fast.apply(batch)
            expected = reference(slow, batch)
            assert list(got) == expected, case
            assert all(a is b or a == b for a, b in zip(got, expected, strict=True))
            assert [type(a.value) for a in got] == [type(b.value) for b in expected]
            assert fast._last == slow._last  # the step check's references move alike
        if not limits:
            assert got is batch  # no limit: the batch itself, not a copy
