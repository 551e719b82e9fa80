"""MQTT and Sparkplug B source benchmark: our sources against a bare paho subscriber decoding the
same payloads, in the same run, on a private Mosquitto; and unit → plant latency.

    python -m bench.fleet [--seconds 6] [--out docs/performance.md]

A publisher process offers 1 000 and 10 000 metrics per second: Sparkplug DDATA with 100 metrics
per message (a unit agent's batch), or one JSON message per metric (our sink's per-tag layout).
In this process either our source runs (SourcePoller → SampleBus → TagStore, as in the agent)
or a bare paho client parses each payload (protobuf or json.loads) and reads every value. CPU is
this process's (the paho network thread included), so the ratio is what our host logic, quality,
timestamps and samples cost over merely decoding. Latency: the publisher stamps each metric; the
source's sample time minus that stamp is broker + decoding + batching (`poll_interval_s`). Then
the real kiln unit agent (`edge-agent run`, config/unit-kiln.toml on the Modbus simulator) to
the plant's Sparkplug source: the unit's acquisition to the plant's TagStore; a KPI adds at most
`kpi.interval_s` to that.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.acquisition import write_section
from drivers.sparkplug import sparkplug_b_pb2 as pb
from edge_agent.acquisition import SourcePoller
from edge_agent.config import MqttSource, SparkplugSource
from edge_agent.contracts.samples import Sample
from edge_agent.pipeline import SampleBus
from edge_agent.tagstore import TagStore
from tests.support.services import Mosquitto

MARKERS = ("<!-- bench.fleet:begin -->", "<!-- bench.fleet:end -->")
SECTION = "## MQTT and Sparkplug B sources (bench/fleet.py)"
DOC = Path(__file__).resolve().parent.parent / "docs" / "performance.md"
PER_MESSAGE = 100  # Sparkplug metrics per DDATA
JSON_TOPICS = 1000  # distinct JSON topics (tags)

PUBLISHER = r"""
import json, sys, threading, time
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from drivers.sparkplug import payload as codec
from drivers.sparkplug.payload import DataType, MetricOut

port, mode, rate, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[5])
seconds = float(sys.argv[4])
c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-pub")
rebirth = threading.Event()
c.on_message = lambda *a: rebirth.set()
c.connect("127.0.0.1", port)
c.subscribe("spBv1.0/bench/NCMD/unit", 0)
c.loop_start()
seq = 0
def births():
    global seq
    now = time.time_ns() // 1_000_000
    bd = MetricOut(now, 0, DataType.INT64, name="bdSeq", with_datatype=True)
    c.publish("spBv1.0/bench/NBIRTH/unit", codec.encode(now, [bd], 0))
    ms = [MetricOut(now, 0.0, DataType.DOUBLE, name=f"m{i:05d}", alias=i + 16, with_datatype=True)
          for i in range(n)]
    c.publish("spBv1.0/bench/DBIRTH/unit/u", codec.encode(now, ms, 1))
    seq = 1
if mode == "sparkplug":
    time.sleep(0.3)  # subscribed to NCMD, so that a rebirth request is heard
    births()
    time.sleep(0.5)
