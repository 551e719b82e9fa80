"""`edge-agent demo`'s parts: whatever fails after they started, each one that started is stopped."""

from __future__ import annotations

import argparse
from pathlib import Path

import psutil
import pydantic
import pytest

from edge_agent.commands.demo import DEMO_TOML, run_demo

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]


def _listening() -> set[int]:
    """The TCP ports this process listens on."""
    return {
        c.laddr.port
        for c in psutil.Process().net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN
    }


@pytest.mark.timeout(300)  # a hang guard: the OPC UA server's start takes its time under load
async def test_a_config_refused_after_the_parts_started_stops_them_all(tmp_path: Path) -> None:
    # The simulators and the embedded broker are up by the time the agent's config is checked;
    # `--influx` names a database, so no private one starts (nothing is asked of it here).
    bad = tmp_path / "demo.toml"
    bad.write_text(DEMO_TOML.read_text(encoding="utf-8") + "\n[no_such_section]\nx = 1\n")
    args = argparse.Namespace(config=str(bad), time_scale=1.0, broker=None, fleet=False,
                              influx="http://127.0.0.1:9/")  # fmt: skip
    before = _listening()
    with pytest.raises(pydantic.ValidationError, match="no_such_section"):
        await run_demo(args, tmp_path / "state", None)
    assert _listening() == before  # simulators (OPC UA, Modbus, RTU over TCP) and broker
