"""One thread that runs the outbox's jobs in order and hands each result to the event loop.

SQLite sees one connection in one thread, and the loop never blocks on the disk: the loop puts
a job on the queue and awaits its future; the thread runs it and settles the future on the loop.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class WorkerThread:
    def __init__(self, name: str) -> None:
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], asyncio.Future[Any]] | None] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        """Start the thread; jobs' results go to the running loop."""
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._work, name=self.name, daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Run the jobs already queued, then end the thread."""
        if self._thread is None:
            return
        self._jobs.put(None)
        await asyncio.to_thread(self._thread.join)
        self._thread = None

    def call(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """Queue `fn`; the future settles with its result or its exception."""
        assert self._loop is not None, f"{self.name} is not running"
        assert self._thread is not None, f"{self.name} is not running"
        fut: asyncio.Future[T] = self._loop.create_future()
        self._jobs.put((fn, fut))
        return fut

    def resolve(self, fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
        """Settle `fut` on the loop (from the thread); a future already done stays as it is."""

        def settle() -> None:
            if fut.done():
                return
            if exc is not None:
                fut.set_exception(exc)
            else:
                fut.set_result(result)

        assert self._loop is not None
        self._loop.call_soon_threadsafe(settle)

    def on_loop(self, fn: Callable[[], None]) -> None:
        """Run `fn` on the loop soon (from the thread)."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(fn)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            fn, fut = job
            try:
                result = fn()
            except BaseException as exc:  # handed to the awaiting coroutine
                self.resolve(fut, None, exc)
            else:
                self.resolve(fut, result, None)


def consume(fut: asyncio.Future[Any]) -> None:
    """Done-callback for a job nobody awaits: its error is retrieved (the appends got it)."""
    if not fut.cancelled():
        fut.exception()