sys.stdout.write("ready\n"); sys.stdout.flush()
sys.stdin.readline()  # go
sent, start, k = 0, time.monotonic(), 0
while time.monotonic() - start < seconds:
    due = int((time.monotonic() - start) * rate)
    while sent < due:
        now_ns = time.time_ns()
        if mode == "sparkplug":
            if rebirth.is_set():
                rebirth.clear(); births()
            seq = (seq + 1) % 256
            ms = [MetricOut(now_ns // 1_000_000, float(k + i), DataType.DOUBLE,
                            alias=(sent + i) % n + 16) for i in range(100)]
            c.publish("spBv1.0/bench/DDATA/unit/u", codec.encode(now_ns // 1_000_000, ms, seq))
            sent += 100
        else:
            body = json.dumps({"value": float(k), "quality": "good", "ts_ns": now_ns}).encode()
            c.publish(f"bench/u/t{sent % n:05d}", body, qos=1)
            sent += 1
        k += 1
    time.sleep(0.002)
time.sleep(0.5)
sys.stdout.write(f"{sent}\n"); sys.stdout.flush()
c.disconnect(); c.loop_stop()
"""


@dataclass
class Result:
    metrics: int = 0
    sent: int = 0
    cpu_s: float = 0.0
    wall_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def cpu_us(self) -> float:
        return self.cpu_s * 1e6 / max(self.metrics, 1)

    @property
    def core_pct(self) -> float:
        return 100 * self.cpu_s / self.wall_s


class Publisher:
    def __init__(self, port: int, mode: str, rate: int, seconds: float, n: int) -> None:
        argv = [sys.executable, "-c", PUBLISHER, str(port), mode, str(rate), str(seconds), str(n)]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ready(self) -> None:
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def sent(self) -> int:
        assert self.proc.stdout is not None
        n = int(self.proc.stdout.readline())
        self.proc.wait(10)
        return n


class Counting:
    """The bus's writer side: counts samples and keeps every `step`-th latency."""

    def __init__(self, step: int = 10) -> None:
        self.result = Result()
        self.step = step

    async def append(self, samples: Sequence[Sample]) -> None:
        r = self.result
        r.metrics += len(samples)
        for s in samples[:: self.step]:
            if s.source_ns is not None:
                r.latencies_ms.append((s.acq_ns - s.source_ns) / 1e6)


def source_config(mode: str, port: int, n: int, version: str) -> MqttSource | SparkplugSource:
    base = {"name": "bench", "endpoint": f"mqtt://127.0.0.1:{port}", "mqtt_version": version,
            "client_id": f"bench-{uuid.uuid4().hex[:6]}", "session_expiry_s": 0}  # fmt: skip
    if mode == "sparkplug":
        tags = [{"id": f"u.m{i:05d}", "device": "u", "metric": f"m{i:05d}"} for i in range(n)]
        return SparkplugSource.model_validate(
            {
                **base,
                "protocol": "sparkplug",
                "group_id": "bench",
                "edge_node_id": "unit",
                "tag": tags,
            }
        )
    tags = [{"id": f"u.t{i:05d}", "topic": f"bench/u/t{i:05d}"} for i in range(n)]
    return MqttSource.model_validate({**base, "protocol": "mqtt", "tag": tags})


async def run_ours(port: int, mode: str, version: str, rate: int, seconds: float) -> Result:
    n = PER_MESSAGE * 10 if mode == "sparkplug" else JSON_TOPICS
    counting = Counting()
    store = TagStore()
    poller = SourcePoller(source_config(mode, port, n, version), SampleBus(store, counting))
    task = asyncio.create_task(poller.run())
    await asyncio.sleep(1.0)  # connected and subscribed (its rebirth request is out)
    pub = Publisher(port, mode, rate, seconds, n)
    await asyncio.to_thread(pub.ready)
    await asyncio.sleep(0.5)
    counting.result = Result()
    cpu0, t0 = time.process_time(), time.monotonic()
    pub.go()
    sent = await asyncio.to_thread(pub.sent)
    deadline = time.monotonic() + 10
    while counting.result.metrics < sent and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    result = counting.result
    result.cpu_s, result.wall_s = time.process_time() - cpu0, time.monotonic() - t0
    result.sent = sent
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    if result.metrics < sent:
        print(f"  ours {mode} {rate}/s: {result.metrics} of {sent} metrics arrived", flush=True)
    return result


def run_bare(port: int, mode: str, version: str, rate: int, seconds: float) -> Result:
    """A paho subscriber that only decodes: the least any MQTT consumer must spend."""
    n = PER_MESSAGE * 10 if mode == "sparkplug" else JSON_TOPICS
    result = Result()
    lock = threading.Lock()

    def on_message(client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if mode == "sparkplug":
            payload = pb.Payload()
            payload.ParseFromString(msg.payload)
            count = 0
            for m in payload.metrics:
                kind = m.WhichOneof("value")
                if kind is not None:
                    getattr(m, kind)
                    count += 1
        else:
            doc = json.loads(msg.payload)
            count = 1 if "value" in doc else 0
        with lock:
            result.metrics += count

    protocol = mqtt.MQTTv5 if version == "5" else mqtt.MQTTv311
    client_id = f"bare-{uuid.uuid4().hex[:6]}"
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.subscribe(
        "spBv1.0/bench/#" if mode == "sparkplug" else "bench/u/#", 0 if mode == "sparkplug" else 1
    )
    client.loop_start()
    time.sleep(0.5)
    pub = Publisher(port, mode, rate, seconds, n)
    pub.ready()
    time.sleep(0.5)
    with lock:
        result.metrics = 0
    cpu0, t0 = time.process_time(), time.monotonic()
    pub.go()
    sent = pub.sent()
    deadline = time.monotonic() + 10
    while result.metrics < sent and time.monotonic() < deadline:
        time.sleep(0.05)
    result.cpu_s, result.wall_s = time.process_time() - cpu0, time.monotonic() - t0
    client.disconnect()
    client.loop_stop()
    return result


async def unit_to_plant_latency(seconds: float) -> list[float]:
    """The real kiln unit agent → the plant's Sparkplug source: acquisition to TagStore, ms."""
    from simulators.simulation import Simulation, SimulationOptions
    from tests.support.fleet_harness import UnitAgent

    with tempfile.TemporaryDirectory() as tmp:
        broker = Mosquitto(Path(tmp) / "broker")
        broker.first_start()
        sim = Simulation(SimulationOptions(opcua_port=0, modbus_port=0, serve_opcua=False,
                                           time_scale=60, tick_s=0.1))  # fmt: skip
        await sim.start()
        unit = UnitAgent(sim, broker.port, Path(tmp) / "unit")  # type: ignore[arg-type]
        unit.start()
        kiln = [
            ("kiln.feed_rate", "feed_rate"),
            ("kiln.temp", "temp"),
            ("kiln.fuel_flow", "fuel_flow"),
        ]
        src = SparkplugSource.model_validate({
            "name": "kiln", "protocol": "sparkplug", "endpoint": f"mqtt://127.0.0.1:{broker.port}",
            "group_id": "smelter", "edge_node_id": "unit-kiln", "session_expiry_s": 0,
            "tag": [{"id": t, "device": "kiln", "metric": m} for t, m in kiln],
        })  # fmt: skip
        counting = Counting(step=1)
        task = asyncio.create_task(SourcePoller(src, SampleBus(TagStore(), counting)).run())
        try:
            await asyncio.sleep(seconds)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            unit.stop()
            await sim.stop()
            broker.stop(kill=True)
    return counting.result.latencies_ms[len(kiln) :]  # after the first births


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main_async(seconds: float) -> str:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        broker = Mosquitto(Path(tmp) / "broker")
        broker.first_start()
        try:
            latency: dict[str, list[float]] = {}
            for mode, version in (("sparkplug", "5"), ("json", "5"), ("json", "3.1.1")):
                for rate in (1000, 10_000):
                    args = (broker.port, mode, version, rate, seconds)
                    bare = await asyncio.to_thread(run_bare, *args)
                    ours = await run_ours(*args)
                    latency[f"{mode}, MQTT {version}, {rate:,}"] = ours.latencies_ms
                    rows.append(
                        f"| {mode}, MQTT {version} | {rate:,} | "
                        f"{ours.metrics:,} of {ours.sent:,} | "
                        f"{bare.cpu_us:.1f} | {ours.cpu_us:.1f} | {ours.cpu_us / bare.cpu_us:.2f} "
                        f"| {ours.core_pct:.0f} % | {1e6 / ours.cpu_us:,.0f} |"
                    )
                    print(rows[-1], flush=True)
        finally:
            broker.stop(kill=True)
    unit = await unit_to_plant_latency(max(seconds, 8.0))
    lat_rows = [
        f"| {name} metrics/s (publisher → source) | {pct(v, 0.5):.0f} | {pct(v, 0.95):.0f} "
        f"| {max(v) if v else float('nan'):.0f} |"
        for name, v in latency.items()
    ]
    lat_rows.append(
        f"| kiln unit agent → plant source (acquisition → TagStore) | {pct(unit, 0.5):.0f} "
        f"| {pct(unit, 0.95):.0f} | {max(unit) if unit else float('nan'):.0f} |"
    )
    mean_unit = statistics.fmean(unit) if unit else float("nan")
    return "\n".join([
        SECTION, "",
        f"A publisher process offers the rate for {seconds:.0f} s to a private Mosquitto; in this "
        "process either our source (SourcePoller → SampleBus → TagStore) or a bare paho "
        "subscriber that only decodes the same payloads (protobuf / json.loads, every value "
        "read). Sparkplug: DDATA of 100 metrics; JSON: one QoS 1 message per metric. CPU is "
        "this process's, paho's network thread included.", "",
        "| source | offered metrics/s | received | bare paho µs/metric | ours "
        "µs/metric | ratio | ours, share of one core | ours, one-core ceiling metrics/s |",
        "|---|---|---|---|---|---|---|---|",
        *rows, "",
        "Latency, ms, from the publisher's stamp to the sample's acquisition time (the message "
        "decoded; Sparkplug stamps in milliseconds). The source hands its samples on within "
        "`poll_interval_s` (0.2 s) after that:", "",
        "| path | p50 | p95 | max |", "|---|---|---|---|", *lat_rows, "",
        f"A site KPI computed at the plant adds at most `kpi.interval_s` (5 s in the demo) to the "
        f"unit's {mean_unit:.0f} ms mean: the KPI interval, not the transport, dominates.", "",
        "Reading: the Sparkplug source keeps 10 000 metrics/s with a few per cent of one core "
        "and a one-core ceiling near 100 000 metrics/s; against bare decoding it adds the host "
        "logic (aliases, seq, quality, timestamps) and a Sample per metric. One JSON message per "
        "metric is paho-bound: its per-message cost (MQTT 5 properties, QoS 1 PUBACK) is most "
        "of the CPU for both subscribers, so about 10 000 messages/s is the one-core limit for "
        "any Python consumer; beyond that, publish Sparkplug B (or fewer, larger JSON messages).",
    ])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--out", type=Path, default=DOC)
    args = parser.parse_args()
    table = asyncio.run(main_async(args.seconds))
    print(table)
    write_section(table, args.out, MARKERS)


if __name__ == "__main__":
    main()
