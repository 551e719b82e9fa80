"""systemd's notify protocol: readiness, status line, watchdog, stopping.

The protocol is one datagram of `KEY=value` lines to the socket named in `$NOTIFY_SOCKET` (a path,
or an abstract-namespace name written with a leading '@'); that is all `libsystemd` does, so there
is no dependency here. Outside systemd the variable is unset and every call is a no-op.

The watchdog is the point of it: `WATCHDOG=1` goes out only while every watched loop (acquisition
per source, delivery per sink) has advanced its progress counter recently. A loop that hangs, say on
a socket read without a timeout, stops the heartbeat, and systemd kills and restarts the agent after
`WatchdogSec=` even though the process is still alive.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import structlog

log = structlog.get_logger(__name__)


class Notifier:
    """Sends notify messages; silent when not started by systemd (no `$NOTIFY_SOCKET`)."""

    def __init__(self, address: str | None = None) -> None:
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET")
        self._address = _socket_address(address) if address else None
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def send(self, *fields: str) -> bool:
        """Send one datagram of `KEY=value` lines; True if it was sent.

        A failure is logged and swallowed: telling systemd about the agent must never stop the
        agent (systemd notices a missing heartbeat on its own).
        """
        if self._address is None:
            return False
        message = "\n".join(fields).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(message, self._address)
        except OSError as exc:
            log.warning("sd_notify_failed", error=str(exc), message=fields[0] if fields else "")
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.send("READY=1", *([f"STATUS={_one_line(status)}"] if status else []))

    def reloading(self) -> bool:
        # systemd 253 wants MONOTONIC_USEC with RELOADING=1 for Type=notify-reload; 252 ignores it.
        return self.send("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={_one_line(text)}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        return self.send("STOPPING=1", *([f"STATUS={_one_line(status)}"] if status else []))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval_s(environ: dict[str, str] | None = None) -> float | None:
    """Half of `$WATCHDOG_USEC` (systemd's advice), or None when no watchdog is armed for us.

    `$WATCHDOG_PID`, when set, names the process the watchdog is meant for; a child that inherited
    the environment must not answer for its parent.
    """
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC")
    pid = env.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 2e6 if value > 0 else None


@dataclass(frozen=True)
class ProgressProbe:
    """A loop that must keep moving: `read()` returns a counter that its loop advances each cycle.

    A cycle is any completed round: a poll (even one that produced only Bad samples), a delivered
    batch, a reconnect attempt, an idle wake-up with nothing to send. Only a loop that is stuck
    stops counting.
    """

    name: str
    read: Callable[[], int]


class ProgressWatch:
    """Decides whether all probes moved within `stall_after_s`; pure logic, clock injectable."""

    def __init__(
        self,
        probes: Callable[[], Iterable[ProgressProbe]],
        stall_after_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._probes = probes
        self._stall_after_s = stall_after_s
        self._clock = clock
        self._seen: dict[str, tuple[int, float]] = {}

    def stalled(self) -> list[str]:
        """Names of the probes whose counter has not moved for longer than `stall_after_s`."""
        now = self._clock()
        stalled: list[str] = []
        current: dict[str, tuple[int, float]] = {}
        for probe in self._probes():
            value = probe.read()
            last = self._seen.get(probe.name)
            if last is None or last[0] != value:
                current[probe.name] = (value, now)
                continue
            current[probe.name] = last
            if now - last[1] > self._stall_after_s:
                stalled.append(probe.name)
        self._seen = current
        return stalled


async def run_notify_loop(
    notifier: Notifier,
    watch: ProgressWatch,
    interval_s: float,
    status: Callable[[], str] | None = None,
    *,
    watchdog: bool = True,
) -> None:
    """Every `interval_s`: refresh STATUS= and, while nothing is stalled, send WATCHDOG=1.

    Runs until cancelled. Withholding the heartbeat is logged once per stall, by probe name, so
    the journal says which loop hung before systemd's `WatchdogSignal=` arrives.
    """
    withheld: frozenset[str] = frozenset()
    while True:
        stalled = watch.stalled()
        line = status() if status is not None else ""
        if stalled:
            if frozenset(stalled) != withheld:
                log.error("watchdog_withheld", stalled=stalled)
            withheld = frozenset(stalled)
            notifier.status(f"STALLED: {', '.join(stalled)}; {line}".rstrip("; "))
        else:
            if withheld:
                log.info("watchdog_resumed")
            withheld = frozenset()
            fields = (["WATCHDOG=1"] if watchdog else []) + (
                [f"STATUS={_one_line(line)}"] if line else []
            )
            if fields:
                notifier.send(*fields)
        await asyncio.sleep(interval_s)


def _socket_address(address: str) -> str | bytes:
    if address.startswith("@"):
        return b"\0" + address[1:].encode()
    return address


def _one_line(text: str) -> str:
    return " ".join(text.split())
