"""`edge-agent run` as systemd runs it: READY, SIGHUP reload (good and bad file), STOPPING.

The agent is a real subprocess with `$NOTIFY_SOCKET` pointing at a datagram socket of ours, and
with its health endpoint on a free port; a configuration without sources keeps it independent of
the simulators.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.request import urlopen

import pytest

from edge_agent.config import AgentConfig
from edge_agent.reload import changed_sections

CONFIG = """
[agent]
site = "{site}"
instance_id = "edge-reload"
state_dir = "{state}"

[health]
listen = "127.0.0.1:{port}"
"""


def write(path: Path, text: str) -> None:
    """Replace the file atomically, as an editor or config management does."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


INFLUX = """
[influx]
api = "v1"
url = "http://127.0.0.1:9"
db = "x"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Agent:
    def __init__(self, proc: subprocess.Popen[str], notify: socket.socket, port: int) -> None:
        self.proc = proc
        self.notify = notify
        self.port = port
        self.messages: list[str] = []

    def wait_message(self, predicate: Callable[[str], bool], timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"agent exited {self.proc.returncode}: {self.output()}")
            self.notify.settimeout(max(0.01, min(0.5, deadline - time.monotonic())))
            try:
                message = self.notify.recv(4096).decode()
            except TimeoutError:
                continue
            self.messages.append(message)
            if predicate(message):
                return message
        raise AssertionError(f"no such notify message; got {self.messages!r}")

    def output(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.read()

    def metrics(self) -> str:
        with urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as resp:
            return str(resp.read().decode())

    def wait_metrics(self, needle: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                last = self.metrics()
            except OSError as exc:
                last = repr(exc)
            if needle in last:
                return last
            if self.proc.poll() is not None:
                raise AssertionError(f"agent exited {self.proc.returncode}: {self.output()}")
            time.sleep(0.1)
        self.proc.kill()
        raise AssertionError(f"{needle!r} not in /metrics:\n{last}\n{self.output()}")


@pytest.fixture
def agent_run(tmp_path: Path) -> Iterator[Callable[[Path], Agent]]:
    started: list[Agent] = []
    tmp = tempfile.TemporaryDirectory(dir="/tmp", prefix="rl")  # AF_UNIX path length limit
    notify_path = os.path.join(tmp.name, "notify")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(notify_path)

    def start(config: Path) -> Agent:
        env = dict(os.environ, NOTIFY_SOCKET=notify_path, WATCHDOG_USEC="1000000")
        env.pop("WATCHDOG_PID", None)
        proc = subprocess.Popen(
            [sys.executable, "-m", "edge_agent.cli", "run", "--config", str(config), "--force"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        agent = Agent(proc, notify, int(config.read_text().split("127.0.0.1:")[1].split('"')[0]))
        started.append(agent)
        return agent

    yield start
    for agent in started:
        if agent.proc.poll() is None:
            agent.proc.kill()
        agent.proc.wait(timeout=10)
        assert agent.proc.stdout is not None
        agent.proc.stdout.close()
    notify.close()
    tmp.cleanup()


def test_reload_applies_a_good_file_and_keeps_running_on_a_bad_one(
    tmp_path: Path, agent_run: Callable[[Path], Agent]
) -> None:
    port = free_port()
    config = tmp_path / "agent.toml"
    config.write_text(CONFIG.format(site="before", state=tmp_path / "state", port=port))
    agent = agent_run(config)

    ready = agent.wait_message(lambda m: m.startswith("READY=1"))
    assert "STATUS=" in ready
    # Nothing is stalled (no sources or sinks here), so the heartbeat flows at WATCHDOG_USEC / 2.
    beat = agent.wait_message(lambda m: m.startswith("WATCHDOG=1"))
    assert "STATUS=0/0 tags good" in beat
    agent.wait_metrics('edge_agent_info{instance="edge-reload",site="before"} 1.0')

    write(config, CONFIG.format(site="after", state=tmp_path / "state", port=port))
    agent.proc.send_signal(signal.SIGHUP)
    agent.wait_message(lambda m: m.startswith("RELOADING=1"))
    agent.wait_message(lambda m: m.startswith("READY=1"))
    agent.wait_metrics('site="after"')

    write(config, CONFIG.format(site="not a valid site!", state=tmp_path / "state", port=port))
    agent.proc.send_signal(signal.SIGHUP)
    rejected = agent.wait_message(lambda m: "reload rejected" in m)
    assert "agent.site" in rejected
    write(config, CONFIG.format(site="after", state=tmp_path / "state", port=port) + "[x]\n")
    agent.proc.send_signal(signal.SIGHUP)
    agent.wait_message(lambda m: "reload rejected" in m)
    # Still alive and serving the previous configuration.
    assert 'site="after"' in agent.metrics()
    assert agent.proc.poll() is None

    # A state directory that cannot be written is refused with the file, before anything stops.
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    write(config, CONFIG.format(site="broken", state=blocker / "state", port=port) + INFLUX)
    agent.proc.send_signal(signal.SIGHUP)
    rejected = agent.wait_message(lambda m: "reload rejected" in m)
    assert "agent.state_dir" in rejected
    assert 'site="after"' in agent.metrics()

    agent.proc.send_signal(signal.SIGTERM)
    agent.wait_message(lambda m: m.startswith("STOPPING=1"))
    out, _ = agent.proc.communicate(timeout=20)
    assert agent.proc.returncode == 0, out
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    names = [e["event"] for e in events]
    assert "config_reloaded" in names
    rejected = [e for e in events if e["event"] == "config_reload_rejected"]
    assert len(rejected) == 3
    assert any("agent.site" in line for line in rejected[0]["errors"]), rejected[0]
    assert any("x" in line for line in rejected[1]["errors"]), rejected[1]
    assert any("agent.state_dir" in line for line in rejected[2]["errors"]), rejected[2]
    # The first start and the good reload; nothing was stopped for the rejected ones.
    assert names.count("agent_started") == 2


def test_changed_sections_names_sources_individually() -> None:
    old = AgentConfig.model_validate(
        {"source": [{"name": "fsf", "protocol": "modbus", "endpoint": "tcp://127.0.0.1:5020"}]}
    )
    new = AgentConfig.model_validate(
        {
            "agent": {"site": "other"},
            "source": [{"name": "fsf", "protocol": "modbus", "endpoint": "tcp://127.0.0.1:5021"}],
        }
    )
    assert changed_sections(old, new) == ["agent", "source.fsf"]
    assert changed_sections(old, old) == []
