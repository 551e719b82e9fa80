"""The acquisition loop against a scripted fake driver (pure logic; the real drivers are tested
against the simulators in test_drivers_opcua.py and test_drivers_modbus.py)."""

from __future__ import annotations

import asyncio

import pytest

from drivers.backoff import Backoff
from edge_agent import acquisition
from edge_agent.acquisition import Acquisition, SourcePoller, build_services
from edge_agent.config import AgentConfig, ModbusSource
from edge_agent.contracts.samples import Quality, Sample
from edge_agent.pipeline import SampleBus
from edge_agent.status_board import StatusBoard
from edge_agent.tagstore import TagStore
from tests.support.fake_driver import FakeDevice, FakeDriver
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


def fake_offgas() -> FakeDevice:
    """The two tags of `modbus_source()` on a fake device; offgas.status is writable."""
    return FakeDevice({"offgas.so2_pct": 0.5, "offgas.status": 0}, writable={"offgas.status"})


@pytest.fixture
async def running() -> tuple[FakeDevice, TagStore, SourcePoller]:  # type: ignore[misc]
    plant, store = fake_offgas(), TagStore()
    poller = SourcePoller(modbus_source(), SampleBus(store), plant.driver)
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
    plant.values["offgas.status"] = 1  # calibrating
    await eventually(
        lambda: quality(store, "offgas.so2_pct") is Quality.BAD,
        5.0,
        "offgas.so2_pct Bad",
    )
    s = store.get("offgas.so2_pct")
    assert s is not None
    assert s.reason == "device_status offgas.status=1"
    assert quality(store, "offgas.status") is Quality.GOOD
    plant.values["offgas.status"] = 8  # outside the mask
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
    plant, store = fake_offgas(), TagStore()
    cfg = AgentConfig.model_validate({"source": [modbus_source().model_dump()]})
    board = StatusBoard(store)
    acq = Acquisition(cfg, SampleBus(store), plant.driver, board=board)
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


def test_backoff_cap_fits_the_10_s_recovery_promise() -> None:
    backoff = Backoff(acquisition.RECONNECT_INITIAL_S, acquisition.RECONNECT_CAP_S)
    assert backoff.max_s * (1 + backoff.jitter) <= 6.0


async def test_a_cancellation_swallowed_inside_a_read_still_stops_the_poller() -> None:
    """Python 3.11's wait_for can lose a cancel that races a response; the loop must not.

    The first read waits until it is cancelled and swallows the cancellation, every time, as
    such a wait_for does; the poller must notice that it was asked to stop and stop anyway.
    """
    inside, swallowed = asyncio.Event(), asyncio.Event()

    class Swallowing(FakeDriver):
        async def read(self) -> list[Sample]:
            if not swallowed.is_set():
                inside.set()
                try:
                    await asyncio.Event().wait()  # a response that never comes
                except asyncio.CancelledError:
                    swallowed.set()  # and the cancellation is lost
            return await super().read()

    plant = fake_offgas()
    poller = SourcePoller(modbus_source(), SampleBus(TagStore()), lambda s: Swallowing(plant))
    task = asyncio.create_task(poller.run())
    async with asyncio.timeout(5):
        await inside.wait()
    task.cancel()
    # Not `await task` under a timeout: the timeout's own cancellation would satisfy a
    # pytest.raises(CancelledError) and pass a poller that never stops.
    done, _ = await asyncio.wait({task}, timeout=5)
    assert swallowed.is_set(), "the cancellation landed inside the read and was swallowed there"
    assert task in done, "the poller kept running after its cancellation was swallowed"
    assert task.cancelled()


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
    plant, disk = fake_offgas(), SlowDisk()
    poller = SourcePoller(modbus_source(), SampleBus(TagStore(), disk), plant.driver)
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


async def test_a_stop_while_the_disk_is_slow_hands_on_every_batch_read() -> None:
    plant, disk = fake_offgas(), SlowDisk()
    poller = SourcePoller(modbus_source(), SampleBus(TagStore(), disk), plant.driver)
    task = asyncio.create_task(poller.run())
    # The first commit hangs and the second cycle has been read: the loop now waits for the
    # disk, holding a batch it read and counted. The agent stops right then.
    await eventually(lambda: poller.stats.reads == 2, 10, "the second read")
    task.cancel()
    for _ in range(5):
        disk.release.release()
    await asyncio.gather(task, return_exceptions=True)
    assert [len(b) for b in disk.committed] == [2, 2]  # both, in the order read
    assert sum(len(b) for b in disk.committed) == poller.stats.samples
