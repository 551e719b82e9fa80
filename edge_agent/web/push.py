"""Server-Sent Events: one stream per browser, a snapshot on connect, then the changes.

Why SSE and not a WebSocket: the view is read-only, so the stream only flows one way; the
browser's `EventSource` reconnects by itself (after an agent restart, too), carries the page's
own credentials (Basic auth or none), and needs no protocol upgrade through a plant's proxies.

Each connected browser has its own "dirty" map: the latest sample of every tag that changed since
its last push. The bus's subscriber (`LiveFeed.record`) only stores references into those maps,
which keeps the hot path cheap; the encoding happens at most every `push_interval_s` per browser,
and a tag that changed ten times in between is sent once, with its newest value. A browser that
cannot keep up is not buffered without bound: its map simply holds one entry per tag.

Wire format (JSON in the `data:` field), one array per tag: `[value, quality, reason, ts_ms,
acq_ms]` with quality "g", "u" or "b". Events: `snapshot` (every tag, on connect), `tags`
(changes), each with the server's clock `now` so the page computes ages without trusting its own.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Iterable, Mapping
from typing import Any

import structlog
from aiohttp import web

from edge_agent.contracts.samples import Sample, now_ns
from edge_agent.tagstore import TagStore

log = structlog.get_logger(__name__)

_Q = {"good": "g", "uncertain": "u", "bad": "b"}
KEEPALIVE_S = 15.0  # a comment line this often lets both ends notice a dead connection
RETRY_MS = 1000  # how soon EventSource reconnects after the agent went away


def encode_sample(s: Sample) -> list[Any]:
    value: Any = s.value
    if isinstance(value, float) and not math.isfinite(value):
        value = str(value)  # JSON has no NaN; the page shows the word
    return [value, _Q[s.quality.value], s.reason, s.ts_ns // 1_000_000, s.acq_ns // 1_000_000]


def encode_event(event: str, samples: Iterable[Sample], extra: Mapping[str, Any]) -> bytes:
    body = {
        "now": now_ns() // 1_000_000,
        **extra,
        "tags": {s.tag: encode_sample(s) for s in samples},
    }
    data = json.dumps(body, separators=(",", ":"), allow_nan=False)
    return f"event: {event}\ndata: {data}\n\n".encode()


class _Client:
    __slots__ = ("changed", "dirty")

    def __init__(self) -> None:
        self.dirty: dict[str, Sample] = {}
        self.changed = asyncio.Event()


class LiveFeed:
    """The bus subscriber for the push streams, and the stream handler itself."""

    def __init__(
        self, store: TagStore, push_interval_s: float, max_clients: int, hello: Mapping[str, Any]
    ) -> None:
        self._store = store
        self._interval_s = push_interval_s
        self._max_clients = max_clients
        self._hello = dict(hello)
        self._clients: set[_Client] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.pushed_events = 0

    @property
    def clients(self) -> int:
        return len(self._clients)

    def record(self, samples: Iterable[Sample]) -> None:
        """The SampleBus calls this for every batch; with no browser connected it costs nothing."""
        if not self._clients:
            return
        batch = list(samples)
        for client in self._clients:
            dirty = client.dirty
            for s in batch:
                dirty[s.tag] = s
            client.changed.set()

    async def stream(self, request: web.Request) -> web.StreamResponse:
        if len(self._clients) >= self._max_clients:
            raise web.HTTPServiceUnavailable(
                text=f"{self._max_clients} browsers are connected already (web.max_clients)"
            )
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        client = _Client()
        self._clients.add(client)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        peer = request.remote
        log.info("web_stream_opened", peer=peer, clients=len(self._clients))
        try:
            await response.write(f"retry: {RETRY_MS}\n\n".encode())
            snapshot = self._store.snapshot().values()
            await response.write(encode_event("snapshot", snapshot, self._hello))
            await self._pump(response, client)
        except (ConnectionResetError, ConnectionError):
            pass
        finally:
            self._clients.discard(client)
            if task is not None:
                self._tasks.discard(task)
            log.info("web_stream_closed", peer=peer, clients=len(self._clients))
        return response

    async def close(self, _: web.Application) -> None:
        """aiohttp's on_shutdown: end the open streams, which would otherwise hold the server's
        graceful stop for its whole timeout (the browsers reconnect to the next agent)."""
        for task in list(self._tasks):
            task.cancel()

    async def _pump(self, response: web.StreamResponse, client: _Client) -> None:
        last = time.monotonic()
        while True:
            try:
                await asyncio.wait_for(client.changed.wait(), KEEPALIVE_S)
            except TimeoutError:
                await response.write(b": keepalive\n\n")
                continue
            wait = self._interval_s - (time.monotonic() - last)
            if wait > 0:
                await asyncio.sleep(wait)  # gather what else changes within this push interval
            client.changed.clear()
            batch, client.dirty = client.dirty, {}
            last = time.monotonic()
            await response.write(encode_event("tags", batch.values(), {}))
            self.pushed_events += 1
