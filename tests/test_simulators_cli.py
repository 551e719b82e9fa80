"""`edge-agent-sim` as an operator runs it: endpoints printed, faults applied, SIGTERM stops it."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys

import pytest
from pymodbus.client import AsyncModbusTcpClient

from simulators.cli import build_parser
from simulators.faults import FaultError, parse

SIM = [sys.executable, "-m", "simulators.cli"]


async def test_serves_prints_endpoints_applies_faults_and_stops_on_sigterm() -> None:
    proc = await asyncio.create_subprocess_exec(
        *SIM, "--opcua-port", "0", "--modbus-port", "0", "--time-scale", "60", "--control",
        "--fault", "device_busy:kiln.temp",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stdin is not None
    try:
        opcua = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode().split()
        modbus = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode().split()
        assert opcua[0] == "opcua"
        assert opcua[1].startswith("opc.tcp://127.0.0.1:")
        assert opcua[1].endswith("/smelter/")
        assert modbus[0] == "modbus"
        port = int(modbus[1].rsplit(":", 1)[1])
        client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
        assert await client.connect()
        busy = await client.read_holding_registers(8, count=1, device_id=3)
        assert busy.isError()
        assert busy.exception_code == 6
        proc.stdin.write(b"clear\n")
        await proc.stdin.drain()
        assert (await asyncio.wait_for(proc.stdout.readline(), 10)).decode().strip() == (
            "applied clear"
        )
        assert not (await client.read_holding_registers(8, count=1, device_id=3)).isError()
        client.close()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
        assert (await proc.stdout.read()).decode().strip().endswith("stopped")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_a_bad_fault_specification_is_refused_with_exit_code_2() -> None:
    proc = await asyncio.create_subprocess_exec(
        *SIM, "--opcua-port", "0", "--modbus-port", "0", "--fault", "spike:fsf.nonexistent",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert b"unknown tag 'fsf.nonexistent'" in err


@pytest.mark.parametrize(
    ("text", "message"),
    [("melt:fsf.matte_temp", "unknown fault 'melt'"), ("drop:plc", "say opcua, modbus or all"),
     ("slow_modbus:soon", "'soon' is not a number"), ("renumber:modbus", "only opcua")],
)  # fmt: skip
def test_fault_syntax_errors_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(FaultError, match=message):
        parse(text)


def test_defaults_are_the_documented_ports() -> None:
    args = build_parser().parse_args([])
    assert (args.opcua_port, args.modbus_port, args.time_scale) == (4840, 5020, 1.0)


async def test_a_busy_port_is_reported_with_what_to_do() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = await asyncio.create_subprocess_exec(
            *SIM, "--opcua-port", "0", "--modbus-port", str(port),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1
    assert f"Modbus port {port}".encode() in err
    assert b"--modbus-port" in err
