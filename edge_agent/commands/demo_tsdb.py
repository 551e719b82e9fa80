"""The demo's own time-series database: a private VictoriaMetrics or InfluxDB 1.x on loopback.

The demo shows no sink as failed that the user never asked for. When Debian's `victoria-metrics`
(preferred: it starts in a fraction of a second) or `influxdb` package is installed, the demo
starts one on a free loopback port with its data under the demo's state directory, points the
InfluxDB sink at it, and the web view draws its trends from it. Without either binary the
InfluxDB sink stays off and the web view says how to turn it on.

The server is the demo's child: it dies with the demo (PR_SET_PDEATHSIG) even when the demo is
killed, and is stopped with SIGTERM on a normal exit.
"""

from __future__ import annotations

import asyncio
import ctypes
import shutil
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import structlog

log = structlog.get_logger(__name__)

START_TIMEOUT_S = 20.0
DEMO_DB = "smelter"


@dataclass(frozen=True)
class Flavour:
    name: str
    binary: str


FLAVOURS = (
    Flavour("victoria-metrics", "/usr/bin/victoria-metrics"),
    Flavour("influxd", "/usr/bin/influxd"),
)


def available() -> Flavour | None:
    """The first database binary installed here, if any."""
    for flavour in FLAVOURS:
        found = shutil.which(flavour.name) or (
            flavour.binary if Path(flavour.binary).exists() else None
        )
        if found:
            return Flavour(flavour.name, found)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class PrivateTsdb:
    """One database process for one demo run."""

    def __init__(self, flavour: Flavour, state_dir: Path) -> None:
        self.flavour = flavour
        self.workdir = state_dir / flavour.name
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._proc: asyncio.subprocess.Process | None = None

    def influx_section(self) -> dict[str, Any]:
        """The agent's `[influx]` table for this database."""
        # Both take InfluxDB 1.x line protocol on /write; the v1 writer is plain aiohttp.
        return {"api": "v1", "url": self.url, "db": DEMO_DB}

    def trends(self) -> str:
        """The web view's `trends` setting: how to ask this database for history."""
        return "prometheus" if self.flavour.name == "victoria-metrics" else "influxql"

    def _argv(self) -> list[str]:
        d = self.workdir
        if self.flavour.name == "victoria-metrics":
            return [
                self.flavour.binary, f"-httpListenAddr=127.0.0.1:{self.port}",
                f"-storageDataPath={d}/data", "-retentionPeriod=7d", "-loggerLevel=ERROR",
                "-search.latencyOffset=2s",
            ]  # fmt: skip
        config = d / "influxdb.conf"
        config.write_text(
            f'reporting-enabled = false\nbind-address = "127.0.0.1:{_free_port()}"\n'
            f'[meta]\n  dir = "{d}/meta"\n[data]\n  dir = "{d}/data"\n  wal-dir = "{d}/wal"\n'
            "  query-log-enabled = false\n[monitor]\n  store-enabled = false\n"
            f'[http]\n  bind-address = "127.0.0.1:{self.port}"\n  log-enabled = false\n'
        )
        return [self.flavour.binary, "run", "-config", str(config)]

    async def start(self) -> None:
        """Start it and return once it answers (raises `RuntimeError` with its log's tail)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        log_path = self.workdir / "server.log"
        with log_path.open("ab") as out:
            self._proc = await asyncio.create_subprocess_exec(
                *self._argv(), stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
                cwd=self.workdir, preexec_fn=_die_with_parent,
            )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT_S
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            while not await self._answers(http):
                if self._proc.returncode is not None or time.monotonic() > deadline:
                    await self.stop()
                    tail = log_path.read_text(errors="replace")[-800:]
                    raise RuntimeError(f"{self.flavour.name} did not start:\n{tail}")
                await asyncio.sleep(0.05)
            if self.flavour.name == "influxd":
                async with http.post(self.url + "/query", data={"q": f"CREATE DATABASE {DEMO_DB}"}):
                    pass
        log.info("demo_tsdb_started", server=self.flavour.name, url=self.url)

    async def _answers(self, http: aiohttp.ClientSession) -> bool:
        path = "/health" if self.flavour.name == "victoria-metrics" else "/ping"
        try:
            async with http.get(self.url + path) as resp:
                return resp.status in (200, 204)
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 5.0)
        except TimeoutError:
            proc.kill()
            await proc.wait()
