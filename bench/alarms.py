"""Alarm benchmark: what evaluating alarms costs the acquisition path, in the same run.

    python -m bench.alarms [--sizes 1000,10000] [--seconds 4] [--no-write]

For N synthetic Modbus tags on the simulator (its own process) and one alarm definition per tag
(a mix of high, low and rate-of-change, limits out of reach so that the cost measured is the
evaluation, not event traffic), alternately twice each, best of each kept:

- acquisition: a `SourcePoller` reading back to back into a SampleBus/TagStore (the fastest
  acquisition path we have: Modbus decodes about 130 000 tags/s, so alarms weigh most here);
- acquisition + alarms: the same with the `AlarmEngine` tapping the bus.

Reported: both rates, the throughput change, and the evaluation cost per definition per sample
(`AlarmSet.on_samples` timed on the poller's own batches) as a ratio to the acquisition cost per
sample (1 / acquisition rate). The target is a throughput change of at most 10 %.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from bench.acquisition import SimProcess, _synthetic, machine, write_section
from edge_agent.acquisition import SourcePoller
from edge_agent.alarms.engine import AlarmEngine
from edge_agent.config import AgentConfig, ModbusSource
from edge_agent.contracts.samples import Sample
from edge_agent.pipeline import SampleBus
from edge_agent.tagstore import TagStore

BEGIN, END = "<!-- bench.alarms:begin -->", "<!-- bench.alarms:end -->"


@dataclass
class Row:
    definitions: int
    acquisition_tps: float
    with_alarms_tps: float
    eval_ns_per_sample: float

    @property
    def change(self) -> float:
        return 1 - self.with_alarms_tps / self.acquisition_tps

    @property
    def ratio(self) -> float:
        return self.eval_ns_per_sample * 1e-9 * self.acquisition_tps


def alarm_doc(tags: list[str]) -> list[dict[str, object]]:
    kinds = [("high", 1e12), ("low", -1e12), ("high", 1e12), ("rate_of_change", 1e12)]
    return [
        {"id": f"a{i}", "tag": tag, "kind": kinds[i % 4][0], "limit": kinds[i % 4][1],
         "deadband": 1.0, "on_delay_s": 2.0, "message": "bench"}
        for i, tag in enumerate(tags)
    ]  # fmt: skip


async def layer(src: ModbusSource, seconds: float, cfg: AgentConfig | None) -> tuple[float, float]:
    """Tags/s through the poller, and (with alarms) ns of evaluation per sample."""
    store = TagStore()
    bus = SampleBus(store)
    engine = AlarmEngine(cfg, store, bus) if cfg is not None else None
    batches: list[list[Sample]] = []
    if engine is not None:
        keep = bus.add_tap
        keep(lambda samples: batches.append(list(samples)) or [] if len(batches) < 50 else [])
    poller = SourcePoller(src.model_copy(update={"poll_interval_s": 1e-6}), bus)
    task = asyncio.create_task(poller.run())
    try:
        async with asyncio.timeout(120):
            while poller.stats.reads < 2:  # noqa: ASYNC110 (connected and warmed up)
                await asyncio.sleep(0.01)
        samples, start = poller.stats.samples, time.perf_counter()
        await asyncio.sleep(seconds)
        rate = (poller.stats.samples - samples) / (time.perf_counter() - start)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    eval_ns = 0.0
    if engine is not None and batches:
        count = sum(len(b) for b in batches)
        t0 = time.perf_counter_ns()
        for batch in batches:
            engine.alarms.on_samples(batch)
        eval_ns = (time.perf_counter_ns() - t0) / count
    return rate, eval_ns


async def measure(n: int, seconds: float) -> Row:
    async with SimProcess(n) as sim:
        base = _synthetic(sim, n)
        modbus = next(s for s in base.source if isinstance(s, ModbusSource))
        doc = base.model_dump(mode="json", exclude_none=True)
        doc["source"] = [s for s in doc["source"] if s["name"] == modbus.name]
        doc["alarm"] = alarm_doc([t.id for t in modbus.tag])
        doc["agent"]["state_dir"] = str(Path("/tmp") / f"bench-alarms-{n}")
        with_alarms = AgentConfig.model_validate(doc)
        plain, alarmed, evals = [], [], []
        for _ in range(2):
            plain.append((await layer(modbus, seconds, None))[0])
            rate, eval_ns = await layer(modbus, seconds, with_alarms)
            alarmed.append(rate)
            evals.append(eval_ns)
        return Row(n, max(plain), max(alarmed), min(evals))


def render(rows: list[Row], seconds: float) -> str:
    lines = [
        "## Alarms",
        "",
        "`python -m bench.alarms`: the acquisition layer over Modbus (back to back, the fastest "
        "path)",
        "with and without the alarm engine tapping the bus, one definition per tag, same "
        "simulator,",
        f"same run, alternating, {seconds:g} s windows, best of two. Evaluation is timed on the "
        "poller's own batches.",
        "",
        f"Machine: {machine()}.",
        "",
        "The rate columns swing by tens of percent between windows on a shared machine; the "
        "evaluation",
        "ratio (timed on the same batches) is the stable figure. A tag watched by one limit or "
        "rate-of-change",
        'alarm is settled inline (docs/alarms.md, "Cost").',
        "",
        "| definitions | acquisition tags/s | with alarms tags/s | throughput lost "
        "| evaluation ns / definition / sample | evaluation / acquisition cost |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.definitions:,} | {r.acquisition_tps:,.0f} | {r.with_alarms_tps:,.0f} "
            f"| {100 * r.change:.1f} % | {r.eval_ns_per_sample:,.0f} | {100 * r.ratio:.1f} % |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    rows = [asyncio.run(measure(int(n), args.seconds)) for n in args.sizes.split(",")]
    text = render(rows, args.seconds)
    print(text)
    if not args.no_write:
        write_section(text, markers=(BEGIN, END))


if __name__ == "__main__":
    main()
