"""An acquisition worker process: reads its share of the sources and hands the batches on.

    python -m edge_agent.workers.child --config FILE --worker N     (started by the main process)

The main process (`edge_agent/workers/process.py`) starts it with its stdin and stdout as the
link (`edge_agent/contracts/link_frames.py`). The first frame names the sources to read and the
`--set` overrides; the worker loads and validates the file itself, checks that it agrees with
the main process about those sources, and runs the same `Acquisition` as a one-process agent
(drivers, plausibility, quality gate) on a `SampleBus` whose writer is the link: each batch
becomes one frame, and the poller's publish awaits the pipe's `drain()`, so a main process that
is slow to commit slows the pollers here (bounded memory) and nothing is dropped.

It stops, flushing what its pollers read, when its stdin ends (the main process closed it, or
died: no orphan survives a SIGKILL of the main process; PR_SET_PDEATHSIG backs this up for a
worker whose loop is stuck) or on SIGTERM; SIGINT (Ctrl-C in a
terminal reaches the whole process group) is the main process's to act on. Logs go to stderr,
as the main process's, with `worker=N` bound; stdout carries frames only, so the link's file
descriptor is taken over at once and fd 1 is pointed at stderr, where a stray print is harmless.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Sequence

import structlog

from edge_agent import heap
from edge_agent.acquisition import Acquisition
from edge_agent.config import AgentConfig
from edge_agent.config.loader import ConfigError, load_config
from edge_agent.config.resources import secret_values
from edge_agent.contracts.link_frames import (
    BatchEncoder,
    LinkError,
    encode_frame,
    read_frame,
    stats_row,
)
from edge_agent.contracts.samples import Sample
from edge_agent.contracts.status import SourceStats
from edge_agent.logs import configure_logging
from edge_agent.pipeline import SampleBus
from edge_agent.redaction import SecretMask
from edge_agent.supervisor import Supervisor
from edge_agent.tagstore import TagStore
from edge_agent.workers.plan import fingerprint, narrowed, plan_shards

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2
STATS_EVERY_S = 0.1  # /metrics then counts a worker's reads as closely as a local source's
PR_SET_PDEATHSIG = 1

log = structlog.get_logger(__name__)


class LinkSender:
    """The worker's side of the link: one frame per call, awaiting the pipe's drain."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._batches = BatchEncoder()

    async def send(self, kind: str, body: object) -> None:
        await self._write(encode_frame(kind, body))

    async def append(self, samples: Sequence[Sample]) -> None:
        """`SampleWriter`: a published batch (the main process publishes it on its bus)."""
        await self._write(self._batches.encode("samples", samples))

    async def record(self, samples: Sequence[Sample]) -> None:
        """History: the main process hands it to `SampleBus.record` (the outbox only)."""
        await self._write(self._batches.encode("record", samples))

    async def _write(self, frames: bytes) -> None:
        self._writer.write(frames)
        await self._writer.drain()

    async def close(self) -> None:
        """Once everything written is in the pipe (the process exits right after)."""
        self._writer.transport.set_write_buffer_limits(high=0)
        with contextlib.suppress(OSError):
            await self._writer.drain()
        self._writer.close()


class LinkBus(SampleBus):
    """The worker's bus: its TagStore serves the quality gate; batches and history go to the
    main process, which publishes them on its own bus (TagStore, taps, outbox)."""

    def __init__(self, sender: LinkSender) -> None:
        super().__init__(TagStore(), sender)
        self.sender = sender

    async def record(self, samples: Sequence[Sample]) -> None:
        if samples:
            await self.sender.record(samples)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edge_agent.workers.child", description=__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--worker", type=int, required=True)
    args = parser.parse_args(argv)
    link_fd = os.dup(1)  # the link; fd 1 now points at stderr
    os.dup2(2, 1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_agent()
    loop = asyncio.new_event_loop()
    try:
        code = loop.run_until_complete(_serve(args.config, args.worker, link_fd))
    except Exception:
        log.exception("worker_failed", worker=args.worker)
        code = EXIT_FAILURE
    sys.stderr.flush()
    os._exit(code)  # like the main process: an unclean stop must not wait for stuck tasks


def _die_with_agent() -> None:
    """A backstop for a worker whose loop is stuck: the kernel kills it when the agent dies.
    The end of stdin is the normal way out (and covers an agent gone before this call)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


async def _serve(path: str, index: int, link_fd: int) -> int:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, os.fdopen(link_fd, "wb", buffering=0)
    )
    sender = LinkSender(asyncio.StreamWriter(transport, protocol, None, loop))
    start = await read_frame(reader)
    if start is None:
        return EXIT_OK  # the main process went away before it said anything
    kind, body = start
    if kind != "start":
        raise LinkError(f"worker link: expected a start frame, got {kind!r}")
    overrides, sources, log_level, digest = body
    try:
        cfg = _load(path, index, list(overrides), tuple(sources), digest)
    except ConfigError as exc:
        print(f"acquisition worker {index}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    mask = SecretMask(secret_values(cfg))
    configure_logging(log_level or cfg.agent.log_level, cfg.agent.log_format, mask=mask)
    structlog.contextvars.bind_contextvars(worker=index)
    acq = Acquisition(narrowed(cfg, sources), LinkBus(sender))
    supervisor = Supervisor(acq.services(), shutdown_timeout_s=cfg.agent.shutdown_timeout_s / 2)
    stats = [p.stats for p in acq.pollers]
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    supervisor.start()
    log.info("worker_ready", sources=list(sources), pid=os.getpid())
    heap.settle()  # as the main process does (edge_agent/heap.py): its samples live as long
    settle_again = loop.call_later(heap.SETTLE_AGAIN_S, heap.settle)
    ended = asyncio.ensure_future(_until_eof(reader))
    reporting = asyncio.ensure_future(_report(sender, stats))
    await asyncio.wait([ended, asyncio.ensure_future(stop.wait())], return_when="FIRST_COMPLETED")
    reporting.cancel()
    settle_again.cancel()
    clean = await supervisor.stop()  # the pollers hand on what they read before they end
    with contextlib.suppress(OSError):  # the main process may be gone: nothing left to tell
        await sender.send("stats", [stats_row(st) for st in stats])
    await sender.close()
    log.info("worker_exiting", clean=clean)
    return EXIT_OK if clean else EXIT_FAILURE


def _load(
    path: str, index: int, overrides: list[str], sources: tuple[str, ...], digest: str
) -> AgentConfig:
    """The file as the main process loaded it, or a ConfigError saying how they disagree."""
    cfg = load_config(path, overrides)
    mine = next((s.sources for s in plan_shards(cfg).shards if s.index == index), ())
    if mine != sources or fingerprint(cfg, sources) != digest:
        raise ConfigError([
            f"{path}: acquisition worker {index} was asked to read {', '.join(sources)}, but the "
            "file now says otherwise (changed since the agent loaded it?): reload the agent"
        ])  # fmt: skip
    return cfg


async def _until_eof(reader: asyncio.StreamReader) -> None:
    """The main process sends nothing after the start frame: the end of stdin means stop."""
    while await reader.read(65536):
        pass


async def _report(sender: LinkSender, stats: list[SourceStats]) -> None:
    while True:
        await sender.send("stats", [stats_row(st) for st in stats])
        await asyncio.sleep(STATS_EVERY_S)


if __name__ == "__main__":
    main()
