"""`edge-agent alarms report`: EEMUA 191 figures of a period, read back from InfluxDB.

The agent writes every alarm event to the measurement `alarm_event` (docs/alarms.md); this
reads the events of `--since` .. `--until` back (InfluxQL over `/query` for `api = "v1"`, Flux
over `/api/v2/query` for `api = "v2"`) and computes the figures with the same function the live
`/metrics` use (`edge_agent.alarms.performance.figures`).
"""

from __future__ import annotations

import argparse
import base64
import csv
import io
import json
import re
import sys
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from edge_agent.alarms.performance import STALE_AFTER_NS, Activation, figures
from edge_agent.commands.arguments import add_config_argument, command_parser
from edge_agent.config import AgentConfig, InfluxSection
from edge_agent.config.loader import add_set_argument, load_config
from edge_agent.contracts.samples import iso_utc, now_ns

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

EXIT_OK, EXIT_FAILURE = 0, 1
_NS = 1_000_000_000
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_REMOVED = {"shelved", "suppressed", "out_of_service"}


@dataclass(frozen=True, slots=True)
class StoredEvent:
    ts_ns: int
    alarm_id: str
    transition: str
    active: bool
    state: str


def add_parser(subparsers: Subparsers) -> None:
    parser = command_parser(
        subparsers,
        "alarms",
        help="alarm-system performance (EEMUA 191) from the alarm events in InfluxDB",
        description="Read the alarm events of a period back from the [influx] database of FILE\n"
        "and print the EEMUA 191 figures: alarms per 10 minutes, share of time in flood\n"
        "(more than 10 per 10 minutes), chattering alarms (3 or more activations in a minute),\n"
        "stale alarms (active for more than 24 h), the ten most frequent.",
        examples=[
            "edge-agent alarms report --config plant.toml --since 24h",
            "edge-agent alarms report plant.toml --since 2026-11-30T06:00:00Z --until 14:00 --json",
        ],
        exits=["0      report printed", "1      the database could not be read"],
    )
    parser.add_argument("action", choices=["report"], help="what to do (report)")
    add_config_argument(parser)
    add_set_argument(parser)
    parser.add_argument("--since", required=True, help="start: 24h, 7d, 30m ago, or RFC 3339")
    parser.add_argument("--until", help="end (default: now): the same forms as --since")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=_report)


