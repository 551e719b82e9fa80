"""The acquisition loop against a scripted fake driver (pure logic; the real drivers are tested
against the simulators in test_drivers_opcua.py and test_drivers_modbus.py)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from drivers.backoff import Backoff
from drivers.base import DriverConnectionError
from edge_agent import acquisition
from edge_agent.acquisition import Acquisition, SourcePoller, build_services
from edge_agent.config import AgentConfig, ModbusSource, Source
from edge_agent.contracts.samples import Quality, Sample, Value, now_ns
from edge_agent.pipeline import SampleBus
from edge_agent.status_board import StatusBoard
from edge_agent.tagstore import TagStore
from tests.support.waiting import eventually


def modbus_source(**kw: object) -> ModbusSource:
    return ModbusSource.model_validate(
        {
            "name": "offgas",
            "protocol": "modbus",
            "endpoint": "tcp://127.0.0.1:1",
            "poll_interval_s": 0.01,
            "tag": [
                {"id": "offgas.so2_pct", "address": 0, "type": "float32",
                 "quality_from": {"tag": "offgas.status", "mask": 7}},
                {"id": "offgas.status", "address": 4},
            ],
            **kw,
        }
    )  # fmt: skip


class FakeDriver:
    """Serves scripted status values; `fail` makes the next connect or read raise."""

    def __init__(self, plant: FakePlant) -> None:
        self.plant = plant

    async def connect(self) -> None:
        self.plant.connects += 1
        if self.plant.down:
            raise DriverConnectionError("refused")

    async def read(self) -> list[Sample]:
        if self.plant.down:
            raise DriverConnectionError("gone")
        if self.plant.slow_s:
            await asyncio.sleep(self.plant.slow_s)
        acq = now_ns()
        return [
            Sample("offgas.so2_pct", 0.5, Quality.GOOD, acq),
            Sample("offgas.status", self.plant.status, Quality.GOOD, acq),
        ]

    async def write(self, tag_id: str, value: Value) -> None:
        self.plant.written[tag_id] = value

    async def close(self) -> None:
        pass


class FakePlant:
    def __init__(self) -> None:
        self.down = False
        self.status = 0
        self.slow_s = 0.0
        self.connects = 0
        self.written: dict[str, Value] = {}

    def factory(self, source: Source) -> FakeDriver:
        return FakeDriver(self)


@pytest.fixture
async def running() -> tuple[FakePlant, TagStore, SourcePoller]:  # type: ignore[misc]
    plant, store = FakePlant(), TagStore()
    poller = SourcePoller(modbus_source(), SampleBus(store), plant.factory)
    poller.backoff = Backoff(initial_s=0.01, max_s=0.02)
    task = asyncio.create_task(poller.run())
    await eventually(lambda: poller.stats.reads > 0, 5.0, "a first read")
    yield plant, store, poller
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def quality(store: TagStore, tag: str) -> Quality | None:
    s = store.get(tag)
    return s.quality if s else None


async def test_lost_connection_turns_every_tag_bad_then_recovers(running: tuple) -> None:  # type: ignore[type-arg]
    plant, store, poller = running
    assert quality(store, "offgas.status") is Quality.GOOD
    plant.down = True
    await eventually(
        lambda: quality(store, "offgas.status") is Quality.BAD,
        5.0,
        "offgas.status Bad",
    )
    bad = store.get("offgas.so2_pct")
    assert bad is not None
    assert (bad.quality, bad.value, bad.reason) == (Quality.BAD, None, "connection_lost")
    assert not poller.stats.connected
    connects = plant.connects
    await eventually(
        lambda: plant.connects > connects + 1, 5.0, "a reconnect with a fresh driver"
    )  # keeps retrying with fresh drivers
    plant.down = False
    await eventually(
        lambda: quality(store, "offgas.so2_pct") is Quality.GOOD,
        5.0,
        "offgas.so2_pct Good",
    )
    assert poller.stats.connected
    assert poller.stats.connection_losses == 1


async def test_status_tag_vetoes_dependent_quality(running: tuple) -> None:  # type: ignore[type-arg]
    plant, store, _ = running
    plant.status = 1  # calibrating
    await eventually(
        lambda: quality(store, "offgas.so2_pct") is Quality.BAD,
        5.0,
        "offgas.so2_pct Bad",
    )
    s = store.get("offgas.so2_pct")
    assert s is not None
    assert s.reason == "device_status offgas.status=1"
    assert quality(store, "offgas.status") is Quality.GOOD
    plant.status = 8  # outside the mask
    await eventually(
        lambda: quality(store, "offgas.so2_pct") is Quality.GOOD,
        5.0,
        "offgas.so2_pct Good",
    )


async def test_overruns_are_counted(running: tuple) -> None:  # type: ignore[type-arg]
    plant, _, poller = running
    plant.slow_s = 0.035  # 3.5 intervals of 10 ms
    await eventually(lambda: poller.stats.overruns >= 6, 5.0, "six overruns")
    plant.slow_s = 0.0


async def test_writes_go_through_the_live_driver() -> None:
    plant, store = FakePlant(), TagStore()
    cfg = AgentConfig.model_validate({"source": [modbus_source().model_dump()]})
    board = StatusBoard(store)
    acq = Acquisition(cfg, SampleBus(store), plant.factory, board=board)
    acq.pollers[0].backoff = Backoff(initial_s=0.01, max_s=0.02)
    (service,) = acq.services()
    assert service.name == "source.offgas"
    task = asyncio.create_task(service.run())
    await eventually(lambda: acq.pollers[0].stats.connected, 5.0, "the poller to connect")
    await acq.write("offgas.status", 3)
    assert plant.written == {"offgas.status": 3}
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The source registered its own health on the board it was given, and nothing else did.
    assert [(s.kind, s.name) for s in board.statuses()] == [("source", "offgas")]


def test_build_services_skips_disabled_sources() -> None:
    cfg = AgentConfig.model_validate({"source": [modbus_source(enabled=False).model_dump()]})
    assert build_services(cfg, SampleBus(TagStore())) == []


def test_backoff_is_capped_with_jitter() -> None:
    b = Backoff(initial_s=0.25, max_s=5.0, jitter=0.2)
    delays = [b.next_delay() for _ in range(10)]
    assert all(0 < d <= 6.0 for d in delays)
    assert delays[-1] >= 4.0


def test_backoff_cap_fits_the_10_s_recovery_promise() -> None:
    backoff = Backoff(acquisition.RECONNECT_INITIAL_S, acquisition.RECONNECT_CAP_S)
    assert backoff.max_s * (1 + backoff.jitter) <= 6.0


async def test_a_cancellation_swallowed_inside_a_read_still_stops_the_poller() -> None:
    """Python 3.11's wait_for can lose a cancel that races a response; the loop must not."""
    plant, store = FakePlant(), TagStore()

    class Swallowing(FakeDriver):
        async def read(self) -> list[Sample]:
            with contextlib.suppress(asyncio.CancelledError):  # what a racing wait_for does
                await asyncio.sleep(0.02)
            return await super().read()

    # Reads (20 ms) overrun the 10 ms floor of the interval: the cancel nearly always lands
    # inside a read.
    source = modbus_source(poll_interval_s=0.01)
    poller = SourcePoller(source, SampleBus(store), lambda s: Swallowing(plant))
    task = asyncio.create_task(poller.run())
    await eventually(lambda: poller.stats.reads > 3, 5.0, "four reads")
    task.cancel()
    async with asyncio.timeout(5):
        with pytest.raises(asyncio.CancelledError):
            await task


