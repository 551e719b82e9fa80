"""`edge-agent run`: build every component from one validated AgentConfig and supervise them.

Exit codes (also in the README, and what systemd's Restart= logic sees):
    0    clean stop after SIGTERM or SIGINT
    1    a failure: startup error, or a service that did not stop within agent.shutdown_timeout_s
    2    configuration error (nothing was started)
    128+N  a second signal N during shutdown: stopped at once (130 for Ctrl-C twice)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Callable, Sequence

import structlog

from edge_agent import acquisition, control, kpi, sinks
from edge_agent.config import AgentConfig
from edge_agent.config_loader import add_set_argument, load_config
from edge_agent.logs import configure_logging
from edge_agent.outbox import Outbox
from edge_agent.pipeline import SampleBus, SampleWriter
from edge_agent.supervisor import Service, Supervisor
from edge_agent.tagstore import TagStore

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2

log = structlog.get_logger(__name__)


class Agent:
    """Everything one running agent shares: its config, latest values, and the sample bus."""

    def __init__(self, cfg: AgentConfig, writer: SampleWriter | None = None) -> None:
        self.cfg = cfg
        self.store = TagStore()
        self.bus = SampleBus(self.store, writer)
        self.outbox = writer if isinstance(writer, Outbox) else None
        self.control: control.ControlPath | None = None


def build_services(agent: Agent) -> list[Service]:
    """Each component contributes its services here, one line each (stop order is theirs)."""
    services: list[Service] = []
    # -- hooks: one line per component, in data-flow order --------------------------------------
    acq = acquisition.Acquisition(agent.cfg, agent.bus)  # control writes through its connections
    services += acq.services()
    agent.control = control.ControlPath(agent.cfg, agent.store, acq)  # before sinks: DCMD uses it
    services += kpi.build_services(agent.cfg, agent.store, agent.bus)
    if agent.outbox is not None:
        services += sinks.build_services(agent.cfg, agent.outbox)
    services += agent.control.services()
    # health (issue 9):      services += health.build_services(agent.cfg, supervisor)
    return services


async def open_writer(cfg: AgentConfig) -> SampleWriter | None:
    """The outbox behind the bus, when any sink is configured (it is closed by `run_agent`)."""
    return await sinks.open_outbox(cfg) if sinks.sink_names(cfg) else None


class StopSignals:
    """First SIGTERM/SIGINT: stop gracefully. Second: the operator means it, exit at once."""

    def __init__(self, stop: asyncio.Event, force_exit: Callable[[int], None] = os._exit) -> None:
        self.stop = stop
        self.received = 0
        self._force_exit = force_exit

    def __call__(self, signum: int) -> None:
        self.received += 1
        name = signal.Signals(signum).name
        if self.received == 1:
            log.info("stop_requested", signal=name)
            self.stop.set()
            return
        log.warning("forced_exit", signal=name)
        sys.stdout.flush()
        sys.stderr.flush()
        self._force_exit(128 + signum)

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self, signum)


async def run_agent(
    cfg: AgentConfig,
    services: Sequence[Service] | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Run until SIGTERM/SIGINT (or `stop`); returns the exit code."""
    stop = stop or asyncio.Event()
    StopSignals(stop).install(asyncio.get_running_loop())
    agent = Agent(cfg, await open_writer(cfg))
    services = list(services) if services is not None else build_services(agent)
    supervisor = Supervisor(services, shutdown_timeout_s=cfg.agent.shutdown_timeout_s)
    log.info(
        "agent_started",
        site=cfg.agent.site,
        instance_id=cfg.agent.instance_id,
        services=[s.name for s in services],
        pid=os.getpid(),
    )
    clean = await supervisor.run_until(stop)
    if agent.outbox is not None:
        await agent.outbox.close()
    log.info("agent_stopped", clean=clean)
    return EXIT_OK if clean else EXIT_FAILURE


def run_blocking(cfg: AgentConfig, services: Sequence[Service] | None = None) -> int:
    """Run the agent's event loop in this thread.

    Not `asyncio.run`: its cleanup waits for every task, so a service that ignores cancellation
    would hang the exit that the shutdown timeout is meant to bound. After an unclean stop the
    process exits without that cleanup.
    """
    loop = asyncio.new_event_loop()
    try:
        code = loop.run_until_complete(run_agent(cfg, services))
    except Exception:
        log.exception("agent_failed")
        code = EXIT_FAILURE
    if code != EXIT_OK:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.run_until_complete(loop.shutdown_default_executor())
    loop.close()
    return code


# ------------------------------------------------------------------------------------------- CLI


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run the agent until SIGTERM/SIGINT",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", required=True, metavar="FILE", help="the plant's TOML file")
    add_set_argument(parser)
    parser.set_defaults(func=_run_command)


def _run_command(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)  # ConfigError: cli prints it, exits 2
    configure_logging(args.log_level or cfg.agent.log_level, cfg.agent.log_format)
    return run_blocking(cfg)
