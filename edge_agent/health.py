"""`/healthz` and `/metrics` on a local address: is data flowing, and how much of it.

Every source, sink, the outbox, the KPI engine and the control path own a small state object that
satisfies `StatusProvider`: `status()` returns a `ComponentStatus` snapshot. The `StatusBoard`
collects them; this module only reads them, at request or scrape time, so there is one place that
counts (the component's own loop) and nothing here can fall out of step with it. The same board
feeds the systemd watchdog (`sdnotify`) and the demo view.

Metric names follow from the snapshot: counter `samples_read_total` of source `fsf` becomes
`edge_agent_source_samples_read_total{source="fsf"}`. The keys each kind reports are documented
in docs/operations.md ("Health and metrics"); a component may report more.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import ssl
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol, TypeVar

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from edge_agent.config import AgentConfig
from edge_agent.contracts.samples import Quality
from edge_agent.sdnotify import ProgressProbe
from edge_agent.supervisor import STOP_HEALTH, Service
from edge_agent.tagstore import TagStore

if TYPE_CHECKING:
    from edge_agent.acquisition import SourceStats

log = structlog.get_logger(__name__)

Kind = Literal["source", "sink", "outbox", "kpi", "control"]


# Read latencies of OPC UA and Modbus requests: milliseconds on a LAN, seconds when a device
# struggles, the timeout at worst.
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class LatencyHistogram:
    """A cumulative histogram a loop can `observe()` into without touching prometheus-client."""

    def __init__(self, buckets: Sequence[float] = LATENCY_BUCKETS_S) -> None:
        self.buckets = tuple(sorted(buckets))
        self._counts = [0] * (len(self.buckets) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self._counts[bisect.bisect_left(self.buckets, seconds)] += 1
        self.sum += seconds

    @property
    def count(self) -> int:
        return sum(self._counts)

    def cumulative(self) -> list[tuple[str, float]]:
        """(upper bound, cumulative count) pairs ending in +Inf, as Prometheus wants them."""
        out: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip((*map(repr, self.buckets), "+Inf"), self._counts, strict=True):
            running += n
            out.append((bound, float(running)))
        return out


@dataclass(frozen=True)
class ComponentStatus:
    """One component's state at one instant.

    `state` is a word an operator reads ("connected", "connecting", "disconnected", "running",
    "stopped", "failed"); `healthy` is the verdict `/healthz` uses. `progress` advances once per
    completed loop cycle (the watchdog's evidence of life; `watched=False` exempts a component).
    """

    name: str
    kind: Kind
    state: str
    healthy: bool
    detail: str = ""
    progress: int = 0
    watched: bool = True
    counters: Mapping[str, float] = field(default_factory=dict)
    gauges: Mapping[str, float] = field(default_factory=dict)
    histograms: Mapping[str, LatencyHistogram] = field(default_factory=dict)

    def as_json(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "state": self.state,
            "healthy": self.healthy,
            **({"detail": self.detail} if self.detail else {}),
            **dict(self.counters),
            **dict(self.gauges),
        }


class StatusProvider(Protocol):
    """Anything that can say how it is doing; the lanes' state dataclasses implement this."""

    def status(self) -> ComponentStatus: ...


class StatusBoard:
    """The registry of providers that health, metrics, the watchdog and the demo view read."""

    def __init__(self, store: TagStore | None = None) -> None:
        self.store = store
        self._providers: list[StatusProvider] = []
        self._read_rate = _Rate()

    def add(self, provider: StatusProvider) -> None:
        self._providers.append(provider)

    def clear(self) -> None:
        """Forget every provider (a reload rebuilds the components, which add themselves anew)."""
        self._providers.clear()

    def statuses(self) -> list[ComponentStatus]:
        out: list[ComponentStatus] = []
        for provider in list(self._providers):
            try:
                out.append(provider.status())
            except Exception as exc:  # a broken provider must not take /healthz down
                log.warning("status_provider_failed", provider=repr(provider), error=repr(exc))
        return out

    def healthy(self) -> bool:
        return all(s.healthy for s in self.statuses())

    def probes(self) -> list[ProgressProbe]:
        """Watchdog probes: acquisition per source and delivery per sink."""
        return [
            ProgressProbe(f"{s.kind}:{s.name}", _progress_reader(self, s.kind, s.name))
            for s in self.statuses()
            if s.watched and s.kind in ("source", "sink")
        ]

    def summary(self) -> str:
        """The one-line STATUS= text: tags Good, samples per second (read), outbox depth."""
        statuses = self.statuses()
        parts: list[str] = []
        if self.store is not None:
            snapshot = self.store.snapshot()
            good = sum(1 for s in snapshot.values() if s.quality is Quality.GOOD)
            parts.append(f"{good}/{len(snapshot)} tags good")
        read = sum(
            s.counters.get("samples_read_total", 0.0) for s in statuses if s.kind == "source"
        )
        parts.append(f"{self._read_rate.update(read):.0f} samples/s")
        depth = sum(s.gauges.get("depth_samples", 0.0) for s in statuses if s.kind == "outbox")
        parts.append(f"outbox {depth:.0f}")
        down = [f"{s.kind} {s.name} {s.state}" for s in statuses if not s.healthy]
        if down:
            parts.append("; ".join(down))
        return ", ".join(parts)


class _Rate:
    """Per-second rate of a growing total, over at least one second between updates."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last: tuple[float, float] | None = None
        self._value = 0.0

    def update(self, total: float) -> float:
        now = self._clock()
        if self._last is None:
            self._last = (now, total)
        elif now - self._last[0] >= 1.0:
            self._value = max(0.0, total - self._last[1]) / (now - self._last[0])
            self._last = (now, total)
        return self._value


def _progress_reader(board: StatusBoard, kind: str, name: str) -> Callable[[], int]:
    def read() -> int:
        for s in board.statuses():
            if s.kind == kind and s.name == name:
                return s.progress
        return -1

    return read


class SourceHealth:
    """StatusProvider for one acquisition loop, from its `SourceStats` and its tags' samples.

    Progress is the newest acquisition timestamp among the source's tags in the TagStore: every
    poll publishes, and so does every failed connection attempt (Bad samples), so the value moves
    while the loop is alive, connected or not, and stops only when the loop hangs.
    """

    def __init__(self, stats: SourceStats, tags: Sequence[str], store: TagStore) -> None:
        self._stats = stats
        self._tags = list(tags)
        self._store = store

    def status(self) -> ComponentStatus:
        st = self._stats
        newest = 0
        for tag in self._tags:
            sample = self._store.get(tag)
            if sample is not None and sample.acq_ns > newest:
                newest = sample.acq_ns
        histograms = {}
        latency = getattr(st, "read_latency", None)
        if isinstance(latency, LatencyHistogram):
            histograms["read_latency_seconds"] = latency
        return ComponentStatus(
            name=st.source,
            kind="source",
            state=_source_state(st),
            healthy=st.connected,
            detail=st.last_error or "",
            progress=newest,
            watched=bool(self._tags),
            counters={
                "samples_read_total": float(st.samples),
                "reads_total": float(st.reads),
                "poll_overruns_total": float(st.overruns),
                "connects_total": float(st.connects),
                "connection_losses_total": float(st.connection_losses),
            },
            gauges={"tags": float(st.tags), "last_read_seconds": st.last_read_s},
            histograms=histograms,
        )


def _source_state(st: SourceStats) -> str:
    if st.connected:
        return "connected"
    return "disconnected" if st.connects else "connecting"


def add_sources(board: StatusBoard, cfg: AgentConfig, stats: Iterable[SourceStats]) -> None:
    """Put the configured sources' acquisition loops on the board."""
    assert board.store is not None, "source health needs the TagStore"
    tags = {s.name: [t.id for t in s.tag] for s in cfg.source}
    for st in stats:
        if st.source in tags:
            board.add(SourceHealth(st, tags[st.source], board.store))


class AdvisorHealth:
    """The advisor's current verdict (`kpi.advisor.validity`, policy, reason) from the TagStore.

    Its recommendation is information, not the agent's health: always healthy, never watched
    (the KPI engine publishes into the same store, so a stuck engine shows as stale KPI tags).
    """

    def __init__(self, store: TagStore) -> None:
        self._store = store

    def status(self) -> ComponentStatus:
        validity = self._store.get("kpi.advisor.validity")
        policy = self._store.get("kpi.advisor.policy")
        reason = self._store.get("kpi.advisor.reason")
        state = str(validity.value) if validity is not None and validity.good else "unknown"
        detail = " ".join(
            str(s.value) for s in (policy, reason) if s is not None and s.value is not None
        )
        return ComponentStatus("advisor", "kpi", state, True, detail=detail, watched=False)


def add_kpis(board: StatusBoard, cfg: AgentConfig) -> None:
    """Put the advisor's state on the board when the advisor is configured."""
    if cfg.kpi.advisor is not None and board.store is not None:
        board.add(AdvisorHealth(board.store))


# ------------------------------------------------------------------------------------ metrics


class BoardCollector(Collector):
    """Turns the board's snapshots into metric families at scrape time."""

    def __init__(self, board: StatusBoard, site: str, instance_id: str) -> None:
        self._board = board
        self._site = site
        self._instance = instance_id

    def collect(self) -> Iterator[Metric]:
        statuses = self._board.statuses()
        info = GaugeMetricFamily(
            "edge_agent_info", "Constant 1; labels identify the agent", labels=["site", "instance"]
        )
        info.add_metric([self._site, self._instance], 1.0)
        yield info
        up = GaugeMetricFamily(
            "edge_agent_component_up",
            "1 when the component is healthy (connected, running), 0 otherwise",
            labels=["kind", "name"],
        )
        state = GaugeMetricFamily(
            "edge_agent_component_state",
            "Constant 1, labelled with the component's current state word",
            labels=["kind", "name", "state"],
        )
        for s in statuses:
            up.add_metric([s.kind, s.name], 1.0 if s.healthy else 0.0)
            state.add_metric([s.kind, s.name, s.state], 1.0)
        yield up
        yield state
        yield from self._families(statuses)
        if self._board.store is not None:
            yield self._tag_quality()

    def _families(self, statuses: Iterable[ComponentStatus]) -> Iterator[Metric]:
        """One metric family per (component kind, key), with one labelled sample per component."""
        counters: dict[tuple[str, str], CounterMetricFamily] = {}
        gauges: dict[tuple[str, str], GaugeMetricFamily] = {}
        histograms: dict[tuple[str, str], HistogramMetricFamily] = {}
        for s in statuses:
            for key, value in s.counters.items():
                base = key.removesuffix("_total")
                _family(counters, CounterMetricFamily, s.kind, base).add_metric([s.name], value)
            for key, value in s.gauges.items():
                _family(gauges, GaugeMetricFamily, s.kind, key).add_metric([s.name], value)
            for key, hist in s.histograms.items():
                _family(histograms, HistogramMetricFamily, s.kind, key).add_metric(
                    [s.name], hist.cumulative(), sum_value=hist.sum
                )
        yield from counters.values()
        yield from gauges.values()
        yield from histograms.values()

    def _tag_quality(self) -> Metric:
        assert self._board.store is not None
        fam = GaugeMetricFamily(
            "edge_agent_tags", "Tags by the quality of their latest sample", labels=["quality"]
        )
        snapshot = self._board.store.snapshot().values()
        for quality in Quality:
            fam.add_metric([quality.value], float(sum(1 for s in snapshot if s.quality is quality)))
        return fam


def metrics_registry(board: StatusBoard, site: str, instance_id: str) -> CollectorRegistry:
    """An own registry (not the global one): nothing else in the process leaks into /metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BoardCollector(board, site, instance_id))
    return registry


# ------------------------------------------------------------------------------------- server


def health_document(board: StatusBoard) -> tuple[int, dict[str, object]]:
    """(HTTP status, body) for /healthz: 200 only when every component is healthy."""
    statuses = board.statuses()
    healthy = all(s.healthy for s in statuses)
    body: dict[str, object] = {"status": "ok" if healthy else "degraded"}
    for kind in ("source", "sink", "outbox", "kpi", "control"):
        members = {s.name: s.as_json() for s in statuses if s.kind == kind}
        if members:
            body[kind if kind in ("outbox", "kpi", "control") else kind + "s"] = members
    return (200 if healthy else 503), body


def build_app(board: StatusBoard, registry: CollectorRegistry) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        code, body = health_document(board)
        return web.Response(
            status=code, text=json.dumps(body, indent=1), content_type="application/json"
        )

    async def metrics(_: web.Request) -> web.Response:
        payload = generate_latest(registry)
        return web.Response(body=payload, headers={"Content-Type": "text/plain; version=0.0.4"})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    return app


def parse_listen(listen: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` -> (host, port)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"health.listen = {listen!r}: expected host:port")
    return host.strip("[]") or "127.0.0.1", int(port)


AppExtension = Callable[[web.Application], None]


class HealthServer:
    """The HTTP endpoint; `start()` binds (port 0 picks a free one, see `port`), `stop()` closes.

    `extend` adds routes and middlewares to the application (the web view); with `ssl_context`
    the listener speaks HTTPS."""

    def __init__(
        self,
        board: StatusBoard,
        listen: str,
        site: str,
        instance_id: str,
        extend: AppExtension | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._host, self._port = parse_listen(listen)
        self._app = build_app(board, metrics_registry(board, site, instance_id))
        if extend is not None:
            extend(self._app)
        self._ssl = ssl_context
        self._runner: web.AppRunner | None = None
        self.port = self._port

    async def start(self) -> None:
        self._runner = web.AppRunner(self._app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port, ssl_context=self._ssl)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = sockets[0].getsockname()[1]
        log.info("health_listening", host=self._host, port=self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def serve(self) -> None:
        """Run as a supervised service: bind, then serve until cancelled."""
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()

    async def __aenter__(self) -> HealthServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def build_services(
    cfg: AgentConfig,
    board: StatusBoard,
    extend: AppExtension | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> list[Service]:
    """runtime.py's hook: the HTTP endpoint, unless `[health] enabled = false`."""
    if not cfg.health.enabled:
        return []
    server = HealthServer(
        board, cfg.health.listen, cfg.agent.site, cfg.agent.instance_id, extend, ssl_context
    )
    return [Service("health", server.serve, STOP_HEALTH)]


_Family = TypeVar("_Family", CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily)


def _family(
    cache: dict[tuple[str, str], _Family], cls: type[_Family], kind: str, key: str
) -> _Family:
    """The family `edge_agent_{kind}_{key}`, created on first use, labelled by component name."""
    fam = cache.get((kind, key))
    if fam is None:
        fam = cache[(kind, key)] = cls(f"edge_agent_{kind}_{key}", f"{kind} {key}", labels=[kind])
    return fam
