"""The SampleBus: a tap that watches only some tags is skipped for a publisher whose tag set
holds none of them, and what every tap sees of its tags, and what the outbox gets, is exactly
what it is when every tap sees every batch (random batches, random tag sets)."""

from __future__ import annotations

import random
from collections.abc import Sequence

from edge_agent.contracts.samples import Quality, Sample
from edge_agent.pipeline import SampleBus
from edge_agent.tagstore import TagStore
from tests.support.random_samples import random_batch


class Writer:
    def __init__(self) -> None:
        self.batches: list[list[Sample]] = []

    async def append(self, samples: Sequence[Sample]) -> None:
        self.batches.append(list(samples))


class Watcher:
    """A tap that keeps what it sees of its tags and answers a record for each of them."""

    def __init__(self, tags: frozenset[str] | None) -> None:
        self.tags = tags
        self.seen: list[Sample] = []
        self.calls = 0

    def __call__(self, samples: Sequence[Sample]) -> Sequence[Sample]:
        self.calls += 1
        mine = [s for s in samples if self.tags is None or s.tag in self.tags]
        self.seen += mine
        return [Sample(f"_rec.{s.tag}", "r", Quality.GOOD, s.acq_ns) for s in mine]


async def test_a_tap_is_skipped_for_a_source_without_its_tags() -> None:
    bus = SampleBus(TagStore())
    alarms, everything = Watcher(frozenset({"a.x"})), Watcher(None)
    bus.add_tap(alarms, alarms.tags)
    bus.add_tap(everything)
    source_a, source_b = frozenset({"a.x", "a.y"}), frozenset({"b.z"})
    await bus.publish([Sample("b.z", 1.0, Quality.GOOD, 1)], source_b)
    assert (alarms.calls, everything.calls) == (0, 1)
    await bus.publish([Sample("a.y", 1.0, Quality.GOOD, 2)], source_a)
    await bus.publish([Sample("a.x", 1.0, Quality.GOOD, 3)])  # no tag set: every tap
    assert (alarms.calls, everything.calls) == (2, 3)
    assert [s.tag for s in alarms.seen] == ["a.x"]
    assert bus.store.get("b.z") is not None  # the TagStore takes every batch


async def test_routed_and_unrouted_buses_agree_over_random_batches() -> None:
    rng = random.Random(19)
    tags = ["a.x", "a.y", "ü.b", "b.z", "kpi.é", "c.1", "c.2"]
    for case in range(100):
        sources = [frozenset(rng.sample(tags, rng.randint(1, 4))) for _ in range(4)]
        watch_sets = [frozenset(rng.sample(tags, rng.randint(0, 3))) for _ in range(3)]
        routed_writer, plain_writer = Writer(), Writer()
        routed, plain = SampleBus(TagStore(), routed_writer), SampleBus(TagStore(), plain_writer)
        routed_taps = [Watcher(w) for w in watch_sets] + [Watcher(None)]
        plain_taps = [Watcher(w) for w in watch_sets] + [Watcher(None)]
        for tap in routed_taps:
            routed.add_tap(tap, tap.tags)
        for tap in plain_taps:
            plain.add_tap(tap)
        for k in range(30):
            source = rng.choice([*sources, None])
            batch = random_batch(rng, k, sorted(source or tags))
            await routed.publish(batch, source)
            await plain.publish(batch)
        assert routed_writer.batches == plain_writer.batches, case
        for r, p in zip(routed_taps, plain_taps, strict=True):
            assert r.seen == p.seen, case
        assert routed.store.snapshot() == plain.store.snapshot()
