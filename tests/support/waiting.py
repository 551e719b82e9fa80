"""Polling a condition with a deadline, for states that no event announces.

Tests await events where they can; where nothing can be awaited (the plant moves on its own
clock, a counter in another task), they poll with `eventually`, which fails naming what it
waited for instead of hanging until the suite's timeout.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable


async def eventually(
    condition: Callable[[], object], timeout_s: float, what: str, *, interval_s: float = 0.02
) -> None:
    """Return once `condition()` is truthy (it may also return an awaitable, which is awaited)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(interval_s)
