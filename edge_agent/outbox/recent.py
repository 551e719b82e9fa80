"""The outbox's recently committed batches, decoded, so that sinks keeping up never read SQLite.

Every existing batch with an id above `floor` is held here; a sink whose cursor is at or above
the floor reads from memory, one further behind reads the file. Bounded by a sample count: the
oldest batches leave first and raise the floor.
"""

from __future__ import annotations

from collections import OrderedDict

from edge_agent.contracts.samples import Sample
from edge_agent.outbox.format import Batch

RECENT_CACHE_SAMPLES = 100_000  # decoded batches kept for sinks that keep up (~10 s at 10k/s)


class RecentBatches:
    """Worker thread only."""

    def __init__(self, limit_samples: int = RECENT_CACHE_SAMPLES) -> None:
        self.limit_samples = limit_samples
        self.floor = 0
        self._batches: OrderedDict[int, list[Sample]] = OrderedDict()
        self._samples = 0

    def add(self, batch_id: int, samples: list[Sample]) -> None:
        """A batch just committed (ids ascending)."""
        self._batches[batch_id] = samples
        self._samples += len(samples)
        while self._samples > self.limit_samples and len(self._batches) > 1:
            oldest, dropped = self._batches.popitem(last=False)
            self._samples -= len(dropped)
            self.floor = oldest

    def forget(self, upto: int) -> None:
        """Batches up to `upto` are gone from the file (confirmed by all, or capped)."""
        while self._batches and next(iter(self._batches)) <= upto:
            _, samples = self._batches.popitem(last=False)
            self._samples -= len(samples)
        self.floor = max(self.floor, upto)

    def after(self, acked: int, max_samples: int) -> list[Batch] | None:
        """The batches after `acked` (about `max_samples` samples, at least one), or None when
        some of them are no longer held and the file must be read."""
        if acked < self.floor:
            return None
        batches: list[Batch] = []
        total = 0
        for batch_id, samples in self._batches.items():
            if batch_id <= acked:
                continue
            if batches and total + len(samples) > max_samples:
                break
            batches.append(Batch(batch_id, samples))
            total += len(samples)
        return batches
