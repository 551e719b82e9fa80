"""Supervisor: failing services restart with backoff, the others keep running, stop is bounded."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from structlog.testing import capture_logs

from drivers.backoff import Backoff
from edge_agent.supervisor import Service, Supervisor
from tests.support.waiting import eventually

FAST = Backoff(initial_s=0.001, max_s=0.004, jitter=0.0)


async def test_failing_service_restarts_while_another_keeps_running() -> None:
    attempts = 0
    healthy_ticks = 0
    recovered = asyncio.Event()

    async def flaky() -> None:
        nonlocal attempts
        attempts += 1
        if attempts <= 3:
            raise ConnectionError(f"gateway unreachable ({attempts})")
        recovered.set()
        await asyncio.Event().wait()

    async def steady() -> None:
        nonlocal healthy_ticks
        for _ in itertools.count():
            healthy_ticks += 1
            await asyncio.sleep(0)

    supervisor = Supervisor(
        [Service("offgas", flaky), Service("influx", steady)],
        backoff=FAST,
        shutdown_timeout_s=5,
    )
    with capture_logs() as logs:
        supervisor.start()
        await asyncio.wait_for(recovered.wait(), 5)
        ticks_at_recovery = healthy_ticks
        await asyncio.sleep(0.01)
        assert await supervisor.stop()

    assert attempts == 4
    assert supervisor.restarts == {"offgas": 3, "influx": 0}
    assert ticks_at_recovery > 0
    assert healthy_ticks > ticks_at_recovery
    failures = [e for e in logs if e["event"].startswith("service_failed")]
    assert [(e["event"], e["service"]) for e in failures] == [
        ("service_failed", "offgas"),  # the first with its traceback
        ("service_failed_again", "offgas"),
        ("service_failed_again", "offgas"),
    ]
    assert failures[0]["exc_info"] is True
    assert failures[2]["error"] == "ConnectionError: gateway unreachable (3)"
    assert failures[2]["failures"] == 3


async def test_long_healthy_run_resets_backoff() -> None:
    attempts = 0
    delays: list[int] = []

    class Recording(Backoff):
        def delay_s(self, failures: int, rand: object = None) -> float:
            delays.append(failures)
            return 0.0

    fourth_run = asyncio.Event()

    async def fails_after_a_while() -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 4:
            fourth_run.set()
            await asyncio.Event().wait()
        raise RuntimeError("boom")

    supervisor = Supervisor(
        [Service("kpi", fails_after_a_while)], backoff=Recording(), reset_after_s=0.0
    )
    supervisor.start()
    await asyncio.wait_for(fourth_run.wait(), 5)
    assert await supervisor.stop()
    assert delays == [1, 1, 1]  # every run counted as healthy: no growth


async def test_service_that_returns_is_not_restarted() -> None:
    calls = 0

    async def once() -> None:
        nonlocal calls
        calls += 1

    supervisor = Supervisor([Service("oneshot", once)], backoff=FAST)
    with capture_logs() as logs:
        supervisor.start()
        await eventually(lambda: not supervisor.running(), 5.0, "not supervisor.running()")
    assert calls == 1
    assert [e["event"] for e in logs if e["log_level"] == "info"] == ["service_finished"]
    assert await supervisor.stop()


async def test_stop_cancels_in_stop_order() -> None:
    stopped: list[str] = []

    def service(name: str, order: int) -> Service:
        async def run() -> None:
            try:
                await asyncio.Event().wait()
            finally:
                stopped.append(name)

        return Service(name, run, stop_order=order)

    supervisor = Supervisor([service("mqtt", 30), service("fsf", 0), service("kpi", 10)])
    supervisor.start()
    await asyncio.sleep(0)
    assert await supervisor.stop()
    assert stopped == ["fsf", "kpi", "mqtt"]


async def test_service_ignoring_cancellation_does_not_hang_stop() -> None:
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue  # a badly written driver swallowing cancellation

    async def polite() -> None:
        await asyncio.Event().wait()

    supervisor = Supervisor(
        [Service("stubborn", stubborn), Service("polite", polite, stop_order=30)],
        shutdown_timeout_s=0.1,
    )
    supervisor.start()
    await asyncio.sleep(0)
    with capture_logs() as logs:
        clean = await asyncio.wait_for(supervisor.stop(), 10)
    assert clean is False
    assert supervisor.running() == ["stubborn"]  # the polite one still got stopped
    [event] = [e for e in logs if e["event"] == "services_did_not_stop"]
    assert event["services"] == ["stubborn"]
    release.set()  # let the test's loop close cleanly


async def test_run_until_stops_on_event() -> None:
    stop = asyncio.Event()
    started = asyncio.Event()

    async def source() -> None:
        started.set()
        await asyncio.Event().wait()

    supervisor = Supervisor([Service("fsf", source)])
    task = asyncio.create_task(supervisor.run_until(stop))
    await asyncio.wait_for(started.wait(), 5)
    stop.set()
    assert await asyncio.wait_for(task, 10) is True


def test_service_names_must_be_unique() -> None:
    async def run() -> None:
        pass

    with pytest.raises(ValueError, match="unique"):
        Supervisor([Service("fsf", run), Service("fsf", run)])
