"""Delivery benchmark: outbox -> MQTT (both layouts) + InfluxDB v2 (VictoriaMetrics), against a
bare loop that reads, serialises and publishes with the same libraries but no outbox.

    python -m bench.delivery [--seconds 10] [--rates 10000] [--layouts batch] [--out results.md]

A synthetic source produces `rate` tag updates per second in 10 Hz cycles, one batch per unit
(four units, as four sources would), through `SampleBus.publish` into the outbox. A separate
subscriber process (paho) records each message's arrival time; latency is arrival minus the
sample's acquisition time (`ts_ns` in the payload). CPU time is this process's (all threads:
event loop, paho's network thread, the outbox's SQLite thread) from the first sample until the
outbox has drained, divided by the samples produced; the broker, the database and the subscriber
run in other processes on the same two cores. Every case runs in the same process run, one after
another, so the ratios compare like with like.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drivers.mqtt_client import MqttClient
from edge_agent.config import AgentConfig
from edge_agent.contracts.samples import Quality, Sample
from edge_agent.outbox import Batch
from edge_agent.pipeline import SampleBus
from edge_agent.runtime import build_catalogue, open_outbox
from edge_agent.sinks import build_services
from edge_agent.sinks.mqtt_json import JsonEncoder
from edge_agent.tagstore import TagStore
from tests.support.services import Mosquitto, VictoriaMetrics

UNITS = ("fsf", "offgas", "kiln", "kpi")
CYCLE_S = 0.1


@dataclass
class Result:
    case: str
    rate: int
    layout: str
    produced: int
    delivered: int
    seconds: float
    cpu_s: float
    latencies_ms: list[float]
    rss_mb: float
    backlog: int

    @property
    def cpu_us_per_sample(self) -> float:
        return self.cpu_s / max(1, self.produced) * 1e6

    @property
    def throughput(self) -> float:
        return self.delivered / self.seconds

    def pct(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        data = sorted(self.latencies_ms)
        return data[min(len(data) - 1, int(q * len(data)))]


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_cycle(cycle: int, rate: int) -> list[list[Sample]]:
    per_cycle = max(1, int(rate * CYCLE_S))
    per_unit = per_cycle // len(UNITS)
    now = time.time_ns()
    return [
        [Sample(f"{u}.t{i}", float(cycle) + i / 1000, Quality.GOOD, now) for i in range(per_unit)]
        for u in UNITS
    ]


RECORDER = """
import sys, time
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
host, port, topic, path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
out = open(path, "wb")
def on_message(client, userdata, msg):
    out.write(b"%d " % time.time_ns() + msg.payload + b"\\n")
c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-recorder-" + topic)
c.on_connect = lambda c, *a: c.subscribe(topic, 1)
c.on_subscribe = lambda *a: print("ready", flush=True)
c.on_message = on_message
c.connect(host, port)
try:
    c.loop_forever()
except KeyboardInterrupt:  # how Recorder.stop ends it: not an error worth a traceback
    pass
finally:
    out.close()
"""


class Recorder:
    """A paho subscriber in its own process: `<arrival unix ns> <payload>` per message."""

    def __init__(self, broker: Mosquitto, topic: str, path: Path) -> None:
        self.path = path
        self.proc = subprocess.Popen(
            [sys.executable, "-c", RECORDER, broker.host, str(broker.port), topic, str(path)],
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        self.proc.stdout.readline()  # "ready": subscribed

    def stop(self) -> list[tuple[int, int]]:
        time.sleep(0.5)
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait()
        pairs: list[tuple[int, int]] = []
        for line in self.path.read_bytes().splitlines():
            stamp, _, payload = line.partition(b" ")
            if not payload.startswith(b"{"):  # the agent's online/offline status
                continue
            arrival = int(stamp)
            body = json.loads(payload)
            if "groups" in body:  # edge-agent/batch/2: one ts_ns per group of samples
                pairs.extend((arrival, g["ts_ns"]) for g in body["groups"] for _ in g["values"])
                continue
            for s in body.get("samples", [body]):
                pairs.append((arrival, s["ts_ns"]))
        return pairs


async def paced(rate: int, seconds: float, emit: Any) -> int:
    """Call `emit(cycle_batches)` at 10 Hz for `seconds`; returns samples produced."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    produced = cycle = 0
    while loop.time() - start < seconds:
        batches = make_cycle(cycle, rate)
        await emit(batches)
        produced += sum(len(b) for b in batches)
        cycle += 1
        await asyncio.sleep(max(0.0, start + cycle * CYCLE_S - loop.time()))
    return produced


def config(
    tmp: Path, broker: Mosquitto, vm: VictoriaMetrics | None, root: str, layout: str
) -> AgentConfig:
    data: dict[str, Any] = {
        "agent": {"site": "bench", "instance_id": "b", "state_dir": str(tmp)},
        "outbox": {"synchronous": "full"},
        "mqtt": {"host": broker.host, "port": broker.port, "topic_root": root, "layout": layout,
                 "max_inflight": 2000, "max_samples_per_read": 20000},
    }  # fmt: skip
    if vm is not None:
        data["influx"] = {"api": "v2", "url": vm.url, "bucket": "bench", "precision": "ms",
                          "max_samples_per_write": 20000}  # fmt: skip
    return AgentConfig.model_validate(data)


