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

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.databases import InfluxDB1, VictoriaMetrics
from tests.support.server_process import (
    HOST,
    ServerProcess,
    _connects,
    free_port,
)

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
