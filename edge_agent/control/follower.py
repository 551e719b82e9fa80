"""Closed loop: turns the advisor's recommendations into guarded setpoint writes.

Each `[[control.allow]]` entry that names a `recommendation` tag and allows the `advisor` origin
is followed: every `control.advisor_interval_s` the recommended value is offered to the guard. A
recommendation is valid when its sample is Good (the advisor publishes `hold` as not Good) and
fresh. The follower previews the guard's answer and stays quiet while nothing changes: the same
refusal for the same reason is audited once, not every cycle, and a setpoint already at the
recommended value is not written again.
"""

from __future__ import annotations

import asyncio
import itertools
import math

from edge_agent.config import ControlAllow, ControlSection
from edge_agent.contracts.samples import now_ns
from edge_agent.control.executor import Executor
from edge_agent.control.guard import Origin, Refusal, WriteRequest
from edge_agent.tagstore import TagStore

_NS = 1_000_000_000


class AdvisorFollower:
    def __init__(
        self,
        section: ControlSection,
        store: TagStore,
        executor: Executor,
        recommendation_max_age_s: float,
    ) -> None:
        self._entries = [
            e for e in section.allow if e.recommendation is not None and "advisor" in e.origins
        ]
        self._interval_s = section.advisor_interval_s
        self._store = store
        self._executor = executor
        self._max_age_ns = int(recommendation_max_age_s * _NS)
        self._last_refusal: dict[str, Refusal | None] = {}
        self._ids = itertools.count(1)

    @property
    def entries(self) -> list[ControlAllow]:
        return self._entries

    async def run(self) -> None:
        while True:
            await self.cycle()
            await asyncio.sleep(self._interval_s)

    async def cycle(self) -> None:
        for entry in self._entries:
            request = self._request(entry)
            if request is not None:
                await self._offer(request)

    def _request(self, entry: ControlAllow) -> WriteRequest | None:
        assert entry.recommendation is not None
        sample = self._store.get(entry.recommendation)
        if sample is None:
            return None  # the advisor has said nothing yet: nothing to follow, nothing to refuse
        fresh = now_ns() - sample.acq_ns <= self._max_age_ns
        return WriteRequest(
            Origin.ADVISOR,
            entry.tag,
            sample.value,
            request_id=f"advisor-{next(self._ids)}",
            recommendation_valid=sample.good and fresh,
        )

    async def _offer(self, request: WriteRequest) -> None:
        preview = self._executor.guard.evaluate(request, now_ns(), commit=False)
        if preview.accepted:
            assert preview.value is not None
            if _unchanged(preview.previous, preview.value):
                return
        elif preview.refusal == self._last_refusal.get(request.tag):
            return
        outcome = await self._executor.submit(request)
        self._last_refusal[request.tag] = (
            Refusal(outcome.reason) if outcome.result == "refused" and outcome.reason else None
        )


def _unchanged(previous: object, value: float) -> bool:
    return (
        isinstance(previous, int | float)
        and not isinstance(previous, bool)
        and math.isclose(float(previous), value, rel_tol=1e-9, abs_tol=1e-9)
    )
