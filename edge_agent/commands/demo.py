"""`edge-agent demo`: the simulated plant, a broker and the agent in one command, with a live view.

The one place the agent imports the simulators. Everything runs on one event loop:

- the plant simulators (OPC UA and Modbus TCP) on free loopback ports;
- an embedded MQTT broker (amqtt, MQTT 3.1.1) on a free loopback port unless `--broker` names
  one; its address is printed so that any MQTT client can subscribe;
- InfluxDB: unless `--influx` names one, the influx sink points at a closed loopback port, so its
  data visibly waits in the outbox (the depth in the view grows) instead of being dropped;
- the agent itself on `config/demo.toml`, with its state in `.demo/`.

On a terminal a rich Live view refreshes twice a second and the agent's log goes to
`.demo/agent.log`; without one (CI, a pipe) the agent logs to stdout and a summary line is printed
every few seconds. Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import tomllib
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import structlog
from rich.columns import Columns
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from edge_agent.commands.arguments import add_config_argument, command_parser
from edge_agent.commands.demo_fleet import (
    PLANT_LEVEL_TOML,
    UnitAgentProcess,
    point_sources_at_broker,
)
from edge_agent.config import AgentConfig
from edge_agent.config.loader import ConfigError
from edge_agent.contracts.samples import Quality, Sample
from edge_agent.contracts.status import ComponentStatus
from edge_agent.kpi.engine import STATE_FILE as KPI_STATE_FILE
from edge_agent.kpi.state import forget_totaliser_readings
from edge_agent.logs import configure_logging
from edge_agent.runtime import EXIT_FAILURE, Agent, run_agent
from edge_agent.status_board import StatusBoard
from edge_agent.tagstore import TagStore

log = structlog.get_logger(__name__)

DEMO_TOML = Path(__file__).resolve().parents[2] / "config" / "demo.toml"
QUALITY_STYLE = {Quality.GOOD: "green", Quality.UNCERTAIN: "yellow", Quality.BAD: "red"}
# How long each demo part (embedded broker, simulators) may take to stop before it is abandoned.
STOP_PART_TIMEOUT_S = 5.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------------- the parts


class EmbeddedBroker:
    """amqtt on a loopback port: anonymous, no $SYS noise; for the demo only."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._broker: Any = None

    async def start(self) -> None:
        from amqtt.broker import Broker

        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {}},
        }
        self._broker = Broker(config)
        await self._broker.start()

    async def stop(self) -> None:
        if self._broker is not None:
            await self._broker.shutdown()
            self._broker = None


def demo_document(
    path: Path,
    opcua_endpoint: str,
    modbus_endpoint: str,
    mqtt: tuple[str, int],
    influx_url: str | None,
    state_dir: Path,
    health_port: int,
    *,
    embedded_broker: bool,
) -> dict[str, Any]:
    """The demo config pointed at this run's simulators, broker, state dir and health port."""
    from simulators.agent_config import demo_config

    doc = demo_config(opcua_endpoint, modbus_endpoint, path)
    doc.setdefault("agent", {})["state_dir"] = str(state_dir)
    section = doc.setdefault("mqtt", {})
    section["host"], section["port"] = mqtt
    if embedded_broker:
        section["protocol"] = "3.1.1"  # amqtt speaks 3.1.1 only
        # SCADA commands insist on MQTT 5 (retain-as-published marks stale commands); the
        # advisory view and the data flow need no commands. `--broker` with an MQTT 5 broker
        # (Mosquitto) brings them back.
        doc.setdefault("control", {})["commands"] = False
        doc.setdefault("alarms", {}).setdefault("commands", {})["enabled"] = False
    if influx_url is not None or "influx" not in doc:
        influx = doc.setdefault("influx", {"api": "v2", "org": "demo", "bucket": "smelter"})
        # Nothing listens there: the outbox holds InfluxDB's share until a database appears.
        influx["url"] = influx_url or f"http://127.0.0.1:{free_port()}"
    doc.setdefault("health", {})["listen"] = f"127.0.0.1:{health_port}"
    return doc