def parse_time(text: str, now: int) -> int:
    """`24h` / `7d` / `30m` / `90s` ago, or an RFC 3339 time with a zone (Z allowed)."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text.strip())
    if m:
        return now - int(float(m.group(1)) * _UNITS[m.group(2)] * _NS)
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a duration (24h, 7d, 30m) nor an RFC 3339 time"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp()) * _NS + when.microsecond * 1000


def _report(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    now = now_ns()
    try:
        start = parse_time(args.since, now)
        end = parse_time(args.until, now) if args.until else now
    except argparse.ArgumentTypeError as exc:
        print(f"edge-agent alarms report: {exc}", file=sys.stderr)
        return 2
    if cfg.influx is None:
        print(f"{args.config}: [influx] is not configured: nothing to read from", file=sys.stderr)
        return 2
    try:
        events = read_events(cfg, start, end)
    except OSError as exc:
        print(f"cannot read alarm events from {cfg.influx.url}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    report = build_report(events, start, end)
    print(json.dumps(report) if args.json else "\n".join(render(report)))
    return EXIT_OK


def build_report(events: list[StoredEvent], start: int, end: int) -> dict[str, Any]:
    activations: list[Activation] = [
        (e.ts_ns, e.alarm_id) for e in events if e.transition == "activated"
    ]
    f = figures(activations, start, end)
    return {
        "since": iso_utc(start),
        "until": iso_utc(end),
        "events": len(events),
        "activations": f.activations,
        "intervals_10min": f.intervals,
        "per_10min_avg": round(f.per_10min_avg, 3),
        "per_10min_peak": f.per_10min_peak,
        "flood_intervals": f.flood_intervals,
        "flood_share": round(f.flood_share, 4),
        "chattering": list(f.chattering),
        "stale": stale_at(events, end),
        "top": [{"alarm_id": a, "activations": n} for a, n in f.top],
    }


def stale_at(events: list[StoredEvent], end: int) -> list[str]:
    """Alarms active (not removed) at `end` whose activation lies more than 24 h before it."""
    since: dict[str, int | None] = {}
    removed: dict[str, bool] = {}
    for e in sorted(events, key=lambda e: e.ts_ns):
        if e.transition == "activated":
            since[e.alarm_id] = e.ts_ns
        elif not e.active:
            since[e.alarm_id] = None
        removed[e.alarm_id] = e.state in _REMOVED
    return sorted(
        a
        for a, t in since.items()
        if t is not None and not removed.get(a) and end - t > STALE_AFTER_NS
    )


def render(r: dict[str, Any]) -> list[str]:
    lines = [
        f"alarms {r['since']} .. {r['until']} ({r['intervals_10min']} intervals of 10 min)",
        f"  activations       {r['activations']}  ({r['events']} events)",
        f"  per 10 minutes    {r['per_10min_avg']:.2f} average, {r['per_10min_peak']} peak",
        f"  flood             {r['flood_intervals']} intervals, {100 * r['flood_share']:.1f} %"
        " of the time (more than 10 per 10 minutes)",
        f"  chattering        {', '.join(r['chattering']) or 'none'}",
        f"  stale (> 24 h)    {', '.join(r['stale']) or 'none'}",
        "  most frequent",
    ]
    lines += [f"    {t['activations']:6d}  {t['alarm_id']}" for t in r["top"]] or ["    none"]
    return lines


# ------------------------------------------------------------------------------- reading back


def read_events(cfg: AgentConfig, start: int, end: int) -> list[StoredEvent]:
    influx = cfg.influx
    assert influx is not None
    site = cfg.agent.site
    if influx.api == "v1":
        return _parse_v1(_get_v1(influx, _influxql(site, start, end)))
    return _parse_v2(_post_v2(influx, _flux(influx.bucket or "", site, start, end)))


def _influxql(site: str, start: int, end: int) -> str:
    quoted = site.replace("\\", "\\\\").replace("'", "\\'")
    return (
        'SELECT "active", "state", "alarm_id", "transition" FROM "alarm_event" '
        f"WHERE \"site\" = '{quoted}' AND time >= {start} AND time < {end}"
    )


def _get_v1(influx: InfluxSection, query: str) -> bytes:
    params = {"db": influx.db or "", "q": query, "epoch": "ns"}
    if influx.rp:
        params["rp"] = influx.rp
    request = urllib.request.Request(
        f"{influx.url.rstrip('/')}/query?{urllib.parse.urlencode(params)}"
    )
    if influx.username:
        password = influx.password.resolve() if influx.password else ""
        token = base64.b64encode(f"{influx.username}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=influx.timeout_s) as response:
        body: bytes = response.read()
    return body


def _parse_v1(body: bytes) -> list[StoredEvent]:
    doc = json.loads(body)
    out: list[StoredEvent] = []
    for result in doc.get("results", []):
        if "error" in result:
            raise OSError(f"InfluxDB refused the query: {result['error']}")
        for series in result.get("series", []):
            cols = series["columns"]
            for row in series["values"]:
                r = dict(zip(cols, row, strict=True))
                out.append(
                    StoredEvent(
                        int(r["time"]),
                        r["alarm_id"],
                        r["transition"],
                        bool(r["active"]),
                        str(r["state"]),
                    )
                )
    return out


def _flux(bucket: str, site: str, start: int, end: int) -> str:
    def q(text: str) -> str:
        return json.dumps(text)

    return (
        f"from(bucket: {q(bucket)})"
        f" |> range(start: time(v: {q(iso_ns(start))}), stop: time(v: {q(iso_ns(end))}))"
        f' |> filter(fn: (r) => r._measurement == "alarm_event" and r.site == {q(site)}'
        ' and (r._field == "active" or r._field == "state"))'
        ' |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")'
        ' |> keep(columns: ["_time", "alarm_id", "transition", "active", "state"])'
    )


def iso_ns(ts_ns: int) -> str:
    seconds = datetime.fromtimestamp(ts_ns // _NS, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{seconds}.{ts_ns % _NS:09d}Z"


def _post_v2(influx: InfluxSection, flux: str) -> bytes:
    url = (
        f"{influx.url.rstrip('/')}/api/v2/query?{urllib.parse.urlencode({'org': influx.org or ''})}"
    )
    request = urllib.request.Request(
        url, data=json.dumps({"query": flux, "type": "flux"}).encode(), method="POST"
    )
    request.add_header("Content-Type", "application/json")
    request.add_header("Accept", "application/csv")
    if influx.token is not None:
        request.add_header("Authorization", f"Token {influx.token.resolve()}")
    with urllib.request.urlopen(request, timeout=influx.timeout_s) as response:
        body: bytes = response.read()
    return body


def _parse_v2(body: bytes) -> list[StoredEvent]:
    """Flux's annotated CSV: blank-line separated tables, each with its header row."""
    out: list[StoredEvent] = []
    header: list[str] | None = None
    for row in csv.reader(io.StringIO(body.decode("utf-8"))):
        if not row or row[0].startswith("#"):
            header = None if not row else header
            continue
        if header is None:
            header = row
            continue
        r = dict(zip(header, row, strict=False))
        when = datetime.fromisoformat(r["_time"].replace("Z", "+00:00"))
        fraction = r["_time"].rstrip("Z").partition(".")[2].ljust(9, "0")[:9]
        ts = int(when.replace(microsecond=0).timestamp()) * _NS + int(fraction or 0)
        out.append(
            StoredEvent(ts, r["alarm_id"], r["transition"], r["active"] == "true", r["state"])
        )
    return out
