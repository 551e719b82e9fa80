"""config/demo-gateway.toml: the demo with the kiln behind an RTU-over-TCP gateway."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from edge_agent.commands.probe import probe_source
from edge_agent.config import AgentConfig
from simulators.agent_config import demo_config, gateway_demo_text
from tests.support.plant import StartPlant

ROOT = Path(__file__).resolve().parent.parent
GATEWAY = ROOT / "config" / "demo-gateway.toml"
KILN_LINK = {"transport", "endpoint", "timeout_s", "unreachable_after"}


def load(path: Path) -> dict[str, Any]:
    with path.open("rb") as f:
        return tomllib.load(f)


def test_it_is_the_demo_but_for_the_kilns_link() -> None:
    assert GATEWAY.read_text() == gateway_demo_text((ROOT / "config" / "demo.toml").read_text()), (
        "config/demo.toml changed: run `make demo-configs`"
    )
    demo, gateway = load(ROOT / "config" / "demo.toml"), load(GATEWAY)
    assert {k: v for k, v in gateway.items() if k != "source"} == {
        k: v for k, v in demo.items() if k != "source"
    }
    for ours, theirs in zip(gateway["source"], demo["source"], strict=True):
        if ours["name"] != "kiln":
            assert ours == theirs
            continue
        assert ours["transport"] == "rtu_over_tcp"
        assert {k: v for k, v in ours.items() if k not in KILN_LINK} == {
            k: v for k, v in theirs.items() if k not in KILN_LINK
        }


@pytest.mark.slow
async def test_the_kiln_reads_good_through_the_simulated_gateway(
    plant_sim_factory: StartPlant,
) -> None:
    sim = await plant_sim_factory(serve_opcua=False, modbus_rtu_over_tcp_port=0)
    doc = demo_config(sim.opcua_endpoint, sim.modbus_endpoint, GATEWAY,
                      sim.modbus_rtu_over_tcp_endpoint)  # fmt: skip
    cfg = AgentConfig.model_validate(doc)
    kiln = next(s for s in cfg.source if s.name == "kiln")
    assert kiln.endpoint == sim.modbus_rtu_over_tcp_endpoint
    # The simulated gateway answers from this event loop: on a loaded machine its answers can
    # take longer than the 0.5 s meant for a real one (what is read is the point here).
    kiln = kiln.model_copy(update={"timeout_s": 1.0})
    errors: list[str] = []
    rows = await probe_source(kiln, errors)
    assert errors == []
    assert rows
    assert all(r.sample.good for r in rows), [(r.sample.tag, r.sample.reason) for r in rows]
