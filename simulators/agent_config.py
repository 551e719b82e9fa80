"""Agent configurations (TOML-shaped dicts) that point at a running `Simulation`.

Dicts, not `AgentConfig`s, so that the simulators never import the agent; callers validate
them with `AgentConfig.model_validate(...)` (tests/support/plant.py does).
"""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

from simulators.opcua_server import synthetic_tag_id
from simulators.tags import NAMESPACE_URI

DEMO_TOML = Path(__file__).resolve().parent.parent / "config" / "demo.toml"
GATEWAY_TOML = DEMO_TOML.with_name("demo-gateway.toml")
_DEMO_HEAD = """\
# The demo plant (docs/process-model.md §2), served by `edge-agent-sim`: the flash furnace over
# OPC UA, the off-gas line and the kiln over Modbus TCP.
# Addresses are the simulators' (docs/simulators.md documents the OPC UA tree and Modbus map).
"""
_GATEWAY_HEAD = """\
# Generated from config/demo.toml by `make demo-configs` (python -m simulators.agent_config):
# edit demo.toml, not this file. The demo plant with the kiln behind a serial-to-Ethernet
# gateway, its Modbus as RTU frames over TCP (`edge-agent demo --config config/demo-gateway.toml`;
# the simulators serve RTU over TCP on port 5021). Serial set-up: docs/acquisition.md.
"""
_KILN = """\
[[source]]
name = "kiln"
protocol = "modbus"
endpoint = "tcp://127.0.0.1:5020"
"""
_KILN_OVER_GATEWAY = """\
[[source]]
name = "kiln"
protocol = "modbus"
transport = "rtu_over_tcp"      # RTU framing with CRC on the gateway's TCP socket
endpoint = "tcp://127.0.0.1:5021"
timeout_s = 0.5                 # longer than the gateway's own serial timeout
unreachable_after = 3           # then asked every 10 s, tags Bad "device_unreachable"
"""


def demo_config(
    opcua_endpoint: str,
    modbus_endpoint: str,
    path: Path = DEMO_TOML,
    rtu_over_tcp_endpoint: str | None = None,
) -> dict[str, Any]:
    """config/demo.toml (or `path`) with every source's endpoint replaced by the simulator's;
    Modbus sources with `transport = "rtu_over_tcp"` get the simulator's RTU-over-TCP one."""
    with path.open("rb") as f:
        doc = tomllib.load(f)
    for source in doc.get("source", []):
        if source["protocol"] == "opcua":
            source["endpoint"] = opcua_endpoint
        elif source["protocol"] == "modbus" and source.get("transport") == "rtu_over_tcp":
            if rtu_over_tcp_endpoint is None:
                raise ValueError(f"{path}: source {source['name']} needs the RTU-over-TCP server")
            source["endpoint"] = rtu_over_tcp_endpoint
        elif source["protocol"] == "modbus":
            source["endpoint"] = modbus_endpoint
    return doc


def gateway_demo_text(demo_text: str) -> str:
    """config/demo-gateway.toml from config/demo.toml's text (comments kept): the kiln's source
    on an RTU-over-TCP gateway, everything else the same."""
    if not demo_text.startswith(_DEMO_HEAD) or demo_text.count(_KILN) != 1:
        raise ValueError("config/demo.toml changed its header or kiln source: update agent_config")
    return _GATEWAY_HEAD + demo_text[len(_DEMO_HEAD) :].replace(_KILN, _KILN_OVER_GATEWAY)


def synthetic_config(
    opcua_endpoint: str, modbus_endpoint: str, n: int, *, base: dict[str, Any] | None = None,
    poll_interval_s: float = 1.0, opcua_sessions: int = 1,
) -> dict[str, Any]:  # fmt: skip
    """A configuration that reads the N synthetic tags over OPC UA and over Modbus (unit 4).

    Sources `synth_opcua` and `synth_modbus` are added to `base` (default: no other sources), so
    the acquisition benchmark can compare the two protocols on the same number of tags.
    """
    from simulators.modbus_server import SYNTHETIC_UNIT

    doc: dict[str, Any] = copy.deepcopy(base) if base else {"agent": {"site": "bench"}}
    sources: list[dict[str, Any]] = doc.setdefault("source", [])
    sources.append({
        "name": "synth_opcua", "protocol": "opcua", "endpoint": opcua_endpoint,
        "poll_interval_s": poll_interval_s, "sessions": opcua_sessions,
        "tag": [{"id": f"synth_opcua.{synthetic_tag_id(i).split('.')[1]}",
                 "node": f"nsu={NAMESPACE_URI};s={synthetic_tag_id(i)}"} for i in range(n)],
    })  # fmt: skip
    sources.append({
        "name": "synth_modbus", "protocol": "modbus", "endpoint": modbus_endpoint,
        "poll_interval_s": poll_interval_s,
        "tag": [{"id": f"synth_modbus.{synthetic_tag_id(i).split('.')[1]}",
                 "unit_id": SYNTHETIC_UNIT, "table": "holding", "address": 2 * i,
                 "type": "float32", "byte_order": "ABCD"} for i in range(n)],
    })  # fmt: skip
    return doc


if __name__ == "__main__":
    GATEWAY_TOML.write_text(gateway_demo_text(DEMO_TOML.read_text()))
    print(f"wrote {GATEWAY_TOML}")
