"""The agent's heartbeat to the DCS: an incrementing counter written at a fixed rate.

The DCS watches the counter; when it stops changing for longer than the DCS's own timeout, the DCS
drops the advisor permissive and falls back to its own control. So the heartbeat must stop not
only when the agent dies but also when it can no longer see the plant (acquisition unhealthy) or
can no longer think about it (advisor unhealthy): a live counter would otherwise vouch for an
agent writing from stale data. It is written straight through the driver, outside the guard and
the audit (one line a second would drown the record of real setpoint writes).
"""

from __future__ import annotations

import asyncio

import structlog

from drivers.base import DriverError
from edge_agent.control.executor import TagWriter
from edge_agent.control.guard import HealthCheck

log = structlog.get_logger("edge_agent.control")


class Heartbeat:
    def __init__(
        self,
        tag: str,
        interval_s: float,
        wrap_at: int,
        writer: TagWriter,
        health: HealthCheck,
    ) -> None:
        self.tag = tag
        self._interval_s = interval_s
        self._wrap_at = max(1, wrap_at)
        self._writer = writer
        self._health = health
        self.counter = 0
        self.beating = False

    async def run(self) -> None:
        """Beat on a fixed schedule that does not drift; skip beats while unhealthy."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            await self.beat()
            next_at += self._interval_s
            delay = next_at - loop.time()
            if delay < 0:  # overran (slow write): resume the schedule from now, no burst
                next_at, delay = loop.time(), 0.0
            await asyncio.sleep(delay)

    async def beat(self) -> bool:
        """One tick: write counter+1 when healthy. Returns whether it wrote."""
        unhealthy = self._health()
        if unhealthy is not None:
            if self.beating:
                log.warning("heartbeat_stopped", tag=self.tag, reason=unhealthy)
            self.beating = False
            return False
        value = self.counter % self._wrap_at + 1
        try:
            await asyncio.wait_for(self._writer.write(self.tag, value), self._interval_s)
        except (TimeoutError, DriverError) as exc:
            return self._lost(str(exc) or type(exc).__name__)
        self.counter = value
        if not self.beating:
            log.info("heartbeat_started", tag=self.tag, value=value)
        self.beating = True
        return True

    def _lost(self, reason: str) -> bool:
        if self.beating:
            log.warning("heartbeat_write_failed", tag=self.tag, reason=reason)
        self.beating = False
        return False
