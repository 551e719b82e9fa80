"""End-to-end benchmark: Modbus TCP → agent (acquisition, outbox, MQTT batch sink) → subscriber,
side by side with the true floor, at 5 000 and 20 000 tags/s and up to the maximum.

    python -m bench.end_to_end [--rates 5000,20000] [--ladder 70000,150000,250000] [--seconds 6]
                               [--workers 0,1,2] [--profile RATE] [--no-write]

Every case runs in this one run, floor and agent back to back at each load, against the same
neutral Modbus TCP server process (float32 blocks of 62 tags, values changing every 100 ms,
about 1 000 tags per device, one port per device), the same Mosquitto and a subscriber process
of its own; bench/e2e_processes.py has those programs and the floor. The agent is the real one
(`edge-agent run` on a generated config: one Modbus source per device, 100 ms polls, batch
layout, outbox `synchronous = "full"`), once in one process (`agent`) and once per
`--workers` count k ≥ 1 with `[agent] acquisition_workers = k` (`agent+kw`: the sources read in
k worker processes, everything else in the main one), from 20 000 tags/s up.

Measured per case over a window of `--seconds` after a warm-up: CPU µs per tag (user + system
time of all threads of the process and, for the agent, of its worker processes, over the tags
it read in the window), tags/s read, p99 of acquisition → subscriber (each sample's acquisition
time against its arrival), RSS at the end (summed over the agent's processes), and "lost or
Bad": tags read but never seen Good by the subscriber (counted to the end: the server is then
stopped, and the agent's ordered `connection_lost` samples arriving prove that all before them
did). A load is sustained when at least 97 % of the offered tags/s are read, nothing is lost or
Bad and p99 < 500 ms; the maximum is the highest sustained load of the ladder, for each variant.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import pstats
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, Any

from bench.acquisition import free_port, write_section
from bench.e2e_processes import FLOOR, PROFILED_AGENT, SERVER, SUBSCRIBER
from tests.support.services import Mosquitto

ROOT = Path(__file__).resolve().parent.parent
MARKERS = ("<!-- bench.end_to_end:begin -->", "<!-- bench.end_to_end:end -->")
INTERVAL_S = 0.1
BLOCK = 62  # float32 tags per request: 124 registers, the most one request can carry in pairs
PER_DEVICE = 16 * BLOCK  # 992 tags per device, as a PLC might serve them
WARMUP_S = 3.0
SUSTAINED = 0.97
P99_LIMIT_MS = 500.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
# Below this the agent with workers is not run: at 5 000 tags/s more processes only cost (and
# `make bench` stays within its ten minutes).
WORKERS_FROM = 20000


@dataclass
class Case:
    who: str  # "floor" or "agent"
    offered: int  # tags/s
    tags: int
    read_per_s: float
    cpu_us_per_tag: float
    p50_ms: float
    p99_ms: float
    lost: int
    rss_mb: float

    @property
    def sustained(self) -> bool:
        return (
            self.read_per_s >= SUSTAINED * self.tags / INTERVAL_S
            and self.lost == 0
            and 0 <= self.p99_ms < P99_LIMIT_MS
        )


def layout(rate: int) -> list[int]:
    """Tags per device for `rate` tags/s at 100 ms polls: whole blocks, ~1 000 per device."""
    tags = max(BLOCK, round(rate * INTERVAL_S / BLOCK) * BLOCK)
    devices = -(-tags // PER_DEVICE)
    per = -(-tags // devices // BLOCK) * BLOCK
    return [per] * devices


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def family(pid: int) -> list[int]:
    """`pid` and its child processes (the agent's acquisition workers)."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int(_stat(int(entry.name))[1]) == pid:
                    children.append(int(entry.name))
            except (FileNotFoundError, ProcessLookupError):
                continue
    return [pid, *children]


def cpu_s(pid: int) -> float:
    """User + system time of `pid`'s threads and its child processes' (all alive)."""
    total = 0
    for p in family(pid):
        fields = _stat(p)
        total += int(fields[11]) + int(fields[12])  # utime, stime (all threads)
    return total / CLK_TCK


def rss_mb(pid: int) -> float:
    total = 0
    for p in family(pid):
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def python(code: str, *args: object, **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)], text=True, cwd=ROOT, **kw
    )


