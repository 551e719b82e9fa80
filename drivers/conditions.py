"""Faults that last, logged readably: one line when they start, a summary while they last, one
line when they end.

A broker outage is thousands of failed reconnect attempts and a full outbox is a drop on every
append; a line each buries the one line an engineer needs. `Condition` turns a stream of
occurrences into: a warning at the first (`{event}`), at most one summary per `summary_every_s`
with the count so far (`{event}_continuing`), and one info line when it clears
(`{event}_cleared`, with the total and how long it lasted). It holds no logger: `emit(level,
event, **fields)` is the caller's (structlog in the agent, stdlib logging in the drivers), so it
sits at the bottom where everybody can use it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

Emit = Callable[..., None]  # emit(level: str, event: str, **fields)

SUMMARY_EVERY_S = 60.0


class Condition:
    def __init__(
        self,
        event: str,
        emit: Emit,
        *,
        level: str = "warning",
        summary_every_s: float = SUMMARY_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.event = event
        self.level = level
        self.summary_every_s = summary_every_s
        self._emit = emit
        self._clock = clock
        self.active = False
        self.occurrences = 0
        self._since = 0.0
        self._summarised = 0.0
        self._counts: dict[str, float] = {}

    def occurred(self, count: dict[str, float] | None = None, **fields: Any) -> None:
        """One more occurrence; `count` adds up numbers across them (e.g. dropped samples)."""
        now = self._clock()
        for key, value in (count or {}).items():
            self._counts[key] = self._counts.get(key, 0) + value
        if not self.active:
            self.active, self.occurrences = True, 1
            self._since = self._summarised = now
            self._emit(self.level, self.event, **(count or {}), **fields)
            return
        self.occurrences += 1
        if now - self._summarised >= self.summary_every_s:
            self._summarised = now
            self._emit(
                self.level,
                f"{self.event}_continuing",
                occurrences=self.occurrences,
                for_s=round(now - self._since, 1),
                **self._counts,
                **fields,
            )

    def cleared(self, **fields: Any) -> None:
        """The condition is over (no-op if it was not active)."""
        if not self.active:
            return
        self._emit(
            "info",
            f"{self.event}_cleared",
            occurrences=self.occurrences,
            lasted_s=round(self._clock() - self._since, 1),
            **self._counts,
            **fields,
        )
        self.active, self.occurrences, self._counts = False, 0, {}
