"""Where acquisition and the KPI engine hand over samples: latest-value store, then the outbox."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Protocol

from edge_agent.contracts.samples import Sample
from edge_agent.tagstore import TagStore

# A synchronous look at each published batch (after the TagStore has it); the records it returns
# (alarm events) are written to the outbox in the same batch, right after the samples.
Tap = Callable[[Sequence[Sample]], Sequence[Sample]]
_ROUTES_MAX = 1024  # tag sets remembered (one per source in practice)


class SampleWriter(Protocol):
    """The outbox's write side: commits a batch to disk (in a worker thread) before returning."""

    async def append(self, samples: Sequence[Sample]) -> None: ...


class SampleBus:
    """Fan-in point of the data flow. Acquisition and KPIs call `publish`; nothing else writes."""

    def __init__(self, store: TagStore, writer: SampleWriter | None = None) -> None:
        self.store = store
        self._writer = writer
        self._taps: list[Tap] = []
        self._watches: list[frozenset[str] | None] = []  # per tap: the only tags it looks at
        # A publisher's tag set -> the taps that watch any of its tags (see `publish`).
        self._routes: dict[frozenset[str], list[Tap]] = {}

    def add_tap(self, tap: Tap, watches: Collection[str] | None = None) -> None:
        """`tap` runs on the publisher's time, so it must be cheap (the alarms index by tag).
        `watches`: the only tags it looks at (None: every sample), so that a source with none
        of them does not pay a step per sample for it."""
        self._taps.append(tap)
        self._watches.append(None if watches is None else frozenset(watches))
        self._routes.clear()

    async def publish(self, samples: Sequence[Sample], tags: frozenset[str] | None = None) -> None:
        """Into the TagStore, past the taps, into the outbox (awaited: committed on return).

        `tags` is a publisher's promise that the batch holds samples of these tags only (a
        source passes the same set of its own tags every time): the taps that watch none of
        them are skipped, decided once per set rather than once per sample."""
        if not samples:
            return
        self.store.update(samples)
        batch = samples
        for tap in self._taps if tags is None else self._taps_for(tags):
            records = tap(samples)
            if records:
                batch = [*batch, *records]
        if self._writer is not None:
            await self._writer.append(batch)

    def _taps_for(self, tags: frozenset[str]) -> list[Tap]:
        taps = self._routes.get(tags)
        if taps is None:
            if len(self._routes) >= _ROUTES_MAX:  # a publisher that builds a new set each time
                self._routes.clear()
            taps = self._routes[tags] = [
                tap
                for tap, watches in zip(self._taps, self._watches, strict=True)
                if watches is None or not watches.isdisjoint(tags)
            ]
        return taps

    async def record(self, samples: Sequence[Sample]) -> None:
        """History (samples of the past, e.g. a Sparkplug node's backlog) and records that are not
        tag values (alarm events from the clock or an operator): to the outbox only, so the
        databases get them with their own timestamps and the TagStore keeps the live value."""
        if samples and self._writer is not None:
            await self._writer.append(samples)
