"""A sink's cursor on the outbox: read what it has not confirmed, then confirm."""

from __future__ import annotations

import asyncio
from typing import Protocol

from edge_agent.outbox.format import Batch
from edge_agent.outbox.state import OutboxState


class OutboxSide(Protocol):
    """The outbox as one sink's cursor sees it (`store.Outbox` hands each cursor one)."""

    sink: str
    state: OutboxState
    news: asyncio.Event  # set when batches were committed

    def read(self, max_samples: int, after: int) -> asyncio.Future[list[Batch]]: ...
    def ack(self, batch_id: int) -> asyncio.Future[None]: ...


class Cursor:
    """A sink's view of the outbox: read the batches after its last confirmation, then ack."""

    def __init__(self, outbox: OutboxSide) -> None:
        self._outbox = outbox
        self.sink = outbox.sink

    @property
    def acked(self) -> int:
        return self._outbox.state.acked[self.sink]

    @property
    def lag_batches(self) -> int:
        return max(0, self._outbox.state.head_id - self.acked)

    async def read(
        self, max_samples: int = 5000, idle_s: float | None = None, after: int | None = None
    ) -> list[Batch]:
        """The oldest unconfirmed batches (at least one, about `max_samples` samples); with
        `after`, those after that batch id instead, so that a sink may read its next batches
        while the previous ones await confirmation.

        Waits for data; after `idle_s` seconds without any, returns an empty list.
        """
        event = self._outbox.news
        loop = asyncio.get_running_loop()
        deadline = None if idle_s is None else loop.time() + idle_s
        while True:
            event.clear()
            start = self.acked if after is None else max(after, self.acked)
            if self._outbox.state.head_id > start:
                batches = await self._outbox.read(max_samples, start)
                if batches:
                    return batches
            try:
                remaining = None if deadline is None else max(0.0, deadline - loop.time())
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                return []

    async def ack(self, batch_id: int) -> None:
        """Confirm every batch up to and including `batch_id`; they are replayed no more."""
        await self._outbox.ack(batch_id)
