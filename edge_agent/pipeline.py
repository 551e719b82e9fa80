"""Where acquisition and the KPI engine hand over samples: latest-value store, then the outbox."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from edge_agent.contracts.samples import Sample
from edge_agent.tagstore import TagStore


class SampleWriter(Protocol):
    """The outbox's write side: commits a batch to disk (in a worker thread) before returning."""

    async def append(self, samples: Sequence[Sample]) -> None: ...


class SampleBus:
    """Fan-in point of the data flow. Acquisition and KPIs call `publish`; nothing else writes."""

    def __init__(self, store: TagStore, writer: SampleWriter | None = None) -> None:
        self.store = store
        self._writer = writer

    async def publish(self, samples: Sequence[Sample]) -> None:
        if not samples:
            return
        self.store.update(samples)
        if self._writer is not None:
            await self._writer.append(samples)

    async def record(self, samples: Sequence[Sample]) -> None:
        """History (samples of the past, e.g. a Sparkplug node's backlog): to the outbox only,
        so the databases get them with their own timestamps and the TagStore keeps the live
        value."""
        if samples and self._writer is not None:
            await self._writer.append(samples)