def ready(proc: subprocess.Popen[str]) -> str:
    """Waits for the process's `ready` line; returns what follows the word."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("ready"):
        raise RuntimeError(f"benchmark process did not start: {line!r}")
    return line.removeprefix("ready").strip()


class Subscriber:
    def __init__(self, broker: Mosquitto, topic: str) -> None:
        self.proc = python(SUBSCRIBER, broker.host, broker.port, topic,
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip
        ready(self.proc)

    def ask(self, command: str = "report") -> dict[str, Any]:
        stdin, stdout = self.proc.stdin, self.proc.stdout
        assert stdin is not None
        assert stdout is not None
        stdin.write(command + "\n")
        stdin.flush()
        return json.loads(stdout.readline())  # type: ignore[no-any-return]

    def wait(self, done: Any, timeout_s: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            report = self.ask()
            if done(report) or time.monotonic() > deadline:
                return report
            time.sleep(0.2)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(10)


class Server:
    def __init__(self, devices: list[int]) -> None:
        self.proc = python(SERVER, len(devices), devices[0], stdout=subprocess.PIPE)
        self.ports = [int(p) for p in ready(self.proc).split(",")]

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def agent_config(
    tmp: Path, broker: Mosquitto, server: Server, devices: list[int], workers: int = 0
) -> Path:
    lines = [
        "[agent]", 'site = "bench"', 'instance_id = "e2e"', f'state_dir = "{tmp}"',
        'log_level = "warning"', f"acquisition_workers = {workers}",
        "[health]", f'listen = "127.0.0.1:{free_port()}"',
        "[mqtt]", f'host = "{broker.host}"', f"port = {broker.port}", f'topic_root = "{tmp.name}"',
        'layout = "batch"', "max_inflight = 2000", "max_samples_per_read = 50000",
    ]  # fmt: skip
    for d, (port, n) in enumerate(zip(server.ports, devices, strict=True)):
        endpoint = f"tcp://127.0.0.1:{port}"
        lines += ["[[source]]", f'name = "d{d}"', 'protocol = "modbus"',
                  f'endpoint = "{endpoint}"', f"poll_interval_s = {INTERVAL_S}"]  # fmt: skip
        for i in range(n):
            lines += ["[[source.tag]]", f'id = "d{d}.t{i}"', "unit_id = 1", 'table = "holding"',
                      f"address = {2 * i}", 'type = "float32"']  # fmt: skip
    path = tmp / "agent.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def metrics_port(config: Path) -> int:
    for line in config.read_text().splitlines():
        if line.startswith("listen = "):
            return int(line.split(":")[-1].rstrip('"'))
    raise ValueError("no health listen in the bench config")


def samples_read(port: int) -> int:
    """The agent's own count of samples read, summed over its sources (/metrics)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return int(sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
        if line.startswith("edge_agent_source_samples_read_total{")
    ))  # fmt: skip


def measure(pid: int, count: Any, seconds: float, sub: Subscriber) -> tuple[float, int, float]:
    """CPU s, tags read and wall s over one window, latencies marked from its start."""
    sub.ask("mark")
    cpu0, read0, t0 = cpu_s(pid), count(), time.monotonic()
    time.sleep(seconds)
    cpu1, read1, t1 = cpu_s(pid), count(), time.monotonic()
    return cpu1 - cpu0, read1 - read0, t1 - t0


def run_floor(tmp: Path, broker: Mosquitto, rate: int, seconds: float) -> Case:
    devices = layout(rate)
    server = Server(devices)
    root = f"floor{rate}"
    sub = Subscriber(broker, f"{root}/#")
    proc = python(FLOOR, broker.host, broker.port, root, tmp / f"{root}.db",
                  ",".join(map(str, server.ports)), devices[0], INTERVAL_S,
                  stdout=subprocess.PIPE)  # fmt: skip
    try:
        ready(proc)
        time.sleep(WARMUP_S)

        def count() -> int:
            assert proc.stdout is not None
            proc.send_signal(signal.SIGUSR1)
            return int(json.loads(proc.stdout.readline())["read"])

        cpu, read, wall = measure(proc.pid, count, seconds, sub)
        rss = rss_mb(proc.pid)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        total = json.loads(out.strip().splitlines()[-1])["read"]
        report = sub.wait(lambda r: r["good"] >= total)
    finally:
        if proc.poll() is None:
            proc.kill()
        server.stop()
        sub.close()
    lost = max(0, total - report["good"])
    return Case("floor", rate, sum(devices), read / wall, cpu / max(1, read) * 1e6,
                report["p50_ms"], report["p99_ms"], lost, rss)  # fmt: skip


def run_agent(
    tmp: Path,
    broker: Mosquitto,
    rate: int,
    seconds: float,
    profile: Path | None = None,
    workers: int = 0,
) -> Case:
    devices = layout(rate)
    who = agent_name(workers)
    work = tmp / f"{who.replace('+', '_')}_{rate}"
    work.mkdir()
    server = Server(devices)
    config = agent_config(work, broker, server, devices, workers)
    port = metrics_port(config)
    sub = Subscriber(broker, f"{work.name}/#")
    argv = ["-c", PROFILED_AGENT, str(profile)] if profile else ["-m", "edge_agent.cli", "run"]
    log: IO[bytes] = (work / "agent.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, *argv, str(config)], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
    )
    try:
        sub.wait(lambda r: r["good"] >= sum(devices), timeout_s=120)
        time.sleep(WARMUP_S)
        if profile:
            proc.send_signal(signal.SIGUSR1)
        cpu, read, wall = measure(proc.pid, lambda: samples_read(port), seconds, sub)
        if profile:
            proc.send_signal(signal.SIGUSR2)
            while not profile.exists():  # written by the agent's main thread, at once
                time.sleep(0.05)
        rss = rss_mb(proc.pid)
        server.stop()  # the agent publishes every tag Bad: all before it has been delivered
        report = sub.wait(lambda r: r["bad"] >= sum(devices), timeout_s=60)
        total = samples_read(port)
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
        if server.proc.poll() is None:
            server.stop()
        sub.close()
        log.close()
    lost = max(0, total - report["good"])
    return Case(who, rate, sum(devices), read / wall, cpu / max(1, read) * 1e6,
                report["p50_ms"], report["p99_ms"], lost, rss)  # fmt: skip