# ---------------------------------------------------------------------------------- the view


def _fmt(sample: Sample | None, reason_chars: int = 28) -> str:
    if sample is None:
        return "–"
    if sample.value is None:
        reason = sample.reason or "bad"
        return reason if len(reason) <= reason_chars else reason[: reason_chars - 1] + "…"
    if isinstance(sample.value, bool | str):
        return str(sample.value)
    if isinstance(sample.value, int):
        return f"{sample.value:,}"
    return f"{sample.value:,.3g}" if abs(sample.value) < 1000 else f"{sample.value:,.0f}"


def _quality(sample: Sample | None) -> Text:
    if sample is None:
        return Text("absent", style="dim")
    return Text(sample.quality.value, style=QUALITY_STYLE[sample.quality])


def _unit_table(unit: str, tags: list[tuple[str, str]], snapshot: dict[str, Sample]) -> Table:
    table = Table(title=unit, title_style="bold", expand=False, pad_edge=False)
    table.add_column("tag", no_wrap=True)
    table.add_column("value", justify="right", no_wrap=True)
    table.add_column("unit", style="dim", no_wrap=True)
    table.add_column("quality", no_wrap=True)
    for tag, eng_unit in tags:
        sample = snapshot.get(tag)
        table.add_row(tag.split(".", 1)[1], _fmt(sample), eng_unit, _quality(sample))
    return table


def _kpi_panel(snapshot: dict[str, Sample]) -> Panel:
    def row(label: str, tag: str, unit: str = "") -> tuple[str, str, str, Text]:
        sample = snapshot.get(tag)
        return label, _fmt(sample), unit, _quality(sample)

    table = Table(show_header=False, box=None, pad_edge=False)
    for _ in range(4):
        table.add_column()
    rows = [
        row("recycled ratio now", "kpi.recycled_ratio.now", "%"),
        row("recycled ratio day", "kpi.recycled_ratio.day", "%"),
        row("recycled ratio fiscal year", "kpi.recycled_ratio.fiscal_year", "%"),
        row("  target", "kpi.recycled_ratio.target", "%"),
        row("  gap to target", "kpi.recycled_ratio.gap", "pp"),
        row("heat margin", "kpi.heat_margin_mw", "MW"),
        row("advisor", "kpi.advisor.validity"),
        row("  policy", "kpi.advisor.policy"),
        row("  reason", "kpi.advisor.reason"),
    ]
    rows += [
        row(f"  recommends {tag.removeprefix('kpi.advisor.')}", tag)
        for tag in sorted(snapshot)
        if tag.startswith("kpi.advisor.") and tag.endswith("_sp")
    ]
    rows += [
        row("CO2", "kpi.co2.tph", "t/h"),
        row("CO2 per t Cu", "kpi.co2.per_t_cu", "t/t"),
    ]
    for r in rows:
        table.add_row(*r)
    if not any(t.startswith("kpi.") for t in snapshot):
        table.add_row("(no kpi.* tags yet)", "", "", Text(""))
    return Panel(table, title="KPIs", border_style="cyan")


def _delivery_panel(statuses: list[ComponentStatus]) -> Panel:
    table = Table(box=None, pad_edge=False)
    for col in ("component", "state", "published", "depth", "oldest s"):
        table.add_column(col)
    for s in statuses:
        if s.kind not in ("sink", "outbox", "source"):
            continue
        style = "green" if s.healthy else "red"
        published = s.counters.get("samples_published_total", s.counters.get("samples_read_total"))
        table.add_row(
            f"{s.kind} {s.name}",
            Text(s.state, style=style),
            "" if published is None else f"{published:,.0f}",
            f"{s.gauges['depth_samples']:,.0f}" if "depth_samples" in s.gauges else "",
            f"{s.gauges['oldest_age_seconds']:.0f}" if "oldest_age_seconds" in s.gauges else "",
        )
    return Panel(table, title="sources, sinks, outbox", border_style="magenta")


