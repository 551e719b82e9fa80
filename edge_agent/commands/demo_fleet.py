"""`edge-agent demo --fleet`: the two-agent demo (docs/fleet.md).

The kiln's unit agent runs as its own `edge-agent run` process on `config/unit-kiln.toml`, as it
would on its own edge PC: it reads the simulated kiln over Modbus and publishes Sparkplug B to
the demo's broker. The demo's agent (the one in the live view) runs `config/plant-level.toml`:
furnace and off-gas line from the simulators, the kiln from the broker, the site KPIs.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DEMO_TOML = ROOT / "config" / "demo.toml"
PLANT_LEVEL_TOML = ROOT / "config" / "plant-level.toml"
UNIT_KILN_TOML = ROOT / "config" / "unit-kiln.toml"
_MQTT_SOURCES = ("mqtt", "sparkplug")

# ---------------------------------------------------------------- the two files, from demo.toml
# Both are written from config/demo.toml (`make fleet-configs`), so that the two-agent demo
# computes exactly what the single-agent demo does; a test fails when they fall behind it.

_UNIT_HEAD = """\
# The kiln's unit agent of the two-agent demo (docs/fleet.md): it runs on the edge PC in the
# recycling building, reads the kiln's PLC over Modbus and publishes Sparkplug B as edge node
# `unit-kiln` of group `smelter`. The plant-level agent (config/plant-level.toml) hosts it.
# Written by `make fleet-configs` from config/demo.toml (its kiln source); edit that instead.

[agent]
site = "demo"
instance_id = "unit-kiln"
state_dir = "state/unit-kiln"
timezone = "Asia/Tokyo"
log_level = "info"

"""
_UNIT_TAIL = """
[outbox]
max_bytes = 268435456

[mqtt]
host = "127.0.0.1"
port = 1883
format = "sparkplug_b"
keepalive_s = 5                  # the plant agent sees this unit offline within 1.5 x 5 s

[mqtt.sparkplug]
group_id = "smelter"
edge_node_id = "unit-kiln"

[health]
listen = "127.0.0.1:9109"
"""
_PLANT_HEAD = """\
# The plant-level agent of the two-agent demo (docs/fleet.md): it reads the flash furnace over
# OPC UA and the off-gas line over Modbus, hosts the kiln's unit agent over Sparkplug B (source
# `kiln`, edge node `unit-kiln`: config/unit-kiln.toml) and computes the site KPIs.
# Written by `make fleet-configs` from config/demo.toml: everything but the kiln source and the
# agent's identity is demo.toml's. Edit that instead.
#
"""
_KILN_HOSTED = """\
[[source]]
name = "kiln"
protocol = "sparkplug"
endpoint = "mqtt://127.0.0.1:1883"
group_id = "smelter"
edge_node_id = "unit-kiln"            # the kiln's unit agent (config/unit-kiln.toml)
"""


def fleet_configs(demo: str) -> tuple[str, str]:
    """(unit-kiln.toml, plant-level.toml) from the text of demo.toml."""
    start = demo.index('[[source]]\nname = "kiln"\n')
    end = demo.index("\n[", demo.index("\n[[source.tag]]", start) + 1)
    while demo.startswith("[[source.tag]]", end + 1):
        end = demo.index("\n[", end + 1)
    kiln = demo[start:end].rstrip() + "\n"
    tags = []
    for block in kiln.split("[[source.tag]]")[1:]:
        tag = re.search(r'^id = "([^"]+)"', block, re.M)
        unit = re.search(r'^unit = "([^"]*)"', block, re.M)
        assert tag is not None
        device, _, metric = tag.group(1).partition(".")
        lines = [f'id = "{tag.group(1)}"', f'device = "{device}"', f'metric = "{metric}"']
        if unit is not None:
            lines.append(f'unit = "{unit.group(1)}"')
        tags.append("[[source.tag]]\n" + "\n".join(lines) + "\n")
    hosted = _KILN_HOSTED + "\n" + "\n".join(tags)
    plant = _PLANT_HEAD + demo[:start] + hosted + demo[end:]
    plant = plant.replace('instance_id = "edge-01"', 'instance_id = "plant-level"', 1)
    plant = plant.replace('state_dir = "state"\n', 'state_dir = "state/plant-level"\n', 1)
    return _UNIT_HEAD + kiln + _UNIT_TAIL, plant


def write_fleet_configs() -> None:
    unit, plant = fleet_configs(DEMO_TOML.read_text(encoding="utf-8"))
    UNIT_KILN_TOML.write_text(unit, encoding="utf-8")
    PLANT_LEVEL_TOML.write_text(plant, encoding="utf-8")


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


if __name__ == "__main__":  # make fleet-configs
    write_fleet_configs()
