"""Private instances of the real servers the integration tests talk to.

Each fixture starts its own Mosquitto, InfluxDB 1.x or VictoriaMetrics on a free loopback port
with a generated config and a temporary data directory, waits until it answers, and kills it
afterwards. They start in well under a second, so they are function-scoped: no test sees another
test's messages or points, and xdist workers never share anything.

Outage tests call `.stop()` (SIGTERM; `.stop(kill=True)` for SIGKILL) and `.start()` again: the
server comes back on the same port with the same data directory.

For a server with a non-default config (a password file, other limits), build one directly:

    with Mosquitto(tmp_path / "broker", extra_config=["allow_anonymous false", ...]) as broker:
        ...
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0
HOST = "127.0.0.1"


def free_port() -> int:
    """A loopback port nobody listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def _die_with_parent() -> None:
    """Runs in the child before exec: if the test process dies, the kernel kills the server."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


class ServerProcess:
    """One server process: config generation, start, readiness, stop, restart on the same port."""

    name = "server"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / f"{self.name}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    # -- what a subclass provides

    def argv(self) -> list[str]:
        raise NotImplementedError

    def answers(self) -> bool:
        """True once the server serves requests (not merely once the process exists)."""
        raise NotImplementedError

    def _choose_ports(self) -> None:
        """Pick fresh ports; called before a first start and again if that start lost a race."""
        raise NotImplementedError

    # -- lifecycle

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start (or restart) and return once the server answers."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                self.argv(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.answers():
            if self._proc.poll() is not None:
                code = self._proc.returncode
                raise RuntimeError(f"{self.name} exited with {code} at start:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop(kill=True)
                raise TimeoutError(f"{self.name} did not answer within {START_TIMEOUT_S}s")
            time.sleep(0.02)

    def first_start(self) -> None:
        """Start on fresh ports; another process may grab a free port first, so retry."""
        for attempt in range(3):
            self._choose_ports()
            try:
                self.start()
                return
            except RuntimeError:
                if attempt == 2:
                    raise

    def stop(self, *, kill: bool = False) -> None:
        """SIGTERM (or SIGKILL) and wait; the data directory and ports stay for `start()`."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> ServerProcess:
        self.first_start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop(kill=True)


# Loopback only, whatever proxy the environment names.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _http(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """Plain HTTP for the fixtures' helpers (tests' own clients are the product's business)."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with _DIRECT.open(req, timeout=5) as resp:
            status: int = resp.status
            return status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _connects(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
        return True
    return False


# ------------------------------------------------------------------------------------- Mosquitto


class Mosquitto(ServerProcess):
    """Mosquitto 2.x, anonymous, loopback only, no persistence, unlimited queues.

    Mosquitto's default `max_queued_messages 1000` silently drops QoS 1 messages for a slow or
    offline persistent subscriber; durability tests need every message kept, so queues are
    unbounded here (0 = no limit, for both message count and bytes).
    """

    name = "mosquitto"

    def __init__(self, workdir: Path, extra_config: list[str] | None = None) -> None:
        super().__init__(workdir)
        self.host = HOST
        self.port = 0
        self.extra_config = list(extra_config or [])

    def _choose_ports(self) -> None:
        self.port = free_port()

    @property
    def config_path(self) -> Path:
        return self.workdir / "mosquitto.conf"

    def argv(self) -> list[str]:
        lines = [
            f"listener {self.port} {HOST}",
            "allow_anonymous true",
            "persistence false",
            f"persistence_location {self.workdir}/",
            "max_queued_messages 0",
            "max_queued_bytes 0",
            "max_inflight_messages 0",
            "max_inflight_bytes 0",
            "set_tcp_nodelay true",
            "log_dest stdout",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            *self.extra_config,
        ]
        if os.getuid() == 0 and not any(line.split()[:1] == ["user"] for line in lines):
            # As root, Mosquitto drops to user "mosquitto", who cannot write our temp dirs.
            lines.append("user root")
        self.config_path.write_text("\n".join(lines) + "\n")
        return ["/usr/sbin/mosquitto", "-c", str(self.config_path)]

    def answers(self) -> bool:
        return _connects(self.port)


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


class SocatPtyPair(ServerProcess):
    """A null-modem cable in software: two pseudo-terminals joined by `socat`.

    `.device` is the end the agent opens as its serial port, `.far_end` the simulator's. Both are
    symlinks in the work directory to /dev/pts/N. A pseudo-terminal ignores the baud rate, so
    tests over it measure our code, not the line.
    """

    name = "socat"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.device = str(workdir / "ttyAGENT")
        self.far_end = str(workdir / "ttySIM")

    def argv(self) -> list[str]:
        pty = "pty,raw,echo=0,link="
        return ["socat", pty + self.far_end, pty + self.device]

    def answers(self) -> bool:
        return os.path.exists(self.device) and os.path.exists(self.far_end)

    def _choose_ports(self) -> None:
        for end in (self.device, self.far_end):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(end)


# -------------------------------------------------------------------------------------- fixtures


def _serve(factory: Callable[[], ServerProcess]) -> Iterator[Any]:
    server = factory()
    try:
        server.first_start()
        yield server
    finally:
        server.stop(kill=True)


@pytest.fixture
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A private Mosquitto on a free loopback port: `.host`, `.port`, `.stop()`, `.start()`."""
    yield from _serve(lambda: Mosquitto(tmp_path_factory.mktemp("mosquitto")))


@pytest.fixture
def influxdb1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB1]:
    """A private InfluxDB 1.x with database `test`: `.url`, `.write()`, `.query()`, `.points()`."""
    yield from _serve(lambda: InfluxDB1(tmp_path_factory.mktemp("influxdb")))


@pytest.fixture
def victoria_metrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetrics]:
    """A private VictoriaMetrics: `.url` (`/api/v2/write`), `.export()`, `.flush()`."""
    yield from _serve(lambda: VictoriaMetrics(tmp_path_factory.mktemp("victoria")))


@pytest.fixture
def socat_pty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SocatPtyPair]:
    """A pseudo-terminal pair: `.device` for the agent, `.far_end` for the simulator."""
    yield from _serve(lambda: SocatPtyPair(tmp_path_factory.mktemp("socat")))


__all__ = [
    "InfluxDB1",
    "Mosquitto",
    "ServerProcess",
    "SocatPtyPair",
    "VictoriaMetrics",
    "free_port",
    "influxdb1",
    "mosquitto",
    "socat_pty",
    "victoria_metrics",
]
