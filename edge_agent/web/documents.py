"""The JSON documents of the read-only API: what the pages draw, and what scripts may read.

Every document is built from what the agent already holds (the TagStore, the StatusBoard, the
history ring, the configuration): nothing here computes a KPI or asks a device. Samples appear
in one shape everywhere (`sample_json`), the one the MQTT JSON payloads use, plus the tag.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from edge_agent.config import AgentConfig, SecretRef, SetpointLimits
from edge_agent.contracts.samples import Quality, Sample, iso_utc
from edge_agent.control.audit import AUDIT_FILE
from edge_agent.health import health_document
from edge_agent.kpi.balance_inputs import heat_balance_tags
from edge_agent.kpi.catalogue import kpi_tags
from edge_agent.kpi.setpoints import advisor_tag, setpoint_tags
from edge_agent.kpi.windows import WINDOWS
from edge_agent.status_board import StatusBoard
from edge_agent.web.history import ChangeLog, HistoryRing

SECRET_MASK = "<secret>"
AUDIT_TAIL_BYTES = 256 * 1024


def sample_json(s: Sample | None, tag: str = "") -> dict[str, Any]:
    if s is None:
        return {"tag": tag, "value": None, "quality": None, "reason": "no sample yet"}
    value: Any = s.value
    if isinstance(value, float) and not math.isfinite(value):
        value = str(value)
    return {
        "tag": s.tag,
        "value": value,
        "quality": s.quality.value,
        "reason": s.reason,
        "ts": iso_utc(s.ts_ns),
        "acq": iso_utc(s.acq_ns),
        "ts_ms": s.ts_ns // 1_000_000,
        "acq_ms": s.acq_ns // 1_000_000,
    }


def catalogue(cfg: AgentConfig) -> list[dict[str, Any]]:
    """Every configured tag and every KPI tag, with what the configuration says of it."""
    out: list[dict[str, Any]] = []
    for source in cfg.source:
        for t in source.tag:
            out.append({
                "tag": t.id, "unit": t.unit, "description": t.description,
                "source": source.name, "max_age_s": t.max_age_s,
            })  # fmt: skip
    for info in sorted(kpi_tags(cfg), key=lambda i: i.tag):
        out.append({"tag": info.tag, "unit": info.unit, "description": "", "source": "kpi"})
    return out


def meta(cfg: AgentConfig, ring: HistoryRing, started_ms: int) -> dict[str, Any]:
    """What the pages need once: the catalogue, the KPI settings and how the agent is set up."""
    rr = cfg.kpi.recycled_ratio
    adv = cfg.kpi.advisor
    return {
        "site": cfg.agent.site,
        "instance_id": cfg.agent.instance_id,
        "started_ms": started_ms,
        "timezone": cfg.agent.timezone,
        "tags": catalogue(cfg),
        "history": {"seconds": ring.slots * ring.step_ns / 1e9, "step_s": ring.step_ns / 1e9},
        "windows": list(WINDOWS),
        "targets": (
            {str(year): pct for year, pct in sorted(rr.targets.items())} if rr is not None else {}
        ),
        "fiscal_year": fiscal_year(cfg),
        "fiscal_start_month": rr.fiscal_year_start_month if rr is not None else None,
        "reserve_mw": adv.reserve_mw if adv is not None else None,
        "control_mode": cfg.control.mode,
        "influx": _influx_note(cfg),
        "trends": cfg.web.trends,
    }


def fiscal_year(cfg: AgentConfig, now: datetime | None = None) -> int | None:
    """The fiscal year (named for the calendar year it starts in) the plant is in now."""
    rr = cfg.kpi.recycled_ratio
    if rr is None:
        return None
    now = now or datetime.now(ZoneInfo(cfg.agent.timezone))
    return now.year if now.month >= rr.fiscal_year_start_month else now.year - 1


def _influx_note(cfg: AgentConfig) -> dict[str, Any]:
    if cfg.influx is None:
        return {
            "configured": False,
            "hint": "The InfluxDB sink is off. Add an [influx] section (docs/influxdb.md) to keep "
            "history beyond the last hour; `make demo` starts a private VictoriaMetrics or "
            "InfluxDB when the Debian package victoria-metrics or influxdb is installed.",
        }
    return {"configured": True, "api": cfg.influx.api, "url": cfg.influx.url}


def tags_document(
    snapshot: Mapping[str, Sample], query: str, quality: str, offset: int, limit: int
) -> dict[str, Any]:
    """`/api/tags`: the latest sample of every tag, filtered (substring of the id, quality) and
    paged in id order."""
    tags = sorted(snapshot)
    if query:
        needle = query.lower()
        tags = [t for t in tags if needle in t.lower()]
    if quality:
        wanted = {Quality(q) for q in quality.split(",")}
        tags = [t for t in tags if snapshot[t].quality in wanted]
    page = tags[offset : offset + limit]
    return {"total": len(tags), "offset": offset, "tags": [sample_json(snapshot[t]) for t in page]}


def kpis_document(cfg: AgentConfig, snapshot: Mapping[str, Sample]) -> dict[str, Any]:
    """`/api/kpis`: every `kpi.*` tag by name, and the target trajectory from the configuration."""
    rr = cfg.kpi.recycled_ratio
    return {
        "targets": {str(y): p for y, p in sorted(rr.targets.items())} if rr is not None else {},
        "fiscal_year": fiscal_year(cfg),
        "reserve_mw": cfg.kpi.advisor.reserve_mw if cfg.kpi.advisor is not None else None,
        "kpis": {t: sample_json(s) for t, s in sorted(snapshot.items()) if t.startswith("kpi.")},
    }


def advisor_document(
    cfg: AgentConfig, snapshot: Mapping[str, Sample], changes: ChangeLog
) -> dict[str, Any]:
    """`/api/advisor`: per setpoint the present value, the recommendation and its reason; the
    inputs with their quality; the recent changes of the verdict."""
    adv = cfg.kpi.advisor
    if adv is None:
        return {"configured": False}
    limits: dict[str, SetpointLimits] = {f.setpoint_tag: f for f in adv.feed}
    if adv.fuel is not None:
        limits[adv.fuel.setpoint_tag] = adv.fuel
    if adv.oxygen is not None:
        limits[adv.oxygen.setpoint_tag] = adv.oxygen
    setpoints = []
    for name, tag in setpoint_tags(cfg).items():
        lim = limits[tag]
        setpoints.append({
            "name": name, "setpoint_tag": tag, "advisor_tag": advisor_tag(tag),
            "present": sample_json(snapshot.get(tag), tag),
            "measured": sample_json(snapshot.get(lim.measured_tag), lim.measured_tag)
            if lim.measured_tag else None,
            "recommended": sample_json(snapshot.get(advisor_tag(tag)), advisor_tag(tag)),
            "min": lim.min, "max": lim.max, "max_step": lim.max_step,
        })  # fmt: skip
    inputs = (
        [adv.running_tag, *heat_balance_tags(cfg.kpi.heat_balance)]
        if cfg.kpi.heat_balance
        else [adv.running_tag]
    )
    return {
        "configured": True,
        "policy": adv.policy,
        "reserve_mw": adv.reserve_mw,
        "verdict": {
            k: sample_json(snapshot.get(f"kpi.advisor.{k}"), f"kpi.advisor.{k}")
            for k in ("validity", "reason", "policy")
        },
        "heat_margin": sample_json(snapshot.get("kpi.heat_margin_mw"), "kpi.heat_margin_mw"),
        "setpoints": setpoints,
        "inputs": [sample_json(snapshot.get(t), t) for t in dict.fromkeys(inputs)],
        "changes": [
            {
                "tag": c.tag,
                "ts_ms": c.ts_ms,
                "value": c.value,
                "quality": c.quality,
                "reason": c.reason,
            }
            for c in reversed(changes.entries)
        ],
        "control_mode": cfg.control.mode,
    }


def advisor_watched_tags(cfg: AgentConfig) -> list[str]:
    """The tags whose changes the advisor page lists."""
    if cfg.kpi.advisor is None:
        return []
    verdict = [f"kpi.advisor.{k}" for k in ("validity", "reason", "policy")]
    return verdict + [advisor_tag(t) for t in setpoint_tags(cfg).values()]


def audit_tail(cfg: AgentConfig, limit: int = 200) -> list[dict[str, Any]]:
    """The newest control audit records, newest first (blocking: call it in a thread)."""
    path = Path(cfg.agent.state_dir) / AUDIT_FILE
    try:
        with path.open("rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - AUDIT_TAIL_BYTES))
            lines = f.read().splitlines()[1 if size > AUDIT_TAIL_BYTES else 0 :]
    except FileNotFoundError:
        return []
    records: list[dict[str, Any]] = []
    for line in reversed(lines[-limit:]):
        try:
            records.append(json.loads(line))
        except ValueError:
            continue  # a line cut by a crash mid-write
    return records


def delivery_document(board: StatusBoard, cfg: AgentConfig, clients: int) -> dict[str, Any]:
    """`/api/delivery`: `/healthz`'s verdict, every component's status, the running config."""
    code, health = health_document(board)
    return {
        "status": health["status"],
        "http_status": code,
        "healthz": health,
        "components": [
            {
                "kind": s.kind,
                "name": s.name,
                "state": s.state,
                "healthy": s.healthy,
                "detail": s.detail,
                "counters": dict(s.counters),
                "gauges": dict(s.gauges),
            }
            for s in board.statuses()
        ],
        "influx": _influx_note(cfg),
        "browsers": clients,
        "summary": board.summary(),
    }


def masked_config(model: BaseModel) -> dict[str, Any]:
    """The running configuration as JSON, every secret reference replaced by `<secret>`.

    A reference names a file or variable rather than holding the secret, but where the secret
    lives is itself worth nothing to a reader of this page, so it is masked too."""
    return {name: _masked(getattr(model, name)) for name in type(model).model_fields}


def _masked(value: Any) -> Any:
    if isinstance(value, SecretRef):
        return SECRET_MASK
    if isinstance(value, BaseModel):
        return masked_config(value)
    if isinstance(value, Mapping):
        return {str(k): _masked(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(v) for v in value]
    return to_jsonable_python(value)


def history_document(ring: HistoryRing, tags: Iterable[str], now_ns: int) -> dict[str, Any]:
    start_ms, step_ms = ring.window(now_ns)
    return {
        "start_ms": start_ms,
        "step_ms": step_ms,
        "series": {t: ring.series(t, now_ns) for t in tags},
        "source": "ring",
    }