def render(cfg: AgentConfig, store: TagStore, board: StatusBoard, header: str) -> Group:
    """One frame of the live view."""
    snapshot = store.snapshot()
    units: dict[str, list[tuple[str, str]]] = {}
    for tag in cfg.tags().values():
        units.setdefault(tag.id.split(".", 1)[0], []).append((tag.id, tag.unit))
    tables = [_unit_table(unit, tags, snapshot) for unit, tags in units.items()]
    return Group(
        Text(header, style="bold"),
        Text(board.summary(), style="dim"),
        Columns([_kpi_panel(snapshot), _delivery_panel(board.statuses())]),
        Columns(tables),
    )


def summary_line(store: TagStore, board: StatusBoard) -> str:
    """The headless view: one plain line."""
    snap = store.snapshot()
    parts = [board.summary()]
    for label, tag in (
        ("recycled", "kpi.recycled_ratio.now"),
        ("heat_margin_mw", "kpi.heat_margin_mw"),
        ("advisor", "kpi.advisor.validity"),
        ("co2_tph", "kpi.co2.tph"),
    ):
        if tag in snap:
            parts.append(f"{label}={_fmt(snap[tag], reason_chars=0) if snap[tag].good else 'bad'}")
    sinks = [f"{s.name} {s.state}" for s in board.statuses() if s.kind == "sink"]
    return "demo: " + "; ".join(parts + sinks)


# ----------------------------------------------------------------------------------- running


async def run_demo(args: argparse.Namespace, state_dir: Path, interactive: bool) -> int:
    """`state_dir` exists and is absolute (the caller made it, off the event loop)."""
    from simulators.simulation import Simulation, SimulationOptions

    sim = Simulation(SimulationOptions(opcua_port=0, modbus_port=0, time_scale=args.time_scale))
    broker: EmbeddedBroker | None = None
    unit: UnitAgentProcess | None = None
    view: asyncio.Task[None] | None = None
    await sim.start()
    try:
        if args.broker:
            host, _, port = args.broker.rpartition(":")
            mqtt = (host or "127.0.0.1", int(port))
        else:
            broker = EmbeddedBroker(free_port())
            await broker.start()
            mqtt = ("127.0.0.1", broker.port)
        health_port = free_port()
        doc = demo_document(
            Path(args.config), sim.opcua_endpoint, sim.modbus_endpoint, mqtt, args.influx,
            state_dir, health_port, embedded_broker=broker is not None,
        )  # fmt: skip
        if args.fleet:  # docs/fleet.md: the kiln's unit agent in its own process
            version = "3.1.1" if broker is not None else "5"  # amqtt speaks 3.1.1 only
            point_sources_at_broker(doc, *mqtt, version)
            unit = UnitAgentProcess(sim.modbus_endpoint, mqtt, version, state_dir)
            unit.start()
        cfg = AgentConfig.model_validate(doc)
        root = f"{cfg.mqtt.topic_root}/{cfg.agent.site}" if cfg.mqtt else "?"
        header = (
            f"MQTT broker: mqtt://{mqtt[0]}:{mqtt[1]}  (subscribe to {root}/#)   "
            f"health: http://127.0.0.1:{health_port}/healthz   Ctrl-C stops"
        )
        print(header, flush=True)
        print(
            f"simulators: {sim.opcua_endpoint}  {sim.modbus_endpoint}   state: {state_dir}",
            flush=True,
        )

        def started(agent: Agent) -> None:
            nonlocal view
            if view is not None:
                view.cancel()
            show = _live if interactive else _headless
            view = asyncio.create_task(show(agent, header))

        code = await run_agent(cfg, on_started=started)
    finally:
        if view is not None:
            view.cancel()
        if unit is not None:
            await asyncio.to_thread(unit.stop)
        if broker is not None:
            await _stop_within(broker.stop(), "broker", STOP_PART_TIMEOUT_S)
        await _stop_within(sim.stop(), "simulators", STOP_PART_TIMEOUT_S)
    print("demo stopped", flush=True)
    return code


