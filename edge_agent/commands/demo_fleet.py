"""`edge-agent demo --fleet`: the two-agent demo (docs/fleet.md).

The kiln's unit agent runs as its own `edge-agent run` process on `config/unit-kiln.toml`, as it
would on its own edge PC: it reads the simulated kiln over Modbus and publishes Sparkplug B to
the demo's broker. The demo's agent (the one in the live view) runs `config/plant-level.toml`:
furnace and off-gas line from the simulators, the kiln from the broker, the site KPIs.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PLANT_LEVEL_TOML = ROOT / "config" / "plant-level.toml"
UNIT_KILN_TOML = ROOT / "config" / "unit-kiln.toml"
_MQTT_SOURCES = ("mqtt", "sparkplug")


def point_sources_at_broker(doc: dict[str, Any], host: str, port: int, version: str) -> None:
    """The plant-level agent reads the unit agents from the demo's broker."""
    for source in doc.get("source", []):
        if source.get("protocol") in _MQTT_SOURCES:
            source["endpoint"] = f"mqtt://{host}:{port}"
            source["mqtt_version"] = version


class UnitAgentProcess:
    """The kiln's unit agent, a child process whose log goes to `<state_dir>/unit-kiln.log`."""

    def __init__(
        self, modbus_endpoint: str, mqtt: tuple[str, int], version: str, state_dir: Path
    ) -> None:
        self.settings = {
            "source.kiln.endpoint": modbus_endpoint,
            "mqtt.host": mqtt[0],
            "mqtt.port": mqtt[1],
            "mqtt.protocol": version,
            "agent.state_dir": state_dir / "unit-kiln",
            "agent.log_format": "json",
            "health.enabled": "false",
        }
        self.log_path = state_dir / "unit-kiln.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        sets = [arg for key, value in self.settings.items() for arg in ("--set", f"{key}={value}")]
        argv = [sys.executable, "-m", "edge_agent.cli", "run", "--config", str(UNIT_KILN_TOML)]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [*argv, *sets], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM (a clean Sparkplug death), then SIGKILL if it does not end in time."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
