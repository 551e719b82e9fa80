"""Per-tag layout: CPU per MQTT message, the agent's encoder and connection layer against bare
paho publishing the same messages, in the same run, interleaved; plus the batch schemas' size.

    python -m bench.mqtt_per_tag [--messages 20000] [--rounds 3] [--no-write]

Cases, each publishing `messages` QoS 1 messages (one per sample, `{root}/{site}/{unit}/{name}`)
to one Mosquitto and waiting for every PUBACK; CPU time is this process's (event loop and paho's
network thread) from the first publish to the last PUBACK, per message:

- bare paho: `paho.mqtt.client.Client.publish` of payloads made with `json.dumps` in the loop,
  a counter in `on_publish`: the floor any Python publisher on paho pays;
- bare paho with its own in-flight window (`max_inflight_messages_set(1000)`), which rescans
  every message it holds on each PUBACK: what the agent's connection layer used before;
- agent: `JsonEncoder.encode` (per-tag layout) and `MqttClient.publish` (its own window of
  `max_inflight`), awaiting the futures as the JSON sink does.

The ratio agent / bare is the agent's overhead per message. Rounds alternate A B A B; medians.
The batch rows give bytes per float tag of the two batch schemas (no broker needed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.acquisition import write_section
from drivers.json_batch import encode_v1, encode_v2
from drivers.mqtt_client import MqttClient
from edge_agent.config import MqttSection
from edge_agent.contracts.samples import Quality, Sample, iso_utc, shortest_float32
from edge_agent.outbox import Batch
from edge_agent.sinks.mqtt_json import JsonEncoder
from tests.support.services import Mosquitto

MARKERS = ("<!-- bench.mqtt_per_tag:begin -->", "<!-- bench.mqtt_per_tag:end -->")
UNITS = ("fsf", "offgas", "kiln", "kpi")
TAGS = 500


def samples(n: int, t0: int) -> list[Sample]:
    """`n` samples of 500 float32 tags in four units, 10 Hz cycles (the Modbus case)."""
    return [
        Sample(f"{UNITS[i % TAGS % 4]}.tag_{i % TAGS:04d}",
               shortest_float32(1000 + (i % TAGS) * 1.37913 + i // TAGS),
               Quality.GOOD, t0 + (i // TAGS) * 100_000_000)
        for i in range(n)
    ]  # fmt: skip


async def bare(broker: Mosquitto, work: list[Sample], inflight: int = 0) -> float:
    """CPU µs per message: json.dumps + paho publish, PUBACKs counted in paho's thread.
    `inflight` 0: paho's fastest setting (no in-flight window of its own, which rescans every
    held message on each PUBACK); 1000: its own window, what the agent used before."""
    done = threading.Event()
    acked = 0

    def on_publish(*_: object) -> None:
        nonlocal acked
        acked += 1
        if acked == len(work):
            done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bare-{time.time_ns()}",
                         protocol=mqtt.MQTTv5)  # fmt: skip
    client.max_inflight_messages_set(inflight)
    client.max_queued_messages_set(0)
    client.on_publish = on_publish
    client.connect(broker.host, broker.port)
    client.loop_start()
    await asyncio.sleep(0.3)
    cpu = time.process_time()
    for s in work:
        body = {"value": s.value, "quality": s.quality.value, "ts": iso_utc(s.ts_ns),
                "ts_ns": s.ts_ns}  # fmt: skip
        client.publish(f"bench/bare/{s.tag.replace('.', '/')}", json.dumps(body).encode(), qos=1)
    await asyncio.to_thread(done.wait, 60)
    used = time.process_time() - cpu
    client.disconnect()
    client.loop_stop()
    return used / len(work) * 1e6


async def agent(broker: Mosquitto, work: list[Sample]) -> float:
    """CPU µs per message: the sink's encoder and the connection layer, futures awaited."""
    settings = MqttSection(host=broker.host, port=broker.port, topic_root="bench")
    encoder = JsonEncoder(settings, "agent", {})
    conn = MqttClient(settings, client_id=f"agent-{time.time_ns()}")
    await conn.start()
    await conn.connected.wait()
    await asyncio.sleep(0.3)
    cpu = time.process_time()
    futures = [
        conn.publish(m.topic, m.payload, qos=1, retain=m.retain)
        for i in range(0, len(work), TAGS)
        for m in encoder.encode([Batch(i, work[i : i + TAGS])])
    ]
    for fut in futures:
        await fut
    used = time.process_time() - cpu
    await conn.close()
    return used / len(work) * 1e6


def batch_sizes() -> list[str]:
    work = samples(TAGS, 1_795_000_000_000_000_000)
    rows = []
    for unit in UNITS:
        mine = [s for s in work if s.tag.startswith(f"{unit}.")]
        v1 = len(encode_v1("demo", unit, mine, {})) / len(mine)
        v2 = len(encode_v2("demo", unit, mine)) / len(mine)
        rows.append((v1, v2))
    v1 = statistics.mean(r[0] for r in rows)
    v2 = statistics.mean(r[1] for r in rows)
    return [
        f"| batch layout, `edge-agent/batch/1` | bytes per float tag | {v1:.1f} |",
        f"| batch layout, `edge-agent/batch/2` | bytes per float tag | {v2:.1f} (target ≤ 40) |",
    ]


async def measure(args: argparse.Namespace) -> str:
    with tempfile.TemporaryDirectory(prefix="bench-tag-") as tmp, Mosquitto(Path(tmp)) as broker:
        bares: list[float] = []
        windowed: list[float] = []
        agents: list[float] = []
        for r in range(args.rounds + 1):  # the first round warms up broker and caches
            work = samples(args.messages, time.time_ns())
            b = await bare(broker, work)
            w = await bare(broker, work, 1000)
            a = await agent(broker, work)
            print(f"round {r}: bare {b:.1f}, bare windowed {w:.1f}, agent {a:.1f} µs/msg",
                  flush=True)  # fmt: skip
            if r:
                bares.append(b)
                windowed.append(w)
                agents.append(a)
    b, w, a = (statistics.median(x) for x in (bares, windowed, agents))
    return "\n".join([
        "## MQTT per-tag layout (bench/mqtt_per_tag.py)",
        "",
        f"{args.messages} QoS 1 messages per case to one Mosquitto, PUBACKs awaited, "
        f"{args.rounds} interleaved rounds, medians; CPU of this process per message.",
        "",
        "| case | measure | value |",
        "|---|---|---|",
        f"| bare paho (json.dumps + publish), no in-flight limit: the floor "
        f"| CPU µs per message | {b:.1f} |",
        f"| bare paho, its own in-flight window of 1000 | CPU µs per message | {w:.1f} |",
        f"| agent (JsonEncoder + MqttClient) | CPU µs per message | {a:.1f} (target ≤ 25) |",
        f"| agent / floor | ratio | {a / b:.2f} |",
        *batch_sizes(),
    ])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="do not touch docs/performance.md")
    args = parser.parse_args()
    text = asyncio.run(measure(args))
    print(text)
    if not args.no_write:
        write_section(text, markers=MARKERS)


if __name__ == "__main__":
    main()
