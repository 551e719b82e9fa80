"""`edge-agent demo`: whatever fails after its parts started, each part that started is stopped."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pydantic
import pytest

from edge_agent.commands.demo import DEMO_TOML, run_demo

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]


def _listening() -> set[int]:
    """The TCP ports this process listens on (from /proc: its socket inodes in LISTEN state)."""
    mine = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed meanwhile (the listing's own descriptor)
            continue
        if target.startswith("socket:["):
            mine.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table, encoding="ascii") as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in mine:  # 0A: TCP_LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


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