def agent_name(workers: int) -> str:
    return "agent" if workers == 0 else f"agent+{workers}w"


def top_entries(profile: Path, n: int = 15) -> list[tuple[str, float]]:
    """The profile's top functions by own time, as shares of the profiled (main-thread) time."""
    stats = pstats.Stats(str(profile))
    rows = stats.stats  # type: ignore[attr-defined]
    total = sum(tt for _, _, tt, _, _ in rows.values()) or 1.0
    ranked = sorted(rows.items(), key=lambda kv: kv[1][2], reverse=True)[:n]
    return [(f"{Path(f).name}:{line} {name}", tt / total) for (f, line, name), (_, _, tt, _, _)
            in ranked]  # fmt: skip


def row(c: Case, floor: Case | None) -> str:
    ratio = f"{c.cpu_us_per_tag / floor.cpu_us_per_tag:.2f}" if c.who != "floor" and floor else ""
    return (
        f"| {c.tags / INTERVAL_S:,.0f} | {c.tags:,} | {c.who} | {c.read_per_s:,.0f} | "
        f"{c.cpu_us_per_tag:.1f} | {ratio} | {c.p50_ms:.0f} | {c.p99_ms:.0f} | {c.lost} | "
        f"{c.rss_mb:.0f} | {'yes' if c.sustained else 'no'} |"
    )


def report(cases: list[Case], profile: list[tuple[str, float]], rate: int, seconds: float) -> str:
    machine = (f"{os.cpu_count()} CPUs, Python {platform.python_version()}, load average "
               f"{os.getloadavg()[0]:.1f} at the end, {seconds:.0f} s per window")  # fmt: skip
    lines = [
        f"Run of {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {machine}.",
        "",
        "| offered tags/s | tags | who | read tags/s | CPU µs/tag | agent/floor | p50 ms | p99 ms "
        "| lost or Bad | RSS MB | sustained |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    floors = {c.offered: c for c in cases if c.who == "floor"}
    lines += [row(c, floors.get(c.offered)) for c in cases]
    lines.append("")
    for who in dict.fromkeys(c.who for c in cases):
        ok = [round(c.tags / INTERVAL_S) for c in cases if c.who == who and c.sustained]
        lines.append(f"- {who}: highest sustained load {max(ok):,} tags/s" if ok else
                     f"- {who}: no load sustained")  # fmt: skip
    if profile:
        lines += ["", f"Profile of the agent's event loop at {rate:,} tags/s (cProfile, own time, "
                  "share of the main thread's CPU time in the window):", "",
                  "| function | share |", "|---|---:|"]  # fmt: skip
        lines += [f"| `{name}` | {share:.1%} |" for name, share in profile]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ints = lambda s: [int(x) for x in s.split(",") if x]  # noqa: E731
    parser.add_argument("--rates", type=ints, default=[5000, 20000])
    parser.add_argument("--ladder", type=ints, default=[70000, 150000, 250000])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument(
        "--workers",
        type=ints,
        default=[0, 1, 2],
        help="agent variants: 0 one process, k > 0 with k acquisition workers",
    )
    parser.add_argument("--profile", type=int, default=20000, help="0: no profile run")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    cases: list[Case] = []
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmpdir:
        tmp = Path(tmpdir)
        broker = Mosquitto(tmp / "broker")
        with broker:
            stopped: set[str] = set()
            variants: list[tuple[str, Any]] = [("floor", run_floor)] + [
                (agent_name(k), partial(run_agent, workers=k)) for k in args.workers
            ]
            for rate in [*args.rates, *args.ladder]:
                for who, run in variants:
                    if who in stopped or (who.endswith("w") and rate < WORKERS_FROM):
                        continue
                    case = run(tmp, broker, rate, args.seconds)
                    cases.append(case)
                    print(row(case, None), flush=True)
                    if rate in args.ladder and not case.sustained:
                        stopped.add(who)  # the ladder goes on for the other
            profile: list[tuple[str, float]] = []
            if args.profile:
                (tmp / "profiled").mkdir()
                out = tmp / "agent.prof"
                run_agent(tmp / "profiled", broker, args.profile, args.seconds, out)
                profile = top_entries(out)
    text = report(cases, profile, args.profile, args.seconds)
    print(text)
    if not args.no_write:
        write_section(text, markers=MARKERS)


if __name__ == "__main__":
    main()
