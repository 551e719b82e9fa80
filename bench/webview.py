"""Web view benchmark: what one browser costs the agent at 10 000 tags changing every second.

    python -m bench.webview [--tags 10000] [--seconds 20] [--no-write]

One process plays the agent: a feeder publishes N synthetic samples every second through the
SampleBus (TagStore, history ring, push streams), and the health listener serves the view.
The same run is measured without a browser and with one headless Chromium showing the Plant
page (the first 100 of N tags, all changing), alternating twice each; the better of each pair
is kept, which evens out what other processes do to a shared machine. Reported:

- added CPU: the agent process's CPU (user + system) per wall second with the browser minus
  without, in % of one core;
- sample → DOM: for every value the page writes into a visible row, the time from the
  sample's acquisition to that write (the page records it against the agent's clock), p50/p99;
- history ring memory at N tags: measured with tracemalloc while the ring fills, and the
  ring's own count of its buckets.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import resource
import statistics
import tempfile
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from edge_agent.config import AgentConfig
from edge_agent.contracts.samples import Quality, Sample, now_ns
from edge_agent.health import HealthServer
from edge_agent.pipeline import SampleBus
from edge_agent.status_board import StatusBoard
from edge_agent.tagstore import TagStore
from edge_agent.web import WebView
from edge_agent.web.history import HistoryRing

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- bench.webview:begin -->", "<!-- bench.webview:end -->"


@dataclass
class Result:
    tags: int
    seconds: float
    cpu_without: float  # fraction of one core
    cpu_with: float
    p50_ms: float
    p99_ms: float
    dom_writes: int
    ring_bytes_measured: int
    ring_bytes_counted: int

    @property
    def added(self) -> float:
        return self.cpu_with - self.cpu_without


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _feed(bus: SampleBus, tags: list[str], stop: asyncio.Event) -> None:
    """Every tag once a second, in ten batches of a tenth (as pollers spread over a second)."""
    k = 0
    chunk = max(1, len(tags) // 10)
    while not stop.is_set():
        start = time.monotonic()
        for i in range(0, len(tags), chunk):
            t = now_ns()
            k += 1
            await bus.publish(
                [Sample(tag, float(k % 1000) + j * 0.001, Quality.GOOD, t) for j, tag in
                 enumerate(tags[i : i + chunk])]
            )  # fmt: skip
            await asyncio.sleep(0.1 - (time.monotonic() - start) % 0.1)
        await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - start)))


async def _cpu_over(seconds: float) -> float:
    wall, cpu = time.monotonic(), _cpu_s()
    await asyncio.sleep(seconds)
    return (_cpu_s() - cpu) / (time.monotonic() - wall)


async def _until_live(driver: Any, timeout_s: float = 60.0) -> None:
    script = "return !!(window.edgeView && window.edgeView.tags.size > 0)"
    deadline = time.monotonic() + timeout_s
    while not await asyncio.to_thread(driver.execute_script, script):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the page never showed tags: {driver.get_log('browser')}")
        await asyncio.sleep(0.2)


def _browser(profile: str) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        "--window-size=1440,900", f"--user-data-dir={profile}",
    ):  # fmt: skip
        options.add_argument(flag)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


async def measure(n: int, seconds: float) -> Result:
    cfg = AgentConfig.model_validate({"health": {"listen": "127.0.0.1:9108"}})  # not bound
    store = TagStore()
    board = StatusBoard(store)
    bus = SampleBus(store)
    view = WebView(cfg, store, board)
    view.subscribe(bus)
    server = HealthServer(board, "127.0.0.1:0", "bench", "bench", view.install)
    await server.start()
    stop = asyncio.Event()
    tags = [f"synth.t{i:05d}" for i in range(n)]
    feeder = asyncio.create_task(_feed(bus, tags, stop))
    driver = None
    try:
        await asyncio.sleep(3.0)  # the ring and the store hold every tag
        without, with_ = [], []
        latencies: list[float] = []
        with tempfile.TemporaryDirectory() as profile:
            for _ in range(2):
                without.append(await _cpu_over(seconds))
                driver = await asyncio.to_thread(_browser, profile)
                url = f"http://127.0.0.1:{server.port}/#plant"
                await asyncio.to_thread(driver.get, url)
                await _until_live(driver)  # snapshot sent and drawn; steady state from here
                await asyncio.sleep(2.0)
                await asyncio.to_thread(driver.execute_script, "window.edgeView.latencies = []")
                with_.append(await _cpu_over(seconds))
                latencies += await asyncio.to_thread(
                    driver.execute_script, "return window.edgeView.latencies"
                )
                await asyncio.to_thread(driver.quit)
                driver = None
                await asyncio.sleep(1.0)
    finally:
        stop.set()
        feeder.cancel()
        if driver is not None:
            await asyncio.to_thread(driver.quit)
        await server.stop()
    ordered = sorted(latencies) or [0.0]
    measured, counted = _ring_memory(n)
    return Result(
        tags=n, seconds=seconds, cpu_without=min(without), cpu_with=min(with_),
        p50_ms=statistics.median(ordered), p99_ms=ordered[int(0.99 * (len(ordered) - 1))],
        dom_writes=len(latencies), ring_bytes_measured=measured, ring_bytes_counted=counted,
    )  # fmt: skip


def _ring_memory(n: int) -> tuple[int, int]:
    """Bytes the ring holds once every bucket of N tags is filled (default settings)."""
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    ring = HistoryRing()
    tags = [f"synth.t{i:05d}" for i in range(n)]
    t0 = now_ns()
    for b in range(ring.slots):
        ts = t0 + b * ring.step_ns
        ring.record([Sample(tag, 1.0, Quality.GOOD, ts) for tag in tags[:1]])
    ring.record([Sample(tag, 1.0, Quality.GOOD, t0) for tag in tags])
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return after - before, ring.memory_bytes()


def render(r: Result) -> str:
    cpu = platform.processor() or platform.machine()
    return "\n".join([
        BEGIN,
        f"Measured by `python -m bench.webview` ({r.tags:,} tags at 1 s, {r.seconds:.0f} s "
        f"windows, {os.cpu_count()} cores, {cpu}, Chromium {_chromium()}):",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        f"| agent CPU without a browser | {r.cpu_without:.1%} of a core | baseline |",
        f"| agent CPU with one browser on the Plant page | {r.cpu_with:.1%} of a core | |",
        f"| added by the browser | {r.added:.1%} of a core | < 5 % |",
        f"| sample → DOM, p50 | {r.p50_ms:.0f} ms | |",
        f"| sample → DOM, p99 ({r.dom_writes:,} cell writes) | {r.p99_ms:.0f} ms | < 1500 ms |",
        f"| history ring at {r.tags:,} tags (tracemalloc) | {r.ring_bytes_measured / 1e6:.1f} MB "
        f"| {r.ring_bytes_counted / 1e6:.1f} MB of buckets |",
        END,
    ])  # fmt: skip


def _chromium() -> str:
    try:
        import subprocess

        out = subprocess.run(
            ["/usr/bin/chromium", "--version"], capture_output=True, text=True, timeout=10
        ).stdout
        return out.split()[1] if out else "?"
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "?"


def write_section(section: str) -> None:
    text = DOC.read_text()
    if BEGIN in text:
        text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), section, text, flags=re.S)
    else:
        text += "\n## Web view (bench/webview.py)\n\n" + section + "\n"
    DOC.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.webview")
    parser.add_argument("--tags", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--no-write", action="store_true", help="do not touch docs/performance.md")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    result = asyncio.run(measure(args.tags, args.seconds))
    section = render(result)
    print(section)
    if not args.no_write:
        write_section(section)
        print(f"wrote {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
