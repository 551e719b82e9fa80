"""The web view as one object: what it remembers (history ring, advisor change log, push clients)
and the routes it adds to the health listener's application.

Routes (all GET, all read-only, all behind `access.Access`):

    /                     the single page (Plant, KPIs, Advisor, Delivery as tabs)
    /static/...           our own JavaScript, CSS and icon; nothing from elsewhere
    /api/events           the push stream (Server-Sent Events, see push.py)
    /api/meta             catalogue of tags, KPI targets, history settings
    /api/tags             latest samples: ?q=substring&quality=bad,uncertain&offset=0&limit=500
    /api/tags/{tag}       one tag
    /api/kpis             every kpi.* tag and the target trajectory
    /api/advisor          recommendations, their reasons, inputs, recent changes
    /api/audit            the newest control audit records (closed loop)
    /api/alarms           the alarm list: active, shelved / suppressed / out of service, history
    /api/delivery         /healthz's verdict and every component's status
    /api/config           the running configuration, secrets masked
    /api/history          ?tag=a&tag=b&seconds=3600: bucket means from the ring, or from the
                          database when `web.trends` names one (longer windows, up to a week)
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from edge_agent.config import AgentConfig
from edge_agent.contracts.samples import Sample, now_ns
from edge_agent.pipeline import SampleBus
from edge_agent.status_board import StatusBoard
from edge_agent.tagstore import TagStore
from edge_agent.web import documents
from edge_agent.web.access import Access, Credentials
from edge_agent.web.alarm_list import alarms_document
from edge_agent.web.history import ChangeLog, HistoryRing
from edge_agent.web.push import LiveFeed
from edge_agent.web.trends import TrendError, TrendSource

if TYPE_CHECKING:
    from edge_agent.alarms.engine import AlarmEngine

STATIC = Path(__file__).resolve().parent / "static"
MAX_PAGE = 10_000
MAX_HISTORY_TAGS = 500
MAX_TREND_S = 7 * 86400  # from a database: up to a week ...
MAX_POINTS = 720  # ... in at most this many buckets

log = structlog.get_logger(__name__)


class WebView:
    """Built once per agent (per reload): subscribe `record` to the bus, `install` the routes."""

    def __init__(
        self,
        cfg: AgentConfig,
        store: TagStore,
        board: StatusBoard,
        alarms: AlarmEngine | None = None,
    ) -> None:
        self.cfg = cfg
        self.alarms = alarms
        self.store = store
        self.board = board
        self.started_ms = now_ns() // 1_000_000
        self.ring = HistoryRing(cfg.web.history_s, cfg.web.history_step_s)
        self.changes = ChangeLog(documents.advisor_watched_tags(cfg))
        hello = {"instance_id": cfg.agent.instance_id, "started_ms": self.started_ms}
        self.feed = LiveFeed(store, cfg.web.push_interval_s, cfg.web.max_clients, hello)
        self.trends = TrendSource(cfg) if cfg.web.trends != "ring" else None
        self._trend_failed = False
        self.access = Access(
            cfg.web, cfg.health.listen, Credentials.resolve(cfg.web), ("/static/", "/api/")
        )

    def subscribe(self, bus: SampleBus) -> None:
        """The view's two taps: every sample for the history and the push streams; the advisor's
        tags only for its change log (a source without them skips that tap)."""
        bus.add_tap(self.record)
        bus.add_tap(self._advisor_changed, self.changes.tags)

    def record(self, samples: Sequence[Sample]) -> Sequence[Sample]:
        """History and push streams (it adds nothing to the outbox)."""
        self.ring.record(samples)
        self.feed.record(samples)
        return ()

    def _advisor_changed(self, samples: Sequence[Sample]) -> Sequence[Sample]:
        self.changes.record(samples)
        return ()

    def install(self, app: web.Application) -> None:
        """Add the view to the health listener's application (before it starts)."""
        app.middlewares.append(self.access.middleware)
        app.on_shutdown.append(self.feed.close)
        get = app.router.add_get
        get("/", self._index)
        get("/api/events", self.feed.stream)
        get("/api/meta", self._meta)
        get("/api/tags", self._tags)
        get("/api/tags/{tag}", self._tag)
        get("/api/kpis", self._kpis)
        get("/api/advisor", self._advisor)
        get("/api/audit", self._audit)
        get("/api/alarms", self._alarms)
        get("/api/delivery", self._delivery)
        get("/api/config", self._config)
        get("/api/history", self._history)
        app.router.add_static("/static/", STATIC, append_version=False)

    # ---------------------------------------------------------------------------- handlers

    async def _index(self, _: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html")

    async def _meta(self, _: web.Request) -> web.Response:
        return _json(documents.meta(self.cfg, self.ring, self.started_ms))

    async def _tags(self, request: web.Request) -> web.Response:
        q = request.query
        quality = q.get("quality", "")
        if any(x not in ("good", "uncertain", "bad") for x in quality.split(",") if quality):
            raise web.HTTPBadRequest(text=f"quality={quality!r}: say good, uncertain and/or bad")
        offset = _int_param(q, "offset", 0, 0, 10**9)
        limit = _int_param(q, "limit", 500, 1, MAX_PAGE)
        doc = documents.tags_document(self.store.snapshot(), q.get("q", ""), quality, offset, limit)
        return _json(doc)

    async def _tag(self, request: web.Request) -> web.Response:
        tag = request.match_info["tag"]
        sample = self.store.get(tag)
        if sample is None:
            raise web.HTTPNotFound(text=f"no tag {tag!r} in the tag store")
        return _json(documents.sample_json(sample))

    async def _kpis(self, _: web.Request) -> web.Response:
        return _json(documents.kpis_document(self.cfg, self.store.snapshot()))

    async def _advisor(self, _: web.Request) -> web.Response:
        return _json(documents.advisor_document(self.cfg, self.store.snapshot(), self.changes))

    async def _audit(self, _: web.Request) -> web.Response:
        records = await asyncio.to_thread(documents.audit_tail, self.cfg)
        return _json({"control_mode": self.cfg.control.mode, "records": records})

    async def _alarms(self, _: web.Request) -> web.Response:
        return _json(alarms_document(self.alarms))

    async def _delivery(self, _: web.Request) -> web.Response:
        return _json(documents.delivery_document(self.board, self.cfg, self.feed.clients))

    async def _config(self, _: web.Request) -> web.Response:
        return _json(documents.masked_config(self.cfg))

    async def _history(self, request: web.Request) -> web.Response:
        tags = request.query.getall("tag", [])
        if len(tags) > MAX_HISTORY_TAGS:
            raise web.HTTPBadRequest(text=f"{len(tags)} tags: ask for at most {MAX_HISTORY_TAGS}")
        ring_s = int(self.ring.slots * self.ring.step_ns // 1_000_000_000)
        longest = MAX_TREND_S if self.trends is not None else ring_s
        seconds = _int_param(request.query, "seconds", ring_s, 60, longest)
        if self.trends is None:
            return _json(documents.history_document(self.ring, tags, now_ns()))
        step_s = max(int(self.ring.step_ns // 1_000_000_000), -(-seconds // MAX_POINTS))
        slots = -(-seconds // step_s)
        first = now_ns() // 1_000_000_000 // step_s - slots + 1
        try:
            series = await self.trends.series(tags, first, slots, step_s)
        except TrendError as exc:
            if not self._trend_failed:
                log.warning("web_trends_failed", error=str(exc), fallback="history ring")
            self._trend_failed = True
            doc = documents.history_document(self.ring, tags, now_ns())
            return _json({**doc, "source": "ring", "error": str(exc)})
        self._trend_failed = False
        return _json({
            "start_ms": first * step_s * 1000, "step_ms": step_s * 1000,
            "series": series, "source": self.trends.name,
        })  # fmt: skip


def _int_param(query: Any, name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name}={raw!r}: not a whole number") from None
    if not low <= value <= high:
        raise web.HTTPBadRequest(text=f"{name}={value}: give {low}..{high}")
    return value


def _json(body: Any) -> web.Response:
    text = json.dumps(_finite(body), separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return web.Response(text=text, content_type="application/json")


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: such a number travels as its name."""
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
