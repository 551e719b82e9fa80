"""The quality gate (`quality_from`) over whole batches: a source without rules hands its batch
on as it is, and with rules the gate gives exactly what the straightforward per-sample veto
gives, over random batches and random TagStore contents."""

from __future__ import annotations

import random

from edge_agent.acquisition import QualityGate
from edge_agent.config.sources import QualityFrom
from edge_agent.contracts.samples import Quality, Sample
from edge_agent.pipeline import SampleBus
from edge_agent.tagstore import TagStore
from tests.support.random_samples import TAGS, random_batch, random_sample

S = 1_000_000_000


def reference(
    rules: dict[str, QualityFrom], store: TagStore, samples: list[Sample]
) -> list[Sample]:
    """Each sample on its own: its status tag's newest sample in the batch, else in the store."""
    out = []
    for s in samples:
        rule = rules.get(s.tag)
        if rule is None or s.quality is Quality.BAD:
            out.append(s)
            continue
        in_batch = [x for x in samples if x.tag == rule.tag]
        status = in_batch[-1] if in_batch else store.get(rule.tag)
        if status is None or not status.good or not isinstance(status.value, int | bool):
            out.append(Sample(s.tag, s.value, Quality.UNCERTAIN, s.acq_ns, s.source_ns,
                              f"status_unknown {rule.tag}"))  # fmt: skip
        elif int(status.value) & rule.mask:
            quality = Quality(rule.quality)
            value = None if quality is Quality.BAD else s.value
            out.append(Sample(s.tag, value, quality, s.acq_ns, s.source_ns,
                              f"device_status {rule.tag}={status.value}"))  # fmt: skip
        else:
            out.append(s)
    return out


def test_gate_and_reference_give_the_same_samples() -> None:
    rng = random.Random(19)
    for case in range(300):
        rules: dict[str, QualityFrom] = {}
        if case % 2:
            for tag in rng.sample(TAGS, rng.randint(1, 3)):
                status = rng.choice([t for t in TAGS if t != tag])
                quality = rng.choice(["uncertain", "bad"])
                mask = rng.choice([1, 7, 0x8000])
                rules[tag] = QualityFrom(tag=status, mask=mask, quality=quality)
        store = TagStore()
        store.update([random_sample(rng, t, 0) for t in TAGS if rng.random() < 0.5])
        gate = QualityGate(rules, SampleBus(store))
        t = 1_800_000_000 * S
        for _ in range(20):
            t += rng.choice([1, S // 10, S])
            batch = random_batch(rng, t)
            got = gate.apply(batch)
            assert list(got) == reference(rules, store, batch), case
            if not rules:
                assert got is batch  # no rule: the batch itself, not a copy
            store.update(got)
