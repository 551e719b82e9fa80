"""`edge-agent demo`: the simulated plant, a broker and the agent in one command, with a live view.

The one place the agent imports the simulators. Everything runs on one event loop:

- the plant simulators (OPC UA and Modbus TCP) on free loopback ports;
- an embedded MQTT broker (amqtt, MQTT 3.1.1) on a free loopback port unless `--broker` names
  one; its address is printed so that any MQTT client can subscribe;
- InfluxDB: unless `--influx` names one, a private VictoriaMetrics or InfluxDB 1.x on loopback
  when Debian's package is installed (`demo_tsdb`), which the web view's trends read; otherwise
  the InfluxDB sink is off (no sink the user never asked for shows as failed);
- the web view on the health listener, whose URL is the first line printed;
- the agent itself on `config/demo.toml`, with its state in `.demo/`.

On a terminal a rich Live view refreshes twice a second (`demo_view.py`: the last warnings with
their component, `b` lists the tags that are not Good) and the agent's log goes to
`.demo/agent.log`; without one (CI, a pipe) the agent logs to stdout and a summary line is printed
every few seconds. Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import sys
import tomllib
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, cast

import structlog

from edge_agent.commands import demo_tsdb
from edge_agent.commands.arguments import add_config_argument, command_parser
from edge_agent.commands.demo_fleet import (
    PLANT_LEVEL_TOML,
    UnitAgentProcess,
    point_sources_at_broker,
)
from edge_agent.commands.demo_tsdb import PrivateTsdb
from edge_agent.commands.demo_view import WarningTap, headless, live
from edge_agent.config import AgentConfig
from edge_agent.config.loader import ConfigError
from edge_agent.kpi.engine import STATE_FILE as KPI_STATE_FILE
from edge_agent.kpi.state import forget_totaliser_readings
from edge_agent.logs import configure_logging
from edge_agent.runtime import EXIT_FAILURE, Agent, run_agent

if TYPE_CHECKING:
    from simulators.simulation import Simulation

log = structlog.get_logger(__name__)

DEMO_TOML = Path(__file__).resolve().parents[2] / "config" / "demo.toml"
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
    influx: dict[str, Any] | None,
    state_dir: Path,
    health_port: int,
    *,
    embedded_broker: bool,
    trends: str | None = None,
    rtu_over_tcp_endpoint: str | None = None,
) -> dict[str, Any]:
    """The demo config pointed at this run's simulators, broker, state dir and health port.

    `influx` is the `[influx]` table to use (`--influx`, or the private database); without one
    the InfluxDB sink stays off rather than failing in front of the user."""
    from simulators.agent_config import demo_config

    doc = demo_config(opcua_endpoint, modbus_endpoint, path, rtu_over_tcp_endpoint)
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
    if influx is not None:
        doc["influx"] = {**doc.get("influx", {}), **influx}
    if trends is not None:
        doc.setdefault("web", {})["trends"] = trends
    doc.setdefault("health", {})["listen"] = f"127.0.0.1:{health_port}"
    return doc


# ----------------------------------------------------------------------------------- running


async def run_demo(args: argparse.Namespace, state_dir: Path, tap: WarningTap | None) -> int:
    """`state_dir` exists and is absolute (the caller made it, off the event loop); with a
    `tap` on the agent's log the live view runs, without one the headless summary lines.

    Each part registers its stop on `parts` as soon as it runs, so whatever fails (a part's
    start, the agent's config, the agent, Ctrl-C) stops exactly the parts that were started,
    newest first."""
    from simulators.simulation import Simulation, SimulationOptions

    health_port = free_port()
    # The first line: where to look. The listener answers once the agent runs, seconds later.
    print(f"web view: http://127.0.0.1:{health_port}/", flush=True)
    async with contextlib.AsyncExitStack() as parts:
        # The database starts beside the simulators: it settles before the agent connects.
        database = asyncio.create_task(_influx(args.influx, state_dir))
        parts.push_async_callback(_stop_database, database)
        sim = Simulation(SimulationOptions(opcua_port=0, modbus_port=0, time_scale=args.time_scale,
                                           modbus_rtu_over_tcp_port=0))  # fmt: skip
        await sim.start()
        parts.push_async_callback(_stop_within, sim.stop, "simulators")
        influx, trends, _ = await database
        mqtt, embedded = await _broker(args.broker, parts)
        doc = demo_document(
            Path(args.config), sim.opcua_endpoint, sim.modbus_endpoint, mqtt, influx,
            state_dir, health_port, embedded_broker=embedded, trends=trends,
            rtu_over_tcp_endpoint=sim.modbus_rtu_over_tcp_endpoint,
        )  # fmt: skip
        if args.fleet:  # docs/fleet.md: the kiln's unit agent in its own process
            version = "3.1.1" if embedded else "5"  # amqtt speaks 3.1.1 only
            point_sources_at_broker(doc, *mqtt, version)
            unit = UnitAgentProcess(sim.modbus_endpoint, mqtt, version, state_dir)
            unit.start()
            parts.push_async_callback(asyncio.to_thread, unit.stop)
        cfg = AgentConfig.model_validate(doc)
        view = _View(_print_header(cfg, sim, mqtt, health_port, state_dir), tap)
        parts.callback(view.cancel)
        code = await run_agent(cfg, on_started=view.show)
    print("demo stopped", flush=True)
    return code


async def _broker(
    address: str | None, parts: contextlib.AsyncExitStack
) -> tuple[tuple[str, int], bool]:
    """(host, port) of the broker and whether it is our embedded one: `--broker` as given."""
    if address:
        host, _, port = address.rpartition(":")
        return (host or "127.0.0.1", int(port)), False
    broker = EmbeddedBroker(free_port())
    await broker.start()
    parts.push_async_callback(_stop_within, broker.stop, "broker")
    return ("127.0.0.1", broker.port), True


def _print_header(
    cfg: AgentConfig, sim: Simulation, mqtt: tuple[str, int], health_port: int, state_dir: Path
) -> str:
    """Print where everything is; returns the header line the live view keeps on screen."""
    root = f"{cfg.mqtt.topic_root}/{cfg.agent.site}" if cfg.mqtt else "?"
    header = (
        f"MQTT broker: mqtt://{mqtt[0]}:{mqtt[1]}  (subscribe to {root}/#)   "
        f"health: http://127.0.0.1:{health_port}/healthz   Ctrl-C stops"
    )
    print(header, flush=True)
    print(
        f"simulators: {sim.opcua_endpoint}  {sim.modbus_endpoint} (RTU over TCP: "
        f"{sim.modbus_rtu_over_tcp_endpoint})   state: {state_dir}",
        flush=True,
    )
    return header


class _View:
    """The live view (with a tap on the log) or the headless summary, restarted with the agent
    after a reload."""

    def __init__(self, header: str, tap: WarningTap | None) -> None:
        self.header = header
        self.tap = tap
        self.task: asyncio.Task[None] | None = None

    def show(self, agent: Agent) -> None:
        self.cancel()
        shown = live(agent, self.header, self.tap) if self.tap is not None else headless(agent)
        self.task = asyncio.create_task(shown)

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()


async def _stop_database(
    database: asyncio.Task[tuple[dict[str, Any] | None, str | None, PrivateTsdb | None]],
) -> None:
    """Stop the private database, once it has started (it may still be starting)."""
    try:
        _, _, tsdb = await database
    except Exception:  # raised where the demo awaited it, or superseded by what unwound it
        return
    if tsdb is not None:
        await _stop_within(tsdb.stop, "database")


async def _influx(
    url: str | None, state_dir: Path
) -> tuple[dict[str, Any] | None, str | None, PrivateTsdb | None]:
    """The `[influx]` table, the web view's trend source and the private database, if any:
    `--influx URL` as given; else a private VictoriaMetrics or InfluxDB when one is installed;
    else none (the sink is off and the web view says how to turn it on)."""
    if url is not None:
        return {"api": "v2", "url": url, "org": "demo", "bucket": "smelter"}, None, None
    flavour = demo_tsdb.available()
    if flavour is None:
        print("InfluxDB sink: off (install victoria-metrics or influxdb for trends)", flush=True)
        return None, None, None
    tsdb = demo_tsdb.PrivateTsdb(flavour, state_dir)
    try:
        await tsdb.start()
    except (RuntimeError, OSError) as exc:
        log.warning("demo_tsdb_failed", server=flavour.name, error=str(exc))
        return None, None, None
    print(f"InfluxDB sink: private {flavour.name} at {tsdb.url}", flush=True)
    return tsdb.influx_section(), tsdb.trends(), tsdb


async def _stop_within(
    stop: Callable[[], Coroutine[Any, Any, None]], part: str, timeout_s: float = STOP_PART_TIMEOUT_S
) -> None:
    """Stop one demo part, but never let it hold Ctrl-C up.

    amqtt's shutdown can wait indefinitely for a subscriber that stays connected; the demo is
    leaving anyway, so after `timeout_s` the part is abandoned (its task is cancelled, not awaited,
    since a swallowed cancellation must not hang the exit either).
    """
    task = asyncio.ensure_future(stop())
    done, _ = await asyncio.wait({task}, timeout=timeout_s)
    if not done:
        task.cancel()
        log.warning("demo_part_stop_timeout", part=part, timeout_s=timeout_s)


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
        tap: WarningTap | None = WarningTap((state_dir / "agent.log").open("a", encoding="utf-8"))
        configure_logging(level, "json", stream=cast(TextIO, tap))
    else:
        tap = None
        configure_logging(level, "console" if args.headless else "auto")
    try:
        with Path(args.config).open("rb") as f:
            tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError([f"{args.config}: {exc}"]) from None
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(run_demo(args, state_dir, tap))
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
    parser.add_argument(
        "--influx", metavar="URL", help="write to this InfluxDB (v2 API), not a private one"
    )
    parser.add_argument("--state-dir", default=".demo", metavar="DIR")
    parser.add_argument("--time-scale", type=float, default=1.0, help="simulated s per wall s")
    parser.add_argument("--headless", action="store_true", help="log lines, no live view")
    parser.add_argument(
        "--fleet", action="store_true",
        help="two agents: the kiln's unit agent publishing Sparkplug B, and this one on "
        "config/plant-level.toml reading it (docs/fleet.md)",
    )  # fmt: skip
    parser.set_defaults(func=_demo_command)
