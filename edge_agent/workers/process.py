"""The main process's side of one acquisition worker: start it, publish what it reads, mirror
its sources' statistics, see it die, stop it cleanly.

One supervised service per worker (`worker.N`, stopped with acquisition). A run starts the child
(`python -m edge_agent.workers.child`), sends it the start frame, and publishes each `samples`
frame on the bus exactly as a local poller would (TagStore, taps, outbox commit; with at most
one batch per source committing, further frames wait in the pipe and the child's pollers wait
for it: nothing is dropped, memory stays bounded).
Its `stats` frames keep the mirrored `SourceStats` behind each source's `SourceHealth`, so
`/healthz`, `/metrics` and the watchdog see a worker's sources as they see local ones.

A worker that dies is seen at once (its stdout ends): every tag of its sources is published Bad
(`worker_lost`), and the run raises, so the supervisor restarts it with the agent's backoff.
Stopping closes the child's stdin; the child stops its pollers, which hand on what they read,
and exits; everything it sent until then is published. A child that does not finish within
the stop budget is killed.
"""

from __future__ import annotations

import asyncio
import copy
import os
import sys
from collections import deque
from collections.abc import Awaitable, Sequence

import structlog

from edge_agent.acquisition import SourceHealth
from edge_agent.config import AgentConfig
from edge_agent.config.origin import ConfigOrigin
from edge_agent.contracts.link_frames import (
    BatchDecoder,
    LinkError,
    apply_stats_row,
    encode_frame,
    read_frame,
)
from edge_agent.contracts.samples import Quality, Sample, now_ns
from edge_agent.contracts.status import ComponentStatus, SourceStats, StatusRegistry
from edge_agent.pipeline import SampleBus
from edge_agent.supervisor import STOP_ACQUISITION, Service
from edge_agent.workers.plan import Shard, fingerprint

log = structlog.get_logger(__name__)

WORKER_LOST = "worker_lost"
STOP_SHARE = 0.8  # of agent.shutdown_timeout_s: the child's stop, leaving time for the rest


class WorkerLost(Exception):
    """The child ended without being asked to: the supervisor restarts the service."""