async def _stop_within(stopping: Coroutine[Any, Any, None], part: str, timeout_s: float) -> None:
    """Stop one demo part, but never let it hold Ctrl-C up.

    amqtt's shutdown can wait indefinitely for a subscriber that stays connected; the demo is
    leaving anyway, so after `timeout_s` the part is abandoned (its task is cancelled, not awaited,
    since a swallowed cancellation must not hang the exit either).
    """
    task = asyncio.ensure_future(stopping)
    done, _ = await asyncio.wait({task}, timeout=timeout_s)
    if not done:
        task.cancel()
        log.warning("demo_part_stop_timeout", part=part, timeout_s=timeout_s)


async def _headless(agent: Agent, header: str) -> None:
    while True:
        await asyncio.sleep(5.0)
        print(summary_line(agent.store, agent.board), flush=True)


async def _live(agent: Agent, header: str) -> None:
    console = Console()
    frame: Callable[[], Group] = lambda: render(agent.cfg, agent.store, agent.board, header)  # noqa: E731
    with Live(frame(), console=console, refresh_per_second=2, screen=False) as live:
        while True:
            await asyncio.sleep(0.5)
            live.update(frame())


def _demo_command(args: argparse.Namespace) -> int:
    if args.fleet and args.config == str(DEMO_TOML):
        args.config = str(PLANT_LEVEL_TOML)
    interactive = sys.stdout.isatty() and not args.headless
    state_dir = Path(args.state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    # The simulators' totalisers start afresh each run; the KPI windows carry on from theirs.
    forget_totaliser_readings(state_dir / KPI_STATE_FILE)
    level = args.log_level or "info"
    if interactive:
        # The view owns the terminal; the log goes to a file beside the state.
        log_file = (state_dir / "agent.log").open("a", encoding="utf-8")
        configure_logging(level, "json", stream=log_file)
    else:
        configure_logging(level, "console" if args.headless else "auto")
    try:
        with Path(args.config).open("rb") as f:
            tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError([f"{args.config}: {exc}"]) from None
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(run_demo(args, state_dir, interactive))
    except Exception:
        log.exception("demo_failed")
        return EXIT_FAILURE
    finally:
        loop.run_until_complete(_cancel_leftovers())
        loop.close()


async def _cancel_leftovers() -> None:
    """Client libraries leave helper tasks behind; end them before the loop closes."""
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=2.0)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = command_parser(
        subparsers,
        "demo",
        help="run the simulated plant, a broker and the agent with a live view",
        description=__doc__ or "",
        examples=[
            "edge-agent demo",
            "edge-agent demo --headless --time-scale 60",
            "edge-agent demo --fleet",
        ],
        exits=["0      stopped by Ctrl-C", "1      a part failed to start or stop"],
    )
    add_config_argument(parser, default=str(DEMO_TOML))
    parser.add_argument(
        "--broker", metavar="HOST:PORT", help="use this broker, not an embedded one"
    )
    parser.add_argument("--influx", metavar="URL", help="write to this InfluxDB (v2 API)")
    parser.add_argument("--state-dir", default=".demo", metavar="DIR")
    parser.add_argument("--time-scale", type=float, default=1.0, help="simulated s per wall s")
    parser.add_argument("--headless", action="store_true", help="log lines, no live view")
    parser.add_argument(
        "--fleet", action="store_true",
        help="two agents: the kiln's unit agent publishing Sparkplug B, and this one on "
        "config/plant-level.toml reading it (docs/fleet.md)",
    )  # fmt: skip
    parser.set_defaults(func=_demo_command)
