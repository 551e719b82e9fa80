"""Acquisition benchmark: tags per second through the agent's acquisition layer, against the raw
library rate with the same batch plan, on the same simulator, in the same run.

    python -m bench.acquisition [--sizes 100,1000,10000] [--seconds 4] [--no-write]

The simulator (`python -m simulators.cli`) runs in its own process with N synthetic tags, so
that the server does not share the client's event loop. For each N and protocol:

- raw OPC UA: asyncua `Client.read_attributes` over the same batches the driver makes
  (the server's MaxNodesPerRead), back to back;
- raw Modbus: pymodbus block reads of the planner's requests (125 registers), back to back;
- layer: a `SourcePoller` with a 1 µs interval (so it reads back to back, as raw does) that
  decodes, builds Samples, applies quality rules and publishes them to a SampleBus/TagStore.

Rates are tags delivered per wall second over the measured window, after one warm-up read.
Raw and layer runs alternate, twice each, and the better of each pair is kept, which evens out
what the other engineers' processes do to a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import structlog
from asyncua import ua
from asyncua.client.client import Client
from pymodbus.client import AsyncModbusTcpClient

from drivers.modbus_plan import ReadPlan
from drivers.opcua import OpcUaDriver
from edge_agent.acquisition import SourcePoller
from edge_agent.config import AgentConfig, ModbusSource, OpcUaSource
from edge_agent.pipeline import SampleBus
from edge_agent.tagstore import TagStore

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- bench.acquisition:begin -->", "<!-- bench.acquisition:end -->"


@dataclass
class Row:
    protocol: str
    tags: int
    sessions: int
    batches: int
    raw_tps: float
    layer_tps: float
    layer_cycle_us: float = 0.0  # one back-to-back poll cycle of the layer
    layer_read_us: float = 0.0  # of which inside the driver's read()

    @property
    def ratio(self) -> float:
        return self.layer_tps / self.raw_tps if self.raw_tps else 0.0

    @property
    def raw_cycle_us(self) -> float:
        """One raw read of all the tags (the same requests, back to back)."""
        return self.tags / self.raw_tps * 1e6 if self.raw_tps else 0.0


@dataclass
class LayerRun:
    tps: float
    cycle_us: float
    read_us: float


# --------------------------------------------------------------------------------- simulator


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """In the child before exec: the simulator dies with the benchmark, however that ends."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class SimProcess:
    def __init__(self, tags: int) -> None:
        self.opcua_port, self.modbus_port = free_port(), free_port()
        self.tags = tags
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def opcua(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.opcua_port}/smelter/"

    @property
    def modbus(self) -> str:
        return f"tcp://127.0.0.1:{self.modbus_port}"

    async def __aenter__(self) -> SimProcess:
        self.proc = subprocess.Popen(  # noqa: ASYNC220 (started once, before measuring)
            [sys.executable, "-m", "simulators.cli", "--opcua-port", str(self.opcua_port),
             "--modbus-port", str(self.modbus_port), "--synthetic-tags", str(self.tags),
             "--synthetic-rate-hz", "1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT,
            preexec_fn=_die_with_parent,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"simulator exited with {self.proc.returncode}")
            try:
                client = Client(self.opcua, timeout=2)
                await client.connect()
                await client.disconnect()
                _, writer = await asyncio.open_connection("127.0.0.1", self.modbus_port)
                writer.close()
                return self
            except (OSError, TimeoutError, ua.UaError):
                await asyncio.sleep(0.5)
        raise RuntimeError("simulator did not come up within 120 s")

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ------------------------------------------------------------------------------------- cases


async def rate(read_once: Callable[[], Awaitable[int]], seconds: float) -> float:
    await read_once()  # warm-up
    tags, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        tags += await read_once()
    return tags / elapsed


async def raw_opcua(src: OpcUaSource, seconds: float) -> tuple[float, int]:
    """asyncua read_attributes over the batches the driver would make on this server."""
    probe = OpcUaDriver(src)
    await probe.connect()
    session = probe._sessions[0]  # the batch plan the agent uses, from the server's limit
    batch = session.max_read
    node_ids = list(session.node_ids)
    await probe.close()
    # The client's watchdog as the driver sets it: with asyncua's 1 s it drops a busy session.
    client = Client(src.endpoint, timeout=src.timeout_s, watchdog_intervall=src.timeout_s)
    await client.connect()
    try:
        nodes = [client.get_node(n) for n in node_ids]
        batches = [nodes[i : i + batch] for i in range(0, len(nodes), batch)]

        async def read_once() -> int:
            n = 0
            for b in batches:
                n += len(await client.read_attributes(b))
            return n

        return await rate(read_once, seconds), len(batches)
    finally:
        await client.disconnect()


async def raw_modbus(src: ModbusSource, seconds: float) -> tuple[float, int]:
    """pymodbus block reads of the planner's requests."""
    plan = ReadPlan(src.tag, src.max_gap, src.max_registers)
    host, port = src.endpoint.removeprefix("tcp://").split(":")
    client = AsyncModbusTcpClient(host, port=int(port), timeout=src.timeout_s, retries=src.retries)
    await client.connect()
    try:

        async def read_once() -> int:
            n = 0
            for r in plan.requests:
                response = await client.read_holding_registers(
                    r.start, count=r.count, device_id=r.unit_id
                )
                assert not response.isError()
                n += len(r.tags)
            return n

        return await rate(read_once, seconds), len(plan.requests)
    finally:
        client.close()


async def layer(src: OpcUaSource | ModbusSource, seconds: float) -> LayerRun:
    """The acquisition layer, back to back: driver, Samples, quality gate, bus, TagStore.

    Besides the rate, the mean cycle and the mean time inside the driver's `read()` (from the
    poller's own counters): the difference is what the poller does between two reads.
    """
    store = TagStore()
    poller = SourcePoller(src.model_copy(update={"poll_interval_s": 1e-6}), SampleBus(store))
    task = asyncio.create_task(poller.run())
    try:
        async with asyncio.timeout(120):
            while poller.stats.reads < 2:  # noqa: ASYNC110 (connected and warmed up)
                await asyncio.sleep(0.01)
        stats = poller.stats
        samples, reads, in_read = stats.samples, stats.reads, stats.read_seconds_total
        start = time.perf_counter()
        await asyncio.sleep(seconds)
        delivered, elapsed = stats.samples - samples, time.perf_counter() - start
        if stats.connection_losses:
            raise RuntimeError(f"{src.name}: connection lost during the benchmark")
        cycles = max(stats.reads - reads, 1)
        return LayerRun(
            delivered / elapsed,
            elapsed / cycles * 1e6,
            (stats.read_seconds_total - in_read) / cycles * 1e6,
        )
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def measure(n: int, seconds: float, sharded: int) -> list[Row]:
    rows = []
    async with SimProcess(n) as sim:
        cfg = _synthetic(sim, n)
        opcua = next(s for s in cfg.source if isinstance(s, OpcUaSource))
        # Setting up a session on 10 000 nodes takes more than the default 2 s on a busy machine.
        opcua = opcua.model_copy(update={"timeout_s": 20.0})
        modbus = next(s for s in cfg.source if isinstance(s, ModbusSource))
        for sessions in sorted({1, sharded if n >= 10000 else 1}):
            src = opcua.model_copy(update={"sessions": sessions})
            raws, layers, batches = [], [], 0
            for _ in range(2):
                r, batches = await raw_opcua(opcua, seconds)
                raws.append(r)
                layers.append(await layer(src, seconds))
            rows.append(_row("OPC UA", n, sessions, batches, raws, layers))
        raws, layers, batches = [], [], 0
        for _ in range(2):
            r, batches = await raw_modbus(modbus, seconds)
            raws.append(r)
            layers.append(await layer(modbus, seconds))
        rows.append(_row("Modbus TCP", n, 1, batches, raws, layers))
    return rows


def _row(
    protocol: str, n: int, sessions: int, batches: int, raws: list[float], layers: list[LayerRun]
) -> Row:
    """The better of each pair (and the better layer run's cycle figures)."""
    best = max(layers, key=lambda run: run.tps)
    return Row(protocol, n, sessions, batches, max(raws), best.tps, best.cycle_us, best.read_us)


def _synthetic(sim: SimProcess, n: int) -> AgentConfig:
    from simulators.agent_config import synthetic_config

    return AgentConfig.model_validate(synthetic_config(sim.opcua, sim.modbus, n))


# ------------------------------------------------------------------------------------ report


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        text = Path("/proc/cpuinfo").read_text()
        if m := re.search(r"^model name\s*:\s*(.+)$", text, re.M):
            cpu = m.group(1).strip()
    except OSError:
        pass
    from importlib.metadata import version

    return (
        f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {cpu}; "
        f"Python {platform.python_version()}, asyncua {version('asyncua')}, "
        f"pymodbus {version('pymodbus')}; {platform.system()} {platform.release()}"
    )


def render(rows: list[Row], seconds: float) -> str:
    lines = [
        "## Acquisition",
        "",
        "`python -m bench.acquisition`: tags per second through the acquisition layer (driver,",
        "Samples, quality rules, SampleBus, TagStore) against the raw library rate (asyncua",
        "`read_attributes`, pymodbus block reads) with the same batch plan, same simulator",
        f"(a separate process), same run; back-to-back reads, {seconds:g} s windows, best of two.",
        "The raw column is always one session; with `sessions` = 2 the layer shards the tags.",
        "The cycle columns are the mean time of one read of all the tags: raw, and the layer's",
        "with the part spent inside the driver's `read()` (the rest is the poller's work",
        "between two reads: quality rules, SampleBus, TagStore, the counters).",
        "",
        "Why the Modbus layer trails raw further at 100 tags than at 1 000 (64 % against 98 %",
        "in the quiet run of 2026-12-01 15:14 UTC): the layer polls back to back, and what a",
        "cycle does after its last response (that response's decode, then the hand-on of the",
        "batch: quality rules, SampleBus, TagStore) lies between two cycles' requests, where",
        "nothing overlaps it: the layer's cycle less its time in `read()`. The driver queues each",
        "request before it decodes the previous response, so the other decodes hide behind the",
        "device's turnaround (`read()` takes no longer than the raw cycle). At 100 tags (2",
        "requests, under a millisecond a cycle) that tail is a large share of the cycle, at",
        "1 000 tags (17 requests) a small one; raw pymodbus has no tail: it does not even decode",
        "the floats. Measured with the poller instrumented on the shared machine (16:20 UTC,",
        "medians per cycle at 100 tags): 60-70 µs between reads, and the last response's 50",
        "float32 took 60-100 µs to decode before the block decode (the simulator's values need",
        "eight or nine digits: 1.5 µs each), 12 µs now, because they change once a second and",
        "a run whose bytes repeat the previous read's is not decoded again. A source polled at",
        "its interval does this work while it waits for its next deadline: there it costs CPU,",
        "not rate.",
        "",
        f"Machine: {machine()}. Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "| protocol | tags | sessions | requests/read | raw tags/s | layer tags/s | layer/raw "
        "| raw µs/cycle | layer µs/cycle | in read() |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.protocol} | {r.tags:,} | {r.sessions} | {r.batches} | {r.raw_tps:,.0f} "
            f"| {r.layer_tps:,.0f} | {r.ratio:.0%} | {r.raw_cycle_us:,.0f} "
            f"| {r.layer_cycle_us:,.0f} | {r.layer_read_us:,.0f} |"
        )
    return "\n".join(lines)


def write_section(text: str, path: Path = DOC, markers: tuple[str, str] = (BEGIN, END)) -> None:
    """Replace one benchmark's section of docs/performance.md, leaving the others alone."""
    begin, end = markers
    doc = path.read_text() if path.exists() else "# Performance\n"
    block = f"{begin}\n{text}\n{end}"
    if begin in doc and end in doc:
        doc = doc[: doc.index(begin)] + block + doc[doc.index(end) + len(end) :]
    else:
        doc = doc.rstrip() + "\n\n" + block + "\n"
    path.write_text(doc)


async def main_async(args: argparse.Namespace) -> list[Row]:
    rows = []
    for n in args.sizes:
        rows.extend(await measure(n, args.seconds, args.sessions))
        for r in rows:
            if r.tags == n:
                print(
                    f"{r.protocol:10} {r.tags:>6} tags {r.sessions} sess: "
                    f"raw {r.raw_tps:>9,.0f}/s layer {r.layer_tps:>9,.0f}/s {r.ratio:.0%}; "
                    f"cycle µs raw {r.raw_cycle_us:,.0f} layer {r.layer_cycle_us:,.0f} "
                    f"(in read {r.layer_read_us:,.0f})",
                    flush=True,
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.acquisition")
    parser.add_argument(
        "--sizes", default="100,1000,10000", type=lambda s: [int(x) for x in s.split(",")]
    )
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--sessions", type=int, default=2, help="also shard 10 000 tags this way")
    parser.add_argument("--no-write", action="store_true", help="do not touch docs/performance.md")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    rows = asyncio.run(main_async(args))
    if not args.no_write:
        write_section(render(rows, args.seconds))
        print(f"wrote {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
