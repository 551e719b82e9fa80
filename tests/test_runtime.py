"""`edge-agent run` as a process: signals, the shutdown bound, exit codes, JSON logs."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest

from edge_agent.runtime import EXIT_CONFIG, StopSignals
from tests.support.services import Mosquitto, free_port

ROOT = Path(__file__).resolve().parent.parent
Spawn = Callable[[list[str]], subprocess.Popen[str]]
AGENT = [str(Path(sys.executable).parent / "edge-agent")]

# An agent whose only service ignores cancellation, as a badly behaved driver might.
STUBBORN = textwrap.dedent(
    """
    import asyncio, sys
    from edge_agent.config import AgentConfig
    from edge_agent.logs import configure_logging
    from edge_agent.runtime import run_blocking
    from edge_agent.supervisor import Service

    async def stubborn() -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                pass

    configure_logging("info", "json")
    cfg = AgentConfig.model_validate({"agent": {"shutdown_timeout_s": float(sys.argv[1])}})
    sys.exit(run_blocking(cfg, [Service("stubborn", stubborn)]))
    """
)


def wait_for_event(stream: IO[str], event: str) -> dict[str, object]:
    """Read JSON log lines until `event` (the pipe read itself is bounded by the test timeout)."""
    for line in stream:
        record: dict[str, object] = json.loads(line)
        if record["event"] == event:
            return record
    raise AssertionError(f"process ended before logging {event}")


@pytest.fixture
def spawn() -> Iterator[Callable[[list[str]], subprocess.Popen[str]]]:
    """Start agent processes; whatever a failing test leaves running is killed afterwards."""
    procs: list[subprocess.Popen[str]] = []

    def start(args: list[str]) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


@pytest.mark.timeout(60)
def test_sigterm_stops_cleanly_within_the_bound(
    tmp_path: Path, spawn: Spawn, mosquitto: Mosquitto
) -> None:
    """The demo agent with every component built, its sinks on a private broker."""
    nobody = free_port()  # the instruments are down: sources keep retrying while we stop
    proc = spawn(
        [
            *AGENT,
            "run",
            "--config",
            "config/demo.toml",
            *("--set", f"agent.state_dir={tmp_path}"),
            *("--set", "agent.shutdown_timeout_s=10"),
            *("--set", f"mqtt.port={mosquitto.port}"),
            *("--set", f"health.listen=127.0.0.1:{free_port()}"),
            *("--set", f"source.fsf.endpoint=opc.tcp://127.0.0.1:{nobody}/"),
            *("--set", f"source.offgas.endpoint=tcp://127.0.0.1:{nobody}"),
            *("--set", f"source.kiln.endpoint=tcp://127.0.0.1:{nobody}"),
        ]
    )
    assert proc.stderr is not None
    started = wait_for_event(proc.stderr, "agent_started")
    assert started["site"] == "demo"
    assert started["level"] == "info"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert wait_for_event(proc.stderr, "agent_stopped")["clean"] is True


@pytest.mark.timeout(60)
def test_service_ignoring_cancellation_does_not_hang_exit(spawn: Spawn) -> None:
    proc = spawn([sys.executable, "-c", STUBBORN, "0.3"])
    assert proc.stderr is not None
    wait_for_event(proc.stderr, "agent_started")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 1
    assert wait_for_event(proc.stderr, "services_did_not_stop")["services"] == ["stubborn"]


@pytest.mark.timeout(60)
def test_second_signal_exits_at_once(spawn: Spawn) -> None:
    proc = spawn([sys.executable, "-c", STUBBORN, "300"])
    assert proc.stderr is not None
    wait_for_event(proc.stderr, "agent_started")
    proc.send_signal(signal.SIGTERM)
    wait_for_event(proc.stderr, "stop_requested")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 128 + signal.SIGINT
    assert wait_for_event(proc.stderr, "forced_exit")["signal"] == "SIGINT"


def test_config_error_exits_2_and_starts_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[agent]\ncolour = 'red'\n")
    result = subprocess.run(
        [*AGENT, "run", "--config", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == EXIT_CONFIG
    assert result.stderr == f'{bad}: agent.colour: unknown key (got: "red")\n'
    assert "agent_started" not in result.stderr


async def test_stop_signals_first_stops_second_forces() -> None:
    stop = asyncio.Event()
    exits: list[int] = []
    handler = StopSignals(stop, force_exit=exits.append)
    handler(signal.SIGTERM)
    assert stop.is_set()
    assert exits == []
    handler(signal.SIGINT)
    assert exits == [128 + signal.SIGINT]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_agent_although_its_output_pipes_are_broken(
    tmp_path: Path, spawn: Spawn, signum: int
) -> None:
    """`edge-agent run | tee log`, then Ctrl-C kills tee: the agent must still stop, in time.

    Both pipes lose their reader; every log line after that (the signal handler's own first)
    meets EPIPE. Stopping must not depend on any of them being written.
    """
    nobody = free_port()  # sources retry (and log) while we stop
    proc = spawn(
        [
            *AGENT,
            "run",
            "--config",
            "config/demo.toml",
            *("--set", f"agent.state_dir={tmp_path}"),
            *("--set", "agent.shutdown_timeout_s=5"),
            *("--set", f"mqtt.port={nobody}"),
            *("--set", f"health.listen=127.0.0.1:{free_port()}"),
            *("--set", f"source.fsf.endpoint=opc.tcp://127.0.0.1:{nobody}/"),
            *("--set", f"source.offgas.endpoint=tcp://127.0.0.1:{nobody}"),
            *("--set", f"source.kiln.endpoint=tcp://127.0.0.1:{nobody}"),
        ]
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    wait_for_event(proc.stderr, "agent_started")
    proc.stdout.close()  # the reader is gone: EPIPE from now on
    proc.stderr.close()
    proc.send_signal(signum)
    assert proc.wait(timeout=5 + 10) == 0  # the shutdown timeout, plus start-up slack
