"""Supervised long-running tasks: one per source, KPI engine and sink.

A service that raises is logged and restarted with capped exponential backoff and jitter, while
the others keep running. (Restart policy and shutdown: issue 2.)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Service:
    """A named coroutine factory; `run()` is called again after each failure."""

    name: str
    run: Callable[[], Awaitable[None]]
