"""sd_notify: messages captured on a real datagram socket, as systemd would receive them."""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge_agent.sdnotify import (
    Notifier,
    ProgressProbe,
    ProgressWatch,
    run_notify_loop,
    watchdog_interval_s,
)


class Capture:
    """A bound datagram socket standing in for systemd's notify socket."""

    def __init__(self, sock: socket.socket, address: str) -> None:
        self.sock = sock
        self.address = address

    def messages(self) -> list[str]:
        out: list[str] = []
        while True:
            try:
                out.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return out


@pytest.fixture
def capture() -> Iterator[Capture]:
    # A socket path (what systemd uses) in a short private dir: AF_UNIX paths stop at 107 bytes.
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="sdn") as tmp:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        path = os.path.join(tmp, "notify")
        sock.bind(path)
        sock.setblocking(False)
        yield Capture(sock, path)
        sock.close()


def test_ready_status_stopping_reach_the_socket(capture: Capture) -> None:
    notifier = Notifier(capture.address)
    assert notifier.ready("12 tags\ngood")
    assert notifier.status("3/3 tags good, 2 samples/s, outbox 0")
    assert notifier.stopping()
    notifier.close()
    assert capture.messages() == [
        "READY=1\nSTATUS=12 tags good",
        "STATUS=3/3 tags good, 2 samples/s, outbox 0",
        "STOPPING=1",
    ]


def test_abstract_namespace_address() -> None:
    name = f"edge-agent-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    try:
        assert Notifier("@" + name).ready()
        assert sock.recv(4096) == b"READY=1"
    finally:
        sock.close()


def test_without_notify_socket_everything_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier()
    assert not notifier.enabled
    assert not notifier.ready()


def test_vanished_socket_is_logged_not_raised(tmp_path: Path) -> None:
    assert not Notifier(str(tmp_path / "gone.sock")).watchdog()


def test_watchdog_interval_is_half_of_watchdog_usec() -> None:
    pid = str(os.getpid())
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": pid}) == 15.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval_s({}) is None


def test_progress_watch_names_the_stalled_loop() -> None:
    now = [0.0]
    counters = {"source:fsf": 0, "sink:mqtt": 0}
    watch = ProgressWatch(
        lambda: [ProgressProbe(n, lambda n=n: counters[n]) for n in counters],  # type: ignore[misc]
        stall_after_s=10,
        clock=lambda: now[0],
    )
    assert watch.stalled() == []
    for t in (5.0, 11.0, 17.0):
        now[0] = t
        counters["sink:mqtt"] += 1
        stalled = watch.stalled()
    assert stalled == ["source:fsf"]
    counters["source:fsf"] += 1
    assert watch.stalled() == []


async def test_watchdog_only_while_loops_progress(capture: Capture) -> None:
    """Healthy loops: WATCHDOG=1 with STATUS; stalled acquisition: STATUS names it, no WATCHDOG."""
    counters = {"source:fsf": 0, "sink:mqtt": 0}
    acquisition_alive = asyncio.Event()
    acquisition_alive.set()

    async def loop(name: str) -> None:
        while True:
            if name.startswith("source"):
                await acquisition_alive.wait()  # a stalled acquisition loop hangs here
            counters[name] += 1
            await asyncio.sleep(0.01)

    probes = [ProgressProbe(n, lambda n=n: counters[n]) for n in counters]  # type: ignore[misc]
    watch = ProgressWatch(lambda: probes, stall_after_s=0.3)
    notifier = Notifier(capture.address)
    tasks = [asyncio.create_task(loop(n)) for n in counters]
    tasks.append(
        asyncio.create_task(run_notify_loop(notifier, watch, 0.05, lambda: "3/3 tags good"))
    )
    try:
        healthy = await _collect_until(capture, lambda ms: len(ms) >= 3)
        assert all(m == "WATCHDOG=1\nSTATUS=3/3 tags good" for m in healthy)

        acquisition_alive.clear()
        stalled = await _collect_until(capture, lambda ms: any("STALLED" in m for m in ms))
        after = await _collect_until(capture, lambda ms: len(ms) >= 3)
        assert stalled[-1] == "STATUS=STALLED: source:fsf; 3/3 tags good"
        assert after
        assert not any("WATCHDOG" in m for m in after)

        acquisition_alive.set()
        resumed = await _collect_until(capture, lambda ms: any("WATCHDOG=1" in m for m in ms))
        assert resumed[-1].startswith("WATCHDOG=1")
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        notifier.close()


async def _collect_until(capture: Capture, done: Callable[[list[str]], bool]) -> list[str]:
    """Gather messages until `done(messages)`; fail after 10 s."""
    got: list[str] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10.0
    while loop.time() < deadline:
        got.extend(capture.messages())
        if done(got):
            return got
        await asyncio.sleep(0.02)
    raise AssertionError(f"condition not met; got {got!r}")