async def run_outbox_case(
    tmp: Path, broker: Mosquitto, vm: VictoriaMetrics | None, rate: int, layout: str,
    seconds: float,
) -> Result:  # fmt: skip
    root = f"o{rate}{layout}{'db' if vm else ''}"
    cfg = config(tmp / root, broker, vm, root, layout)
    recorder = Recorder(broker, f"{root}/#", tmp / f"{root}.txt")
    outbox = await open_outbox(cfg)
    services = build_services(cfg, outbox, build_catalogue(cfg))
    tasks = [asyncio.create_task(s.run()) for s in services]
    bus = SampleBus(TagStore(), outbox)
    await asyncio.sleep(1.0)  # connected

    async def emit(batches: list[list[Sample]]) -> None:
        await asyncio.gather(*(bus.publish(b) for b in batches))

    cpu0, t0 = time.process_time(), time.monotonic()
    produced = await paced(rate, seconds, emit)
    elapsed = time.monotonic() - t0
    backlog = outbox.state.samples
    deadline = time.monotonic() + 30
    while outbox.state.samples and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    cpu = time.process_time() - cpu0  # including the drain: all the work for these samples
    memory = rss_mb()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await outbox.close()
    pairs = await asyncio.to_thread(recorder.stop)
    lat = [(a - ts) / 1e6 for a, ts in pairs]
    return Result(f"outbox+mqtt{'+db' if vm else ''}", rate, layout, produced, len(pairs),
                  elapsed, cpu, lat, memory, backlog)  # fmt: skip


async def run_bare_case(
    tmp: Path, broker: Mosquitto, rate: int, layout: str, seconds: float
) -> Result:
    root = f"b{rate}{layout}"
    cfg = config(tmp / root, broker, None, root, layout)
    assert cfg.mqtt is not None
    recorder = Recorder(broker, f"{root}/#", tmp / f"{root}.txt")
    encoder = JsonEncoder(cfg.mqtt, "bench", {})
    conn = MqttClient(cfg.mqtt, client_id=f"bare-{root}")
    await conn.start()
    await conn.connected.wait()
    store = TagStore()
    batch_id = 0

    async def emit(batches: list[list[Sample]]) -> None:
        nonlocal batch_id
        futures = []
        for samples in batches:
            store.update(samples)
            batch_id += 1
            for m in encoder.encode([Batch(batch_id, samples)]):
                futures.append(conn.publish(m.topic, m.payload, qos=1))
        await asyncio.gather(*futures)

    cpu0, t0 = time.process_time(), time.monotonic()
    produced = await paced(rate, seconds, emit)
    elapsed = time.monotonic() - t0
    cpu = time.process_time() - cpu0
    memory = rss_mb()
    await conn.close()
    pairs = await asyncio.to_thread(recorder.stop)
    lat = [(a - ts) / 1e6 for a, ts in pairs]
    return Result("bare loop", rate, layout, produced, len(pairs), elapsed, cpu, lat, memory, 0)


def table(results: list[Result]) -> str:
    head = ("| case | rate/s | layout | produced | received | throughput/s | CPU µs/sample "
            "| p50 ms | p99 ms | RSS MB | backlog at end |")  # fmt: skip
    lines = [head, "|" + "---|" * 11]
    for r in results:
        lines.append(
            f"| {r.case} | {r.rate} | {r.layout} | {r.produced} | {r.delivered} | "
            f"{r.throughput:.0f} | {r.cpu_us_per_sample:.1f} | {r.pct(0.5):.1f} | "
            f"{r.pct(0.99):.1f} | {r.rss_mb:.0f} | {r.backlog} |"
        )
    return "\n".join(lines)


def outbox_ratios(results: list[Result]) -> str:
    out = []
    for r in results:
        if r.case != "outbox+mqtt":
            continue
        same = [b for b in results if b.case == "bare loop" and b.rate == r.rate]
        bare = next((b for b in same if b.layout == r.layout), None)
        if bare is None:
            continue
        extra = r.cpu_us_per_sample - bare.cpu_us_per_sample
        out.append(
            f"- {r.rate}/s, {r.layout} layout: outbox+mqtt {r.cpu_us_per_sample:.1f} µs/sample, "
            f"bare {bare.cpu_us_per_sample:.1f} µs/sample: "
            f"ratio {r.cpu_us_per_sample / bare.cpu_us_per_sample:.2f}, "
            f"outbox share of end-to-end CPU {max(0.0, extra) / r.cpu_us_per_sample:.0%}"
        )
    return "\n".join(out)


async def main_async(args: argparse.Namespace) -> list[Result]:
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="bench-delivery-") as tmpdir:
        tmp = Path(tmpdir)
        with Mosquitto(tmp / "broker") as broker, VictoriaMetrics(tmp / "vm") as vm:
            for rate in args.rates:
                for layout in args.layouts:
                    for case in ("bare", "outbox", "outbox+db"):
                        if case == "bare":
                            r = await run_bare_case(tmp, broker, rate, layout, args.seconds)
                        else:
                            db = vm if case == "outbox+db" else None
                            r = await run_outbox_case(tmp, broker, db, rate, layout, args.seconds)
                        results.append(r)
                        print(table([r]).splitlines()[-1], flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rates", type=lambda s: [int(x) for x in s.split(",")], default=[10000])
    # `make bench` runs the batch cases only (the per-tag layout has bench/mqtt_per_tag.py, the
    # end-to-end path bench/end_to_end.py): all of them took three of its ten minutes.
    parser.add_argument("--layouts", type=lambda s: s.split(","), default=["batch"])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results = asyncio.run(main_async(args))
    report = "\n".join([
        f"Delivery benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{os.cpu_count()} CPUs, {args.seconds:.0f} s per case",
        "", table(results), "", outbox_ratios(results), "",
    ])  # fmt: skip
    print(report)
    if args.out:
        args.out.write_text(report)


if __name__ == "__main__":
    main()
