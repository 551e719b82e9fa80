"""`/healthz` and `/metrics` on a local address: is data flowing, and how much of it.

Every component puts its status providers (`edge_agent.contracts.status`) on the `StatusBoard`
when it is built; this module only reads them, at request or scrape time, so there is one place
that counts (the component's own loop) and nothing here can fall out of step with it.

Metric names follow from the snapshot: counter `samples_read_total` of source `fsf` becomes
`edge_agent_source_samples_read_total{source="fsf"}`. The keys each kind reports are documented
in docs/operations.md ("Health and metrics"); a component may report more.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

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
from edge_agent.contracts.status import ComponentStatus
from edge_agent.status_board import StatusBoard
from edge_agent.supervisor import STOP_HEALTH, Service

log = structlog.get_logger(__name__)


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
    for kind in ("source", "worker", "sink", "outbox", "kpi", "control", "service"):
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