class WorkerProcess:
    """One acquisition worker, as the main process sees and supervises it."""

    def __init__(
        self,
        shard: Shard,
        cfg: AgentConfig,
        origin: ConfigOrigin,
        bus: SampleBus,
        board: StatusRegistry | None = None,
    ) -> None:
        self.shard = shard
        self.name = f"worker.{shard.index}"
        self._origin = origin
        self._bus = bus
        self._stop_budget_s = cfg.agent.shutdown_timeout_s * STOP_SHARE
        self._in_flight = max(1, len(shard.sources))  # batches committing at once
        sources = [s for s in cfg.source if s.name in shard.sources]
        self.stats = {s.name: SourceStats(s.name, s.protocol, len(s.tag)) for s in sources}
        self._base: dict[str, SourceStats] = {}  # what earlier runs counted, per source
        self.tag_ids = [t.id for s in sources for t in s.tag]
        # What every batch of this worker holds at most: the bus skips the taps that watch none
        # of it, as it does for a local source's batches (`SampleBus.publish`).
        self.tag_set = frozenset(self.tag_ids)
        self._digest = fingerprint(cfg, shard.sources)
        self.pid: int | None = None
        self.exit_code: int | None = None  # of the last run's child
        self.state = "starting"
        self.starts = 0
        self.log = log.bind(worker=shard.index)
        if board is not None:
            for s in sources:
                board.add(SourceHealth(self.stats[s.name], [t.id for t in s.tag], bus.store))
            board.add(self)

    def service(self) -> Service:
        return Service(self.name, self.run, STOP_ACQUISITION)

    async def run(self) -> None:
        proc = await self._spawn()
        assert proc.stdout is not None
        # The pump is a task of its own, never cancelled: a frame half read stays whole, and a
        # batch taken from the pipe reaches the outbox whatever happens to this run.
        pump = asyncio.ensure_future(self._pump(proc.stdout))
        try:
            await asyncio.shield(pump)
        except asyncio.CancelledError:
            await _uncancellable(self._stop(proc, pump))
            raise
        except BaseException:
            if proc.returncode is None:
                proc.kill()
            await _uncancellable(self._lost(proc))
            raise
        await _uncancellable(self._lost(proc))
        raise WorkerLost(f"acquisition worker {self.shard.index} exited with {proc.returncode}")

    def status(self) -> ComponentStatus:
        """`/healthz` `workers`: which sources each worker reads, its pid, how often it started."""
        return ComponentStatus(
            name=self.name,
            kind="worker",
            state=self.state,
            healthy=self.state == "running",
            detail=f"sources {', '.join(self.shard.sources)}",
            watched=False,
            counters={"starts_total": float(self.starts)},
            gauges={
                "tags": float(self.shard.tags),
                "sources": float(len(self.shard.sources)),
                "pid": float(self.pid or 0),
                **({} if self.exit_code is None else {"exit_code": float(self.exit_code)}),
            },
        )

    async def _spawn(self) -> asyncio.subprocess.Process:
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edge_agent.workers.child",
            "--config", str(self._origin.path), "--worker", str(self.shard.index),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env, limit=1 << 20,
        )  # fmt: skip
        assert proc.stdin is not None
        start = (self._origin.overrides, self.shard.sources, self._origin.log_level, self._digest)
        proc.stdin.write(encode_frame("start", start))
        self.pid, self.state = proc.pid, "running"
        self.starts += 1
        self.log.info("worker_started", pid=proc.pid, sources=list(self.shard.sources),
                      tags=self.shard.tags)  # fmt: skip
        return proc

    async def _pump(self, reader: asyncio.StreamReader) -> None:
        """Publish the child's frames in order until its stdout ends.

        Up to one batch per source is committing while the next frames are read, as with local
        pollers (each has one batch on its way to the outbox while it reads the next): the
        outbox then commits them in groups, and a worker's sources do not wait for each other's
        fsyncs. The publishes start in frame order, so TagStore and outbox see that order.
        """
        batches = BatchDecoder()  # one per run: a new child sends its tag lists anew
        committing: deque[asyncio.Future[None]] = deque()
        try:
            while (frame := await read_frame(reader)) is not None:
                kind, body = frame
                if kind == "samples":
                    committing.append(
                        asyncio.ensure_future(self._bus.publish(batches.decode(body), self.tag_set))
                    )
                elif kind == "record":
                    committing.append(asyncio.ensure_future(self._bus.record(batches.decode(body))))
                elif kind == "tags":
                    batches.learn(body, self.tag_set)
                elif kind == "stats":
                    self._mirror(body)
                else:
                    raise LinkError(f"worker link frame of unknown kind {kind!r}")
                while len(committing) > self._in_flight:
                    await committing.popleft()
        finally:  # what was read reaches the outbox, whatever ended the link
            while committing:
                await committing.popleft()

    def _mirror(self, rows: object) -> None:
        if not isinstance(rows, list):
            raise LinkError(f"worker link stats are not a list: {type(rows).__name__}")
        for row in rows:
            st = self.stats.get(row[0]) if isinstance(row, tuple) and row else None
            if st is None:
                raise LinkError(f"worker link stats row names no source of this worker: {row!r}")
            apply_stats_row(st, row, self._base.get(st.source))

    async def _stop(self, proc: asyncio.subprocess.Process, pump: asyncio.Future[None]) -> None:
        """Close the child's stdin, publish what it still sends, and wait for it (or kill it)."""
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            await asyncio.wait_for(asyncio.shield(pump), self._stop_budget_s)
        except TimeoutError:
            self.log.error("worker_stop_timeout", pid=proc.pid, budget_s=self._stop_budget_s)
            proc.kill()
            await pump  # the pipe ends with the child: the frames already read are published
        except LinkError as exc:
            self.log.error("worker_link_failed", pid=proc.pid, error=str(exc))
            proc.kill()
        code = self.exit_code = await proc.wait()
        self.state = "stopped"
        self.log.info("worker_stopped", pid=proc.pid, exit_code=code)

    async def _lost(self, proc: asyncio.subprocess.Process) -> None:
        """Its sources' tags Bad at once; the counters carry on after the restart."""
        code = self.exit_code = await proc.wait()
        self.state = "lost"
        self.log.error("worker_lost", pid=proc.pid, exit_code=code,
                       sources=list(self.shard.sources))  # fmt: skip
        for name, st in self.stats.items():
            st.connected = False
            st.last_error = f"{WORKER_LOST}: worker {self.shard.index} exited with {code}"
            st.connection_losses += 1
            self._base[name] = copy.deepcopy(st)
        acq = now_ns()
        await self._bus.publish(
            [Sample(t, None, Quality.BAD, acq, None, WORKER_LOST) for t in self.tag_ids],
            self.tag_set,
        )


async def _uncancellable(work: Awaitable[None]) -> None:
    """Run `work` to its end although the supervisor repeats its cancellation every 0.1 s."""
    task = asyncio.ensure_future(work)
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            continue
    task.result()


def build(
    shards: Sequence[Shard],
    cfg: AgentConfig,
    origin: ConfigOrigin,
    bus: SampleBus,
    board: StatusRegistry | None,
) -> list[WorkerProcess]:
    return [WorkerProcess(s, cfg, origin, bus, board) for s in shards]
