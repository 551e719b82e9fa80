"""Latest sample per tag: what the KPIs, the advisor, the control guard and the demo view read."""

from __future__ import annotations

from collections.abc import Iterable

from edge_agent.contracts.samples import Sample


class TagStore:
    """In-memory map tag id -> latest Sample. Only the event loop touches it (no lock needed)."""

    def __init__(self) -> None:
        self._latest: dict[str, Sample] = {}

    def update(self, samples: Iterable[Sample]) -> None:
        for s in samples:
            self._latest[s.tag] = s

    def get(self, tag: str) -> Sample | None:
        return self._latest.get(tag)

    def newest_acq_ns(self, tags: Iterable[str]) -> int:
        """The newest acquisition time among these tags' latest samples (0: none yet). A source's
        health reads it for all its tags on every status read, so the loop is the store's own."""
        latest, newest = self._latest, 0
        for tag in tags:
            sample = latest.get(tag)
            if sample is not None and sample.acq_ns > newest:
                newest = sample.acq_ns
        return newest

    def snapshot(self) -> dict[str, Sample]:
        return dict(self._latest)
