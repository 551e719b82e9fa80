"""The running agent: build every component from one validated AgentConfig and supervise them.

`run_agent` returns the exit code that `edge-agent run` documents (EXIT_OK, EXIT_FAILURE;
EXIT_CONFIG is the loader's, before anything starts).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

import structlog

from edge_agent import acquisition, control, health, heap, kpi, sinks, sparkplug, web, workers
from edge_agent.alarms import commands as alarm_commands
from edge_agent.alarms import engine as alarms
from edge_agent.config import AgentConfig
from edge_agent.config.loader import ConfigError
from edge_agent.config.origin import ConfigOrigin
from edge_agent.contracts.catalogue import TagCatalogue
from edge_agent.kpi.catalogue import kpi_tags
from edge_agent.outbox import Outbox
from edge_agent.pipeline import SampleBus, SampleWriter
from edge_agent.reload import ReloadRequests, next_config
from edge_agent.sdnotify import Notifier, ProgressWatch, run_notify_loop, watchdog_interval_s
from edge_agent.status_board import StatusBoard
from edge_agent.supervisor import STOP_HEALTH, Service, Supervisor
from edge_agent.tagstore import TagStore

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2

log = structlog.get_logger(__name__)


class Agent:
    """Everything one running agent shares: its config, latest values, and the sample bus."""

    def __init__(
        self,
        cfg: AgentConfig,
        writer: SampleWriter | None = None,
        origin: ConfigOrigin | None = None,
    ) -> None:
        self.cfg = cfg
        self.origin = origin  # the file and --set overrides: acquisition workers load it too
        self.store = TagStore()
        self.bus = SampleBus(self.store, writer)
        self.outbox = writer if isinstance(writer, Outbox) else None
        self.control: control.ControlPath | None = None
        self.alarms: alarms.AlarmEngine | None = None
        self.board = StatusBoard(self.store)  # what /healthz, /metrics and the watchdog read


def build_services(agent: Agent) -> list[Service]:
    """Each component contributes its services here, one line each (stop order is theirs)."""
    services: list[Service] = []
    # -- hooks: one line per component, in data-flow order --------------------------------------
    # Each component puts its own status providers on the board it is given.
    shards = workers.Workers(agent.cfg, agent.origin, agent.bus, agent.board)  # [agent] workers
    acq = acquisition.Acquisition(shards.local_config, agent.bus, board=agent.board)  # writes too
    services += acq.services() + shards.services()
    # Before the sinks: Sparkplug DCMD goes through the control path.
    agent.control = control.ControlPath(agent.cfg, agent.store, acq, agent.board)
    services += kpi.build_services(agent.cfg, agent.store, agent.bus, agent.board)
    agent.alarms = alarms.build(agent.cfg, agent.store, agent.bus, agent.board)  # taps the bus
    services += agent.alarms.services() if agent.alarms else []
    services += alarm_commands.build_services(agent.cfg, agent.alarms)
    catalogue = build_catalogue(agent.cfg)  # one for every sink: units and types of every tag
    if agent.outbox is not None:
        services += sinks.build_services(agent.cfg, agent.outbox, catalogue, agent.board)
    services += sparkplug.build_services(
        agent.cfg, agent.outbox, agent.store, catalogue, agent.control, agent.board, agent.alarms
    )
    services += agent.control.services()
    view = web.attach(agent.cfg, agent.board, agent.bus, agent.alarms)  # the browser view
    services += health.build_services(
        agent.cfg, agent.board, view.install if view else None, web.tls_context(agent.cfg.web)
    )
    return services


def check_wiring(cfg: AgentConfig, origin: str) -> None:
    """What the config layer cannot judge alone (it imports no component), before anything
    starts: alarms on `kpi.*` tags must name KPIs the engine computes for this file."""
    problems = alarms.unknown_kpi_tags(cfg, {t.tag for t in kpi_tags(cfg)})
    if problems:
        raise ConfigError([f"{origin}: {p}" for p in problems])


def build_catalogue(cfg: AgentConfig) -> TagCatalogue:
    """Every tag the agent publishes, with unit and type: the source tags as configured and the
    KPIs the engine will compute, known before any value arrives."""
    return TagCatalogue([*(tag.info() for tag in cfg.tags().values()), *kpi_tags(cfg)])


async def open_outbox(cfg: AgentConfig) -> Outbox:
    """The outbox as `[outbox]` sets it, with one cursor per configured sink."""
    section = cfg.outbox
    return await Outbox.open(
        cfg.agent.state_dir / section.file_name,
        sinks.sink_names(cfg),
        max_bytes=section.max_bytes,
        memory_buffer_samples=section.memory_buffer_samples,
        synchronous=section.synchronous,
    )


async def open_writer(cfg: AgentConfig) -> SampleWriter | None:
    """The outbox behind the bus, when any sink is configured (it is closed by `run_agent`)."""
    return await open_outbox(cfg) if sinks.sink_names(cfg) else None


class StopSignals:
    """First SIGTERM/SIGINT: stop gracefully. Second: the operator means it, exit at once."""

    def __init__(self, stop: asyncio.Event, force_exit: Callable[[int], None] = os._exit) -> None:
        self.stop = stop
        self.received = 0
        self._force_exit = force_exit

    def __call__(self, signum: int) -> None:
        """Act first, then log: a log line that cannot be written must not cancel the stop."""
        self.received += 1
        name = signal.Signals(signum).name
        if self.received == 1:
            self.stop.set()
            _log_quietly(log.info, "stop_requested", signal=name)
            return
        _log_quietly(log.warning, "forced_exit", signal=name)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        self._force_exit(128 + signum)

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self, signum)


def _log_quietly(emit: Callable[..., Any], event: str, **fields: Any) -> None:
    with contextlib.suppress(Exception):
        emit(event, **fields)


async def run_agent(
    cfg: AgentConfig,
    services: Sequence[Service] | None = None,
    stop: asyncio.Event | None = None,
    reload: Callable[[], AgentConfig] | None = None,
    on_started: Callable[[Agent], None] | None = None,
    origin: ConfigOrigin | None = None,
) -> int:
    """Run until SIGTERM/SIGINT (or `stop`); returns the exit code.

    `on_started` is called with each Agent once its components run (the demo's live view).

    With `reload` (how to read the config file again), SIGHUP applies a changed, valid file by
    stopping every component and building them anew; an invalid file changes nothing. systemd
    hears READY=1 once the components run, RELOADING=1 around a reload, STOPPING=1 at the end.
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    StopSignals(stop).install(loop)
    notifier = Notifier()
    reloads = ReloadRequests(reload, notifier) if reload is not None else None
    if reloads is not None:
        reloads.install(loop)
    previous: AgentConfig | None = None  # the configuration to fall back to after a reload
    try:
        while True:
            try:
                agent = Agent(cfg, await open_writer(cfg), origin)
            except Exception as exc:
                if previous is None:
                    raise
                # Valid on paper, unusable in fact (say, an unwritable state_dir): go back.
                log.error("config_reload_failed", error=repr(exc), keeping="previous configuration")
                cfg, previous = previous, None
                continue
            running = list(services) if services is not None else build_services(agent)
            running += notify_services(agent, notifier)
            supervisor = Supervisor(
                running, shutdown_timeout_s=cfg.agent.shutdown_timeout_s, board=agent.board
            )
            supervisor.start()
            notifier.ready(agent.board.summary())
            if on_started is not None:
                on_started(agent)
            heap.settle()
            settle_again = loop.call_later(heap.SETTLE_AGAIN_S, heap.settle)
            log.info(
                "agent_started",
                site=cfg.agent.site,
                instance_id=cfg.agent.instance_id,
                services=[s.name for s in running],
                pid=os.getpid(),
            )
            new_cfg = await next_config(cfg, stop, reloads)
            if new_cfg is None:
                notifier.stopping()
            else:
                notifier.reloading()
            settle_again.cancel()
            clean = await supervisor.stop()
            if agent.outbox is not None:
                await agent.outbox.close()
            if new_cfg is None or not clean:
                break
            cfg, previous = new_cfg, cfg
    finally:
        notifier.close()
    log.info("agent_stopped", clean=clean)
    return EXIT_OK if clean else EXIT_FAILURE


def notify_services(agent: Agent, notifier: Notifier) -> list[Service]:
    """Under systemd: STATUS= every few seconds, WATCHDOG=1 while sources and sinks progress."""
    if not notifier.enabled:
        return []
    interval = watchdog_interval_s()
    watch = ProgressWatch(agent.board.probes, agent.cfg.health.stall_after_s)

    async def run() -> None:
        await run_notify_loop(
            notifier, watch, interval or 5.0, agent.board.summary, watchdog=interval is not None
        )

    return [Service("sd_notify", run, STOP_HEALTH)]


def run_blocking(
    cfg: AgentConfig,
    services: Sequence[Service] | None = None,
    reload: Callable[[], AgentConfig] | None = None,
    origin: ConfigOrigin | None = None,
) -> int:
    """Run the agent's event loop in this thread.

    Not `asyncio.run`: its cleanup waits for every task, so a service that ignores cancellation
    would hang the exit that the shutdown timeout is meant to bound. After an unclean stop the
    process exits without that cleanup.
    """
    loop = asyncio.new_event_loop()
    try:
        code = loop.run_until_complete(run_agent(cfg, services, reload=reload, origin=origin))
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
