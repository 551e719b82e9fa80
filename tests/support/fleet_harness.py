"""Two-agent set-ups for the fleet tests: the kiln's unit agent as a real `edge-agent run`
process (so that it can be SIGKILLed), the plant-level agent in-process (so that its TagStore
can be read), pointed at the test's simulator and broker(s). Both configurations are written
from today's config/demo.toml as `make fleet-configs` writes config/unit-kiln.toml and
config/plant-level.toml, so that a change to the demo never leaves these tests behind."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_agent.commands.demo_fleet import fleet_configs
from edge_agent.config import AgentConfig
from edge_agent.contracts.samples import Sample
from edge_agent.runtime import Agent, run_agent
from simulators.agent_config import demo_config
from tests.support.plant import PlantSim
from tests.support.services import free_port

ROOT = Path(__file__).resolve().parents[2]
DEMO_TOML = ROOT / "config" / "demo.toml"


def fleet_texts() -> tuple[str, str]:
    """(unit-kiln.toml, plant-level.toml) as `make fleet-configs` writes them today."""
    return fleet_configs(DEMO_TOML.read_text(encoding="utf-8"))


KILN_TAGS = [
    "kiln.feed_rate", "kiln.residue_rate", "kiln.feed_total", "kiln.residue_total", "kiln.temp",
    "kiln.afterburner_temp", "kiln.fuel_flow", "kiln.co_ppm", "kiln.o2_pct",
]  # fmt: skip


class Link:
    """A TCP link between two buildings (socat): `cut()` breaks it as a network failure does,
    every connection through it at once, and `mend()` brings it back on the same port."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def mend(self) -> None:
        argv = [
            "socat", f"TCP-LISTEN:{self.port},bind=127.0.0.1,reuseaddr,fork",
            f"TCP:127.0.0.1:{self.target_port}",
        ]  # fmt: skip
        self.proc = subprocess.Popen(argv, start_new_session=True, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not _listening(self.port):
            if time.monotonic() > deadline:
                raise TimeoutError(f"socat did not listen on {self.port}")
            time.sleep(0.02)

    def cut(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the forked children hold the connections
            self.proc.wait(10)


def _listening(port: int) -> bool:
    return any(
        f":{port:04X} " in line and line.split()[3] == "0A"  # 0A: LISTEN
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
    )


class UnitAgent:
    """`edge-agent run --config config/unit-kiln.toml`, pointed at a simulator and a broker."""

    def __init__(self, sim: PlantSim, broker_port: int, state_dir: Path, **sets: Any) -> None:
        self.settings: dict[str, Any] = {
            "source.kiln.endpoint": sim.modbus_endpoint,
            "mqtt.port": broker_port,
            "agent.state_dir": state_dir,
            "health.enabled": "false",
            "agent.log_format": "json",
            **sets,
        }
        self.state_dir = state_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = state_dir.parent / f"{state_dir.name}.log"

    def start(self) -> None:
        sets = [a for k, v in self.settings.items() for a in ("--set", f"{k}={v}")]
        cli = Path(sys.executable).parent / "edge-agent"
        self.state_dir.mkdir(parents=True, exist_ok=True)
        config = self.state_dir.parent / "unit-kiln.toml"
        config.write_text(fleet_texts()[0], encoding="utf-8")
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [cli, "run", "--config", config, *sets], stdout=log, stderr=subprocess.STDOUT
            )

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def bd_seq(self) -> int:
        return int((self.state_dir / "sparkplug" / "smelter.unit-kiln.bdseq").read_text().strip())


def plant_document(sim: PlantSim, broker_port: int, state_dir: Path) -> dict[str, Any]:
    """config/plant-level.toml on this simulator and broker; no sinks, KPIs every second."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir.parent / "plant-level.toml"
    path.write_text(fleet_texts()[1], encoding="utf-8")
    doc = demo_config(sim.opcua_endpoint, sim.modbus_endpoint, path)
    for source in doc["source"]:
        if source["protocol"] in ("sparkplug", "mqtt"):
            source["endpoint"] = f"mqtt://127.0.0.1:{broker_port}"
    return _in_test(doc, state_dir)


def single_document(sim: PlantSim, state_dir: Path) -> dict[str, Any]:
    """config/demo.toml: one agent reading the whole plant itself."""
    return _in_test(demo_config(sim.opcua_endpoint, sim.modbus_endpoint), state_dir)


def _in_test(doc: dict[str, Any], state_dir: Path) -> dict[str, Any]:
    doc["agent"] = {**doc["agent"], "state_dir": str(state_dir)}
    doc["kpi"] = {**doc["kpi"], "interval_s": 1.0}
    doc["health"] = {"enabled": False}
    doc.pop("mqtt", None)
    doc.pop("influx", None)
    return doc


@dataclass
class InProcess:
    """An agent running in this test's loop; `store` is its live TagStore."""

    cfg: AgentConfig
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    agent: Agent | None = None
    task: asyncio.Task[int] | None = None

    def get(self, tag: str) -> Sample | None:
        return self.agent.store.get(tag) if self.agent is not None else None

    def good(self, *tags: str) -> bool:
        return all((s := self.get(t)) is not None and s.good for t in tags)


@asynccontextmanager
async def in_process(doc: dict[str, Any]) -> AsyncIterator[InProcess]:
    running = InProcess(AgentConfig.model_validate(doc))

    def started(agent: Agent) -> None:
        running.agent = agent

    running.task = asyncio.create_task(
        run_agent(running.cfg, stop=running.stop, on_started=started)
    )
    try:
        yield running
    finally:
        running.stop.set()
        await asyncio.wait_for(running.task, 30)


def load_toml(path: Path) -> dict[str, Any]:
    with path.open("rb") as f:
        return tomllib.load(f)
