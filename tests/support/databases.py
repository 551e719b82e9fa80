"""The time-series databases the sinks write to, as private server processes: InfluxDB 1.x and
VictoriaMetrics (which accepts InfluxDB's v2 write API)."""

from __future__ import annotations

import base64
import contextlib
import json
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.server_process import (
    HOST,
    ServerProcess,
    _http,
    free_port,
)

# ----------------------------------------------------------------------------------- InfluxDB 1.x


class InfluxDB1(ServerProcess):
    """InfluxDB 1.x (Debian: 1.6.7, so `/write?db=` and InfluxQL; no `/api/v2/write`).

    A database named `db` (default "test") exists once the server starts. With
    `admin=(user, password)`, authentication is on and that admin user exists; the helpers
    below authenticate as it, clients under test must bring their own credentials.
    """

    name = "influxd"

    def __init__(
        self, workdir: Path, db: str = "test", admin: tuple[str, str] | None = None
    ) -> None:
        super().__init__(workdir)
        self.host = HOST
        self.port = 0
        self.rpc_port = 0
        self.db = db
        self.admin = admin

    def _choose_ports(self) -> None:
        self.port = free_port()
        self.rpc_port = free_port()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def argv(self) -> list[str]:
        d = self.workdir
        config = f"""\
reporting-enabled = false
bind-address = "{HOST}:{self.rpc_port}"
[meta]
  dir = "{d}/meta"
[data]
  dir = "{d}/data"
  wal-dir = "{d}/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  bind-address = "{HOST}:{self.port}"
  log-enabled = false
  auth-enabled = {"true" if self.admin else "false"}
[continuous_queries]
  enabled = false
"""
        path = d / "influxdb.conf"
        path.write_text(config)
        return ["/usr/bin/influxd", "run", "-config", str(path)]

    def answers(self) -> bool:
        with contextlib.suppress(OSError):
            return _http("GET", f"{self.url}/ping")[0] == 204
        return False

    def first_start(self) -> None:
        super().first_start()
        if self.admin is not None:
            # InfluxDB accepts this one unauthenticated statement while no user exists.
            user, password = self.admin
            self.query(
                f"CREATE USER \"{user}\" WITH PASSWORD '{password}' WITH ALL PRIVILEGES", None
            )
        self.create_database(self.db)

    def _auth(self) -> dict[str, str]:
        if self.admin is None:
            return {}
        token = base64.b64encode(":".join(self.admin).encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def create_database(self, name: str) -> None:
        self.query(f'CREATE DATABASE "{name}"', db=None)

    def write(self, lines: str, db: str | None = None, precision: str = "ns") -> None:
        """Line protocol through the v1 `/write` endpoint; raises unless 204."""
        qs = urllib.parse.urlencode({"db": db or self.db, "precision": precision})
        status, body = _http("POST", f"{self.url}/write?{qs}", lines.encode(), self._auth())
        if status != 204:
            raise AssertionError(f"influx /write answered {status}: {body!r}")

    def query(self, q: str, db: str | None = "") -> list[dict[str, Any]]:
        """Run InfluxQL; returns the statement results' series (raises on any error)."""
        params = {"q": q, "epoch": "ns"}
        if db is not None:
            params["db"] = db or self.db
        status, body = _http(
            "POST",
            f"{self.url}/query",
            urllib.parse.urlencode(params).encode(),
            {"Content-Type": "application/x-www-form-urlencoded", **self._auth()},
        )
        result = json.loads(body)
        if status != 200 or "error" in result:
            raise AssertionError(f"influx query {q!r} answered {status}: {result}")
        series: list[dict[str, Any]] = []
        for statement in result.get("results", []):
            if "error" in statement:
                raise AssertionError(f"influx query {q!r}: {statement['error']}")
            series.extend(statement.get("series", []))
        return series

    def points(self, q: str, db: str | None = "") -> list[dict[str, Any]]:
        """The rows of a query as dicts (column -> value), all series concatenated."""
        rows: list[dict[str, Any]] = []
        for s in self.query(q, db):
            for values in s.get("values", []):
                row = dict(zip(s["columns"], values, strict=True))
                row.update(s.get("tags", {}))
                rows.append(row)
        return rows


# ------------------------------------------------------------------------------- VictoriaMetrics


class VictoriaMetrics(ServerProcess):
    """VictoriaMetrics single node (Debian: 1.79), which accepts InfluxDB's `/api/v2/write`.

    Started with `-dedup.minScrapeInterval=1ms` so a replayed point (same series, same
    millisecond) is stored once, as the at-least-once delivery tests need; with a retention of
    100 years so that test timestamps from any time are kept; and with no search latency offset
    so that freshly written points are visible to queries at once (after `flush()`).
    """

    name = "victoria-metrics"

    def __init__(self, workdir: Path, extra_args: list[str] | None = None) -> None:
        super().__init__(workdir)
        self.host = HOST
        self.port = 0
        self.extra_args = list(extra_args or [])

    def _choose_ports(self) -> None:
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def argv(self) -> list[str]:
        return [
            "/usr/bin/victoria-metrics",
            f"-httpListenAddr={HOST}:{self.port}",
            f"-storageDataPath={self.workdir}/data",
            "-dedup.minScrapeInterval=1ms",
            "-retentionPeriod=100y",
            "-search.latencyOffset=0s",
            "-search.disableCache",
            "-loggerLevel=WARN",
            *self.extra_args,
        ]

    def answers(self) -> bool:
        with contextlib.suppress(OSError):
            return _http("GET", f"{self.url}/health")[0] == 200
        return False

    def flush(self) -> None:
        """Make everything written so far searchable (VM buffers new points for ~1 s)."""
        status, body = _http("GET", f"{self.url}/internal/force_flush")
        if status != 200:
            raise AssertionError(f"force_flush answered {status}: {body!r}")

    def export(
        self, match: str = '{__name__!=""}', min_points: int = 1, timeout_s: float = 10.0
    ) -> list[dict[str, Any]]:
        """Series matching a selector, via `/api/v1/export` (one JSON object per series).

        Each object has `metric` (labels; `__name__` is `measurement_field`), `values` and
        `timestamps` (milliseconds). A new series becomes searchable a moment after its write
        (VM registers it asynchronously), so this polls until at least `min_points` points are
        visible, and raises after `timeout_s`; `min_points=0` looks once.
        """
        qs = urllib.parse.urlencode({"match[]": match, "start": "0"})
        deadline = time.monotonic() + timeout_s
        while True:
            self.flush()
            status, body = _http("GET", f"{self.url}/api/v1/export?{qs}")
            if status != 200:
                raise AssertionError(f"export answered {status}: {body!r}")
            series = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
            if sum(len(s["values"]) for s in series) >= min_points:
                return series
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"export {match}: fewer than {min_points} points after {timeout_s}s: {series}"
                )
            time.sleep(0.05)
