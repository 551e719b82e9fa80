"""Supervised long-running tasks: one per source, KPI engine and sink.

A service that raises is logged and restarted with capped exponential backoff and jitter, while
the others keep running: a furnace analyser that drops off the network must not stop the
historian feed. The first failure of a streak is logged with its traceback, the repeats quietly.

Stopping is bounded: services are cancelled in `stop_order` groups (acquisition first, so that
nothing new enters the outbox; sinks last, so that they can finish what is in flight), all
within one shutdown timeout. A service that ignores cancellation is abandoned and reported, so it
cannot hang the agent's exit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import structlog

from drivers.backoff import Backoff
from edge_agent.contracts.status import ComponentStatus, StatusRegistry

log = structlog.get_logger(__name__)

# Conventional stop orders; lower stops first.
STOP_ACQUISITION = 0
STOP_KPI = 10
STOP_CONTROL = 20
STOP_SINKS = 30
STOP_HEALTH = 40


@dataclass(frozen=True)
class Service:
    """A named coroutine factory; `run()` is called again after each failure.

    `run()` returning normally means the service is done (it is not restarted).
    """

    name: str
    run: Callable[[], Awaitable[None]]
    stop_order: int = STOP_ACQUISITION


REPEATEDLY = 2  # failures in a row that make a restarting service unhealthy


@dataclass
class ServiceRecord:
    """How one service is doing, for /healthz, /metrics and STATUS= (on the status board).

    A streak of failures ends only when a run lasts `reset_after_s`: a service that fails again
    and again a few seconds after each start is restarting repeatedly, not recovered.
    """

    name: str
    restarts: int = 0
    failures: int = 0  # in the current streak
    last_error: str = ""
    run_started: float | None = None  # time.monotonic() of the current run
    waiting: bool = False  # between a failure and its restart
    finished: bool = False

    def state(self, reset_after_s: float) -> str:
        if self.finished:
            return "finished"
        if self.failures == 0 or self._recovered(reset_after_s):
            return "running"
        return "restarting"

    def healthy(self, reset_after_s: float) -> bool:
        return self.failures < REPEATEDLY or self._recovered(reset_after_s)

    def status(self, reset_after_s: float) -> ComponentStatus:
        """Restarting repeatedly is unhealthy, with the last error, whatever the service's own
        state object says (it may never get as far as saying anything)."""
        healthy = self.healthy(reset_after_s)
        return ComponentStatus(
            name=self.name,
            kind="service",
            state=self.state(reset_after_s),
            healthy=healthy,
            detail=self.last_error if self.failures else "",
            watched=False,
            counters={"restarts_total": float(self.restarts)},
            gauges={"consecutive_failures": float(self.failures)},
        )

    def _recovered(self, reset_after_s: float) -> bool:
        return (
            not self.waiting
            and self.run_started is not None
            and time.monotonic() - self.run_started >= reset_after_s
        )


class Supervisor:
    """Runs services as tasks, restarts the ones that fail, stops them all within a bound.

    Restart delays follow `backoff.delay_s(n)` for the n-th failure in a row (drivers/backoff.py:
    0.5 s doubling to 30 s, ±20 % jitter); a run that lasted `reset_after_s` counts as a recovery,
    so its next failure starts from the beginning again.
    """

    def __init__(
        self,
        services: Sequence[Service],
        *,
        backoff: Backoff | None = None,
        shutdown_timeout_s: float = 10.0,
        reset_after_s: float = 60.0,
        board: StatusRegistry | None = None,
    ) -> None:
        names = [s.name for s in services]
        if len(set(names)) != len(names):
            raise ValueError(f"service names must be unique: {names}")
        self.services = list(services)
        self.backoff = backoff or Backoff()
        self.reset_after_s = reset_after_s  # a run this long counts as a recovery
        self.shutdown_timeout_s = shutdown_timeout_s
        self.records = {name: ServiceRecord(name) for name in names}
        if board is not None:
            for record in self.records.values():
                board.add(_ServiceStatus(record, self))
        self._tasks: dict[str, asyncio.Task[None]] = {}

    @property
    def restarts(self) -> dict[str, int]:
        return {name: r.restarts for name, r in self.records.items()}

    def start(self) -> None:
        for service in self.services:
            self._tasks[service.name] = asyncio.create_task(
                self._keep_running(service), name=f"service:{service.name}"
            )

    def running(self) -> list[str]:
        return [name for name, task in self._tasks.items() if not task.done()]

    async def run_until(self, stop: asyncio.Event) -> bool:
        """Start everything, wait for `stop`, stop everything; True if all stopped in time."""
        self.start()
        await stop.wait()
        return await self.stop()

    async def stop(self) -> bool:
        """Cancel services by stop order within the shutdown timeout; True if all stopped."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.shutdown_timeout_s
        abandoned: list[str] = []
        for order in sorted({s.stop_order for s in self.services}):
            group = [
                self._tasks[s.name]
                for s in self.services
                if s.stop_order == order and s.name in self._tasks
            ]
            pending = await _cancel_until(group, deadline)
            abandoned += [t.get_name().removeprefix("service:") for t in pending]
        if abandoned:
            log.error(
                "services_did_not_stop",
                services=sorted(abandoned),
                shutdown_timeout_s=self.shutdown_timeout_s,
            )
        return not abandoned

    async def _keep_running(self, service: Service) -> None:
        loop = asyncio.get_running_loop()
        slog = log.bind(service=service.name)
        record = self.records[service.name]
        while True:
            started = loop.time()
            record.run_started, record.waiting = time.monotonic(), False
            slog.debug("service_starting", restarts=record.restarts)
            try:
                await service.run()
            except asyncio.CancelledError:
                slog.debug("service_stopped")
                raise
            except Exception as exc:
                if loop.time() - started >= self.reset_after_s:
                    record.failures = 0
                record.failures += 1
                record.last_error = f"{type(exc).__name__}: {exc}"
                record.waiting = True
                delay = self.backoff.delay_s(record.failures)
                if record.failures == 1:
                    slog.exception("service_failed", restart_in_s=round(delay, 3))
                else:
                    slog.warning(
                        "service_failed_again",
                        error=record.last_error,
                        failures=record.failures,
                        restart_in_s=round(delay, 3),
                    )
                record.restarts += 1
                await asyncio.sleep(delay)
                continue
            record.finished = True
            slog.info("service_finished")
            return


@dataclass(frozen=True)
class _ServiceStatus:
    record: ServiceRecord
    supervisor: Supervisor

    def status(self) -> ComponentStatus:
        return self.record.status(self.supervisor.reset_after_s)


async def _cancel_until(
    tasks: list[asyncio.Task[None]], deadline: float
) -> set[asyncio.Task[None]]:
    """Cancel until the tasks end or the deadline passes; returns those still running.

    Cancelling again matters: a cancellation can be lost inside a library (Python 3.11's
    `asyncio.wait_for` drops it when the awaited call completes at the same moment; some
    clients catch it while connecting), and the service then carries on as if nothing happened.
    Past the deadline, a group still gets one short look before it is abandoned.
    """
    loop = asyncio.get_running_loop()
    pending = {t for t in tasks if not t.done()}
    while pending:
        for task in pending:
            task.cancel()
        timeout = min(_RECANCEL_EVERY_S, max(deadline - loop.time(), 0.05))
        _, pending = await asyncio.wait(pending, timeout=timeout)
        if loop.time() >= deadline:
            break
    return pending


_RECANCEL_EVERY_S = 0.1
