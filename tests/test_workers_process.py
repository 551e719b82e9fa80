"""The main process's side of a worker against a real child and the Modbus simulator, with an
outbox that does not answer: the worker's pollers are paced by it (their reads overrun), no more
than one batch per source waits in the main process, and once the outbox answers again every
sample the worker read is handed on, none dropped."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from pathlib import Path

import pytest

from edge_agent.config import AgentConfig
from edge_agent.config.origin import ConfigOrigin
from edge_agent.contracts.samples import Sample
from edge_agent.pipeline import SampleBus
from edge_agent.tagstore import TagStore
from edge_agent.workers import WorkerProcess, plan_shards
from simulators.agent_config import synthetic_config
from tests.support.plant import StartPlant
from tests.support.toml_file import write_toml
from tests.support.waiting import eventually

pytestmark = [pytest.mark.slow]

TAGS = 2000  # about 18 kB a batch on the link: the pipe and the writer's buffer fill in a second
BLOCKED_S = 1.0  # once the link is full: ten poll intervals of a poller waiting for it


class HeldOutbox:
    """A `SampleWriter` whose commits wait until released (a disk that stopped answering)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.committed: list[Sample] = []
        self.waiting = 0
        self.most_waiting = 0

    async def append(self, samples: Sequence[Sample]) -> None:
        self.waiting += 1
        self.most_waiting = max(self.most_waiting, self.waiting)
        try:
            await self.release.wait()
        finally:
            self.waiting -= 1
        self.committed += samples


async def link_full(worker: WorkerProcess) -> bool:
    assert worker.pid is not None
    before = bytes_written(worker.pid)
    await asyncio.sleep(0.3)  # three stats frames' time
    return bytes_written(worker.pid) == before


def bytes_written(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise AssertionError(f"no wchar in /proc/{pid}/io")


@pytest.mark.timeout(90)
async def test_a_stalled_outbox_paces_the_worker_and_loses_nothing(
    plant_sim_factory: StartPlant, tmp_path: Path
) -> None:
    sim = await plant_sim_factory(serve_opcua=False, synthetic_tags=TAGS)
    generated = synthetic_config("opc.tcp://unused:1", sim.modbus_endpoint, TAGS,
                                 poll_interval_s=0.1)  # fmt: skip
    source = [s for s in generated["source"] if s["protocol"] == "modbus"]
    doc = {"agent": {"state_dir": str(tmp_path), "acquisition_workers": 1}, "source": source}
    path = write_toml(tmp_path / "agent.toml", doc)
    cfg = AgentConfig.model_validate(doc)
    [shard] = plan_shards(cfg).shards
    outbox = HeldOutbox()
    worker = WorkerProcess(shard, cfg, ConfigOrigin(path), SampleBus(TagStore(), outbox))
    [stats] = worker.stats.values()
    run = asyncio.create_task(worker.run())
    try:
        await eventually(lambda: outbox.waiting >= 1, 60, "a batch waiting for the outbox")
        # The worker writes a stats frame ten times a second: when its output stops growing,
        # the pipe is full and its pollers are about to wait (what is asserted is counted).
        await eventually(lambda: link_full(worker), 60, "the link full")
        await asyncio.sleep(BLOCKED_S)
        assert outbox.committed == []
        outbox.release.set()
        # Fresh evidence that the pollers resumed: the mirrored counters are those the worker
        # sent before the link filled until its first stats frame after the wait, which counts
        # the overrun (a stop before it would find the pollers still waiting for the pipe).
        await eventually(lambda: stats.overruns >= 1 and outbox.waiting == 0, 60, "reading again")
    finally:
        outbox.release.set()
        run.cancel()  # the agent stopping: the worker hands on what it read, then exits
        with contextlib.suppress(asyncio.CancelledError):
            await run
    # One batch per source committing and the next one read from the pipe, no more.
    assert outbox.most_waiting <= len(shard.sources) + 1
    assert stats.overruns >= 1, "the worker's poller waited for the stalled outbox"
    assert len(outbox.committed) == stats.samples, "every sample read is handed on"
    assert worker.exit_code == 0