class SlowDisk:
    """An outbox whose commits wait until the test lets them through, one at a time."""

    def __init__(self) -> None:
        self.started: list[int] = []  # reads done when each append began
        self.committed: list[list[Sample]] = []
        self.release = asyncio.Semaphore(0)

    async def append(self, samples: list[Sample]) -> None:
        self.started.append(len(self.started))
        await self.release.acquire()
        self.committed.append(list(samples))


async def test_the_next_read_overlaps_the_commit_but_one_batch_at_most_waits() -> None:
    plant, disk = FakePlant(), SlowDisk()
    poller = SourcePoller(modbus_source(), SampleBus(TagStore(), disk), plant.factory)
    task = asyncio.create_task(poller.run())
    try:
        # The first commit hangs; the poller reads the next cycle meanwhile, then waits for the
        # disk instead of piling batches up in memory.
        await eventually(lambda: poller.stats.reads == 2, 10, "the second read")
        for _ in range(50):
            await asyncio.sleep(0)
        assert poller.stats.reads == 2
        assert len(disk.started) == 1
        disk.release.release()
        await eventually(lambda: len(disk.started) == 2, 10, "the second commit")
        await eventually(lambda: poller.stats.reads == 3, 10, "the third read")
        assert [len(b) for b in disk.committed] == [2]
    finally:
        # Stopping with a commit in flight: the batch already read still reaches the outbox.
        task.cancel()
        for _ in range(5):
            disk.release.release()
        await asyncio.gather(task, return_exceptions=True)
    assert len(disk.committed) == len(disk.started) >= 2
