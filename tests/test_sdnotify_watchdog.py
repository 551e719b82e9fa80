"""The real acquisition loop, the health board and the notify loop together: a read that hangs
stops the systemd watchdog heartbeat, and the status line names the source."""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
from collections.abc import Iterator

import pytest

from edge_agent.acquisition import SourceHealth, SourcePoller
from edge_agent.config import AgentConfig
from edge_agent.contracts.samples import Quality, Sample, Value, now_ns
from edge_agent.pipeline import SampleBus
from edge_agent.sdnotify import Notifier, ProgressWatch, run_notify_loop
from edge_agent.status_board import StatusBoard
from edge_agent.tagstore import TagStore


class HangingDriver:
    """Answers reads until `hang` is set; then a read never returns (dead peer, no timeout)."""

    def __init__(self) -> None:
        self.hang = asyncio.Event()

    async def connect(self) -> None:
        return None

    async def read(self) -> list[Sample]:
        if self.hang.is_set():
            await asyncio.Event().wait()
        return [Sample("fsf.matte_temp", 1250.0, Quality.GOOD, now_ns())]

    async def write(self, tag_id: str, value: Value) -> None:
        return None

    async def close(self) -> None:
        return None


@pytest.fixture
def notify_socket() -> Iterator[tuple[str, socket.socket]]:
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="wd") as tmp:
        path = os.path.join(tmp, "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.setblocking(False)
        yield path, sock
        sock.close()


async def received(sock: socket.socket, want: str) -> list[str]:
    """Messages up to and including the first that contains `want` (10 s at most)."""
    got: list[str] = []
    async with asyncio.timeout(10):
        while not got or want not in got[-1]:
            try:
                got.append(sock.recv(4096).decode())
            except BlockingIOError:
                await asyncio.sleep(0.02)
    return got


async def test_a_hung_read_stops_the_watchdog(notify_socket: tuple[str, socket.socket]) -> None:
    path, sock = notify_socket
    cfg = AgentConfig.model_validate(
        {
            "source": [
                {
                    "name": "fsf", "protocol": "opcua", "endpoint": "opc.tcp://127.0.0.1:1/",
                    "poll_interval_s": 0.02,
                    "tag": [{"id": "fsf.matte_temp", "node": "ns=2;s=fsf.matte_temp"}],
                }
            ]
        }
    )  # fmt: skip
    store = TagStore()
    driver = HangingDriver()
    poller = SourcePoller(cfg.source[0], SampleBus(store), factory=lambda _: driver)
    board = StatusBoard(store)
    board.add(SourceHealth(poller.stats, ["fsf.matte_temp"], store))
    notifier = Notifier(path)
    watch = ProgressWatch(board.probes, stall_after_s=0.5)
    tasks = [
        asyncio.create_task(poller.run()),
        asyncio.create_task(run_notify_loop(notifier, watch, 0.05, board.summary)),
    ]
    try:
        beats = await received(sock, "WATCHDOG=1\nSTATUS=1/1 tags good")
        assert beats[-1].startswith("WATCHDOG=1")

        driver.hang.set()
        stalled = await received(sock, "STALLED: source:fsf")
        assert stalled[-1].startswith("STATUS=STALLED: source:fsf")
        after: list[str] = []
        for _ in range(5):  # five more rounds: the heartbeat stays withheld
            after += await received(sock, "STALLED")
        assert not any(m.startswith("WATCHDOG=1") for m in after)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        notifier.close()
