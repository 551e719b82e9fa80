"""Sparkplug B encoding benchmark: the edge node's state machine (report by exception, aliases,
protobuf) against the JSON sink's encoder on the same batches, in the same run.

    python -m bench.sparkplug [--tags 52] [--cycles 400] [--out docs/performance.md]

The batches are the demo plant's 52 tags (or a synthetic set spread over four units), every value
changing each cycle (the worst case for report by exception), then the same batches again
unchanged (its best case). CPU time is this process's; nothing touches the network, so the
numbers are the cost of turning samples into MQTT payloads and nothing else.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.acquisition import write_section
from drivers.sparkplug.topics import Topics
from edge_agent.config import MqttSection
from edge_agent.contracts.catalogue import TagInfo
from edge_agent.contracts.samples import Quality, Sample
from edge_agent.outbox import Batch
from edge_agent.sinks.mqtt_json import JsonEncoder
from edge_agent.sparkplug.catalogue import Catalogue
from edge_agent.sparkplug.node import EdgeNode

UNITS = ("fsf", "offgas", "kiln", "kpi")
MARKERS = ("<!-- bench.sparkplug:begin -->", "<!-- bench.sparkplug:end -->")
SECTION = "## Sparkplug B encoding (bench/sparkplug.py)"


def batches(tags: Sequence[str], cycles: int, t0: int, change: bool) -> list[list[Sample]]:
    out = []
    for i in range(cycles):
        t = t0 + (i + 1) * 100_000_000
        out.append([Sample(tag, 1000.0 + (i * 0.1 if change else 0.0), Quality.GOOD, t, t)
                    for tag in tags])  # fmt: skip
    return out


def measure(encode: Callable[[list[Sample]], int], work: list[list[Sample]]) -> tuple[float, int]:
    """CPU microseconds per sample, and payload bytes in total."""
    start = time.process_time()
    size = sum(encode(b) for b in work)
    return (time.process_time() - start) * 1e6 / sum(len(b) for b in work), size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tags", type=int, default=52)
    parser.add_argument("--cycles", type=int, default=400)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    tags = [f"{UNITS[i % 4]}.tag_{i:04d}" for i in range(args.tags)]
    t0 = time.time_ns()

    node = EdgeNode(Topics("bench", "edge"), Catalogue(TagInfo(t) for t in tags))
    node.new_session(0)
    node.births({})
    json_encoder = JsonEncoder(MqttSection(report_by_exception=True), "bench", {})

    def sparkplug(b: list[Sample]) -> int:
        return sum(len(m.payload) for m in node.data(b))

    def json(b: list[Sample]) -> int:
        return sum(len(m.payload) for m in json_encoder.encode([Batch(0, b)]))

    rows = []
    for label, change in (("every value changes", True), ("nothing changes", False)):
        work = batches(tags, args.cycles, t0 + (0 if change else 10**15), change)
        json_us, json_bytes = measure(json, work)
        sp_us, sp_bytes = measure(sparkplug, work)
        n = sum(len(b) for b in work)
        rows.append(
            f"| {label} | {json_us:.1f} | {sp_us:.1f} | {sp_us / json_us:.2f} "
            f"| {json_bytes / n:.0f} | {sp_bytes / n:.0f} |"
        )
    table = "\n".join(
        [
            SECTION,
            "",
            f"{args.tags} tags in four units, {args.cycles} batches of one value per tag; "
            "JSON sink encoder (per-tag layout, report by exception on) as the baseline.",
            "",
            "| case | JSON µs/sample | Sparkplug µs/sample | ratio | JSON bytes/sample "
            "| Sparkplug bytes/sample |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
            "Sparkplug's aliases and binary values make a changing sample several times smaller "
            "than the JSON message. An unchanged sample costs the edge node more CPU than the JSON "
            "encoder's report by exception, because it also tracks each unit's liveness and each "
            "metric's datatype; both stay far below the 10 000 samples/s budget of one core.",
        ]
    )
    print(table)
    if args.out is not None:
        write_section(table, args.out, MARKERS)


if __name__ == "__main__":
    main()
