"""Where acquisition and the KPI engine hand over samples: latest-value store, then the outbox."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from edge_agent.contracts.samples import Sample
from edge_agent.tagstore import TagStore

# A synchronous look at each published batch (after the TagStore has it); the records it returns
# (alarm events) are written to the outbox in the same batch, right after the samples.
Tap = Callable[[Sequence[Sample]], Sequence[Sample]]


class SampleWriter(Protocol):
    """The outbox's write side: commits a batch to disk (in a worker thread) before returning."""

    async def append(self, samples: Sequence[Sample]) -> None: ...


class SampleBus:
    """Fan-in point of the data flow. Acquisition and KPIs call `publish`; nothing else writes."""

    def __init__(self, store: TagStore, writer: SampleWriter | None = None) -> None:
        self.store = store
        self._writer = writer
        self._taps: list[Tap] = []

    def add_tap(self, tap: Tap) -> None:
        """`tap` runs on the publisher's time, so it must be cheap (the alarms index by tag)."""
        self._taps.append(tap)

    async def publish(self, samples: Sequence[Sample]) -> None:
        if not samples:
            return
        self.store.update(samples)
        batch = samples
        for tap in self._taps:
            records = tap(samples)
            if records:
                batch = [*batch, *records]
        if self._writer is not None:
            await self._writer.append(batch)

    async def record(self, samples: Sequence[Sample]) -> None:
        """History (samples of the past, e.g. a Sparkplug node's backlog) and records that are not
        tag values (alarm events from the clock or an operator): to the outbox only, so the
        databases get them with their own timestamps and the TagStore keeps the live value."""
        if samples and self._writer is not None:
            await self._writer.append(samples)
