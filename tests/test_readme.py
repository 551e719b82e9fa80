"""The README's newcomer path, command for command, as a new user types it in a fresh checkout.

The commands are read from the README's `newcomer` block and run in order by bash, in a scratch
checkout (the repository's `config/` and `.venv`), after `source .venv/bin/activate` as the
README says. Two changes keep the run private and on loopback: `edge-agent-sim` gets free ports
instead of its defaults (4840, 5020), and each command on a config file gets `--set` lines
pointing its sources at them (and its broker and health listener at free ports). A command
ending in `&` runs in the background until `kill %1`; `edge-agent run` runs until the agent has
started and is then stopped with Ctrl-C (SIGINT), as the README says.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CONFIG_PATH = "/etc/edge-agent/agent.toml"

pytestmark = pytest.mark.slow


def newcomer_commands() -> list[str]:
    text = README.read_text()
    (block,) = re.findall(r"<!-- newcomer: start -->\s*```sh\n(.*?)```", text, re.S)
    commands = [line.split("  #", 1)[0].strip() for line in block.splitlines()]
    return [c for c in commands if c and not c.startswith("#")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Session:
    """A bash session's worth of state: cwd, background jobs, the ports they listen on."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.opcua, self.modbus = free_port(), free_port()
        self.jobs: list[subprocess.Popen[str]] = []
        self.outputs: dict[str, str] = {}

    def localise(self, command: str) -> str:
        if command.startswith("edge-agent-sim"):
            return f"{command} --opcua-port {self.opcua} --modbus-port {self.modbus}"
        if re.match(r"edge-agent (probe|balance|check-config|run) ", command):
            sets = [
                f"source.fsf.endpoint=opc.tcp://127.0.0.1:{self.opcua}/smelter/",
                f"source.offgas.endpoint=tcp://127.0.0.1:{self.modbus}",
                f"source.kiln.endpoint=tcp://127.0.0.1:{self.modbus}",
                f"mqtt.port={free_port()}",
                f"health.listen=127.0.0.1:{free_port()}",
            ]
            return command + "".join(f" --set {s}" for s in sets)
        return command

    def bash(self, command: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            ["bash", "-c", f"source .venv/bin/activate && exec {command}"],
            cwd=self.cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, text=True,
            env={k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"},
        )  # fmt: skip

    def run(self, command: str) -> None:
        if command == "source .venv/bin/activate":
            return  # every command below runs after it (see `bash`)
        if command == "kill %1":
            job = self.jobs.pop(0)
            job.send_signal(signal.SIGTERM)
            assert job.wait(timeout=20) in (0, -signal.SIGTERM), command
            return
        background = command.endswith("&")
        local = self.localise(command.removesuffix("&").strip())
        if background:
            self.jobs.append(self.bash(local))
            self._wait_for_simulators()
            return
        if command.startswith("edge-agent run "):
            self._run_until_started(local)
            return
        proc = self.bash(local)
        out, _ = proc.communicate(timeout=120)
        self.outputs[command] = out
        assert proc.returncode == 0, f"{command}\n{out[-3000:]}"

    def _wait_for_simulators(self) -> None:
        deadline = time.monotonic() + 30
        for port in (self.opcua, self.modbus):
            while True:
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)) == 0:
                        break
                assert time.monotonic() < deadline, f"simulators not listening on {port}"
                time.sleep(0.1)

    def _run_until_started(self, command: str) -> None:
        proc = self.bash(command)
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:
            seen.append(line)
            if "agent_started" in line:
                break
        else:
            raise AssertionError(f"{command}: never started\n{''.join(seen)[-3000:]}")
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        rest, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, f"{command}\n{''.join(seen)}{rest}"[-3000:]
        assert "agent_stopped" in rest

    def close(self) -> None:
        for job in self.jobs:
            job.kill()
            job.wait(timeout=10)


@pytest.mark.timeout(300)
def test_the_newcomer_path_works_command_for_command(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    shutil.copytree(ROOT / "config", checkout / "config")
    (checkout / ".venv").symlink_to(ROOT / ".venv")
    commands = newcomer_commands()
    assert commands[0] == "source .venv/bin/activate"
    session = Session(checkout)
    try:
        for command in commands:
            session.run(command)
    finally:
        session.close()
    assert session.jobs == []  # every background job was stopped as the README says
    out = session.outputs
    assert "check-config" in out["edge-agent --help"]
    probe = out["edge-agent probe config/demo.toml"].splitlines()
    assert re.match(r"(\d+)/\1 Good in ", probe[-1]), probe[-1]  # every tag of the demo plant
    assert "Good in" in out["edge-agent probe config/demo.toml --not-good"]
    assert "Heat balance" in out["edge-agent balance config/demo.toml --live"]
    assert "NOT LIVE" not in out["edge-agent balance config/demo.toml --live"]
    assert out["edge-agent check-config plant.toml"].startswith("plant.toml: valid")
    assert (checkout / "state" / "outbox.db").exists()  # the run kept its state where it said


def test_readme_installer_and_unit_name_one_config_path() -> None:
    texts = {
        "README.md": README.read_text(),
        "deploy/install.sh": (ROOT / "deploy" / "install.sh").read_text(),
        "deploy/edge-agent.service": (ROOT / "deploy" / "edge-agent.service").read_text(),
        "docs/operations.md": (ROOT / "docs" / "operations.md").read_text(),
    }
    for name, text in texts.items():
        paths = set(re.findall(r"/etc/edge-agent/[\w.-]+\.toml", text))
        paths.discard("/etc/edge-agent/agent.example.toml")
        assert paths == {CONFIG_PATH}, f"{name} names {paths}"
    unit = texts["deploy/edge-agent.service"]
    assert f"edge-agent run --config {CONFIG_PATH}" in unit
    assert '"$ETC/agent.toml"' in texts["deploy/install.sh"]


def test_make_demo_is_the_demo_command() -> None:
    """`make demo` wraps `edge-agent demo` (which tests/test_commands_demo.py runs)."""
    # Under `make test` this make is a sub-make, which would print its directory around the
    # recipe (MAKELEVEL): say not to.
    dry = subprocess.run(
        ["make", "--no-print-directory", "-n", "demo"], cwd=ROOT, capture_output=True, text=True
    )
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines()[-1].endswith("/edge-agent demo")
