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

    def snapshot(self) -> dict[str, Sample]:
        return dict(self._latest)
