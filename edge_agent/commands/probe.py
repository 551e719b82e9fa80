"""`edge-agent probe`: read every configured tag once and show what came back.

What an engineer runs when commissioning a site: it connects to every enabled source exactly as
the agent would (same drivers, security and node resolution), reads each tag once, and prints
tag, value, unit, quality, source timestamp and read latency. Subscription sources are read by
polling here, so the answer does not wait for a change; MQTT and Sparkplug sources wait (at most
their `timeout_s`) for births and retained messages. Exit status 1 when any tag is not Good.

On serial buses it also names what commissioning usually gets wrong (a missing port, the
dialout group, a wrong baud rate when every frame fails its CRC) and prints the bus-time
model: how much line time the sources on each bus book at their poll rates.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from drivers.base import DriverConnectionError, PushDriver
from edge_agent.acquisition import DriverFactory, QualityGate, make_driver, shared_driver_factory
from edge_agent.commands.arguments import add_config_argument, command_parser
from edge_agent.config import AgentConfig, ModbusSource, OpcUaSource, Source
from edge_agent.config.loader import add_set_argument, load_config
from edge_agent.config.resources import secret_values
from edge_agent.contracts.samples import Quality, Sample, iso_utc, now_ns
from edge_agent.logs import mask_secrets
from edge_agent.pipeline import SampleBus
from edge_agent.tagstore import TagStore

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]


@dataclass(frozen=True)
class ProbeRow:
    source: str
    sample: Sample
    unit: str
    latency_ms: float

    def as_dict(self) -> dict[str, Any]:
        s = self.sample
        return {
            "tag": s.tag,
            "source": self.source,
            "value": s.value,
            "unit": self.unit,
            "quality": s.quality.value,
            "reason": s.reason,
            "source_ts": iso_utc(s.source_ns) if s.source_ns is not None else None,
            "latency_ms": round(self.latency_ms, 2),
        }


async def probe_source(
    source: Source, errors: list[str], factory: DriverFactory = make_driver
) -> list[ProbeRow]:
    """Connect, read once, close; a connection failure yields every tag Bad with its reason."""
    if isinstance(source, OpcUaSource) and source.mode != "poll":
        source = source.model_copy(update={"mode": "poll"})
    units = {t.id: t.unit for t in source.tag}
    driver = factory(source)
    started = now_ns()
    try:
        await driver.connect()
        if isinstance(driver, PushDriver):  # births, retained messages: a bounded wait
            await driver.settled(source.timeout_s)
        samples = list({s.tag: s for s in await driver.read()}.values())  # the latest per tag
    except DriverConnectionError as exc:
        samples = [Sample(t.id, None, Quality.BAD, now_ns(), None, exc.reason) for t in source.tag]
        errors.append(f"{source.name}: {exc}")
    finally:
        await driver.close()
    if isinstance(source, ModbusSource):
        errors.extend(_line_problems(source, samples))
    rules = {t.id: t.quality_from for t in source.tag if t.quality_from is not None}
    gated = QualityGate(rules, SampleBus(TagStore())).apply(samples)
    return [
        ProbeRow(source.name, s, units.get(s.tag, ""), (s.acq_ns - started) / 1e6) for s in gated
    ]


async def probe(cfg: AgentConfig, errors: list[str]) -> list[ProbeRow]:
    """Every enabled source at once; connection errors (what to do about them) go to `errors`."""
    factory = shared_driver_factory()  # sources on one serial port share it, as in the agent
    parts = await asyncio.gather(
        *(probe_source(s, errors, factory) for s in cfg.source if s.enabled)
    )
    return [row for part in parts for row in part]


def _line_problems(source: ModbusSource, samples: list[Sample]) -> list[str]:
    from drivers.modbus import link_settings  # imports pymodbus: only when probing Modbus
    from drivers.modbus_line import WRONG_LINE_SETTINGS, line_settings_suspect

    if not line_settings_suspect(s.reason for s in samples):
        return []
    return [
        f"{source.name}: " + WRONG_LINE_SETTINGS.format(settings=link_settings(source).describe())
    ]


def bus_report(cfg: AgentConfig) -> list[str]:
    """The bus-time model of every serial line (drivers/modbus_line.py)."""
    from drivers.modbus_line import bus_times

    modbus = [s for s in cfg.source if s.enabled and isinstance(s, ModbusSource)]
    return [bus.describe() for bus in bus_times(modbus)]


def render_table(rows: list[ProbeRow]) -> str:
    header = ("tag", "value", "unit", "quality", "source ts", "latency ms")
    lines = [header]
    for row in rows:
        d = row.as_dict()
        value = d["value"] if d["value"] is not None else ""
        if isinstance(value, float):
            value = f"{value:.6g}"
        quality = d["quality"] + (f" ({d['reason']})" if d["reason"] else "")
        lines.append(
            (
                d["tag"],
                str(value),
                d["unit"],
                quality,
                d["source_ts"] or "-",
                f"{d['latency_ms']:.1f}",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )


def add_parser(subparsers: Subparsers) -> None:
    parser = command_parser(
        subparsers,
        "probe",
        help="read every configured tag once and print what came back",
        description="Connect to every enabled source, read each tag once, print tag, value,\n"
        "unit, quality, source timestamp and read latency. Exit 1 if any tag is not Good.",
        examples=[
            "edge-agent probe --config /etc/edge-agent/agent.toml",
            "edge-agent probe plant.toml --json",
            "edge-agent probe plant.toml --not-good",
        ],
        exits=["0      every tag read Good", "1      at least one tag is not Good"],
    )
    add_config_argument(parser)
    parser.add_argument("--json", action="store_true", help="one JSON document for scripts")
    parser.add_argument(
        "--not-good", action="store_true", help="list only the tags that are not Good, and why"
    )
    add_set_argument(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    mask_secrets(secret_values(cfg))  # its drivers log at debug what they send
    t0 = time.perf_counter()
    errors: list[str] = []
    rows = asyncio.run(probe(cfg, errors))
    ok = all(row.sample.good for row in rows)
    for error in errors:
        print(error, file=sys.stderr)
    shown = [r for r in rows if not r.sample.good] if args.not_good else rows
    if args.json:
        doc = {"ok": ok, "errors": errors, "tags": [r.as_dict() for r in shown],
               "buses": bus_report(cfg)}  # fmt: skip
        print(json.dumps(doc, ensure_ascii=False))
    else:
        if shown:
            print(render_table(shown) + "\n")
        bad = sum(not r.sample.good for r in rows)
        line = f"{len(rows) - bad}/{len(rows)} Good in {time.perf_counter() - t0:.2f} s"
        if bad and not args.not_good:
            line += f"; --not-good lists only the {bad} others"
        print(line)
        for line in bus_report(cfg):
            print(line)
    return 0 if ok else 1
