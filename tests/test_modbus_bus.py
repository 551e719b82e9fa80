"""The bus's own checks (drivers/modbus_bus.py): serial port problems named plainly, pacing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from drivers.base import DriverConnectionError
from drivers.modbus_bus import LinkSettings, ModbusBus, ModbusBuses
from tests.services import SocatPtyPair

ROOT = Path(__file__).resolve().parent.parent


async def test_a_missing_port_is_named_with_where_to_look() -> None:
    bus = ModbusBus(LinkSettings("rtu", serial_port="/dev/ttyUSB99"))
    with pytest.raises(DriverConnectionError, match=r"/dev/ttyUSB99 does not exist.*by-id"):
        await bus.connect(0.5)


def test_the_inter_frame_silence_is_three_and_a_half_characters() -> None:
    link = LinkSettings("rtu", serial_port="x", baudrate=19200, parity="E")  # 11 bits a character
    assert link.silence_s == pytest.approx(3.5 * 11 / 19200)
    assert LinkSettings("rtu_over_tcp", endpoint="tcp://gw").silence_s == 0.0
    assert link.describe() == "x (rtu, 19200 8E1)"


def test_sources_on_one_link_get_one_bus_and_must_agree() -> None:
    buses = ModbusBuses()
    link = LinkSettings("rtu", serial_port="/dev/ttyS3")
    assert buses.bus("/dev/ttyS3", link) is buses.bus("/dev/ttyS3", link)
    with pytest.raises(ValueError, match="disagree"):
        buses.bus("/dev/ttyS3", LinkSettings("rtu", serial_port="/dev/ttyS3", baudrate=9600))


def test_permission_denied_says_to_add_the_dialout_group(socat_pty: SocatPtyPair) -> None:
    """As a user outside the port's group: as root, a child process that drops to nobody once
    Python is loaded (the interpreter may live where nobody cannot read)."""
    check = (
        "import asyncio, os, sys\n"
        "from drivers.modbus_bus import LinkSettings, ModbusBus\n"
        "if os.getuid() == 0:\n"
        "    os.setgroups([]); os.setgid(65534); os.setuid(65534)\n"
        "bus = ModbusBus(LinkSettings('rtu', serial_port=sys.argv[1], parity='N'))\n"
        "try:\n    asyncio.run(bus.connect(0.5))\n"
        "except Exception as exc:\n    print(type(exc).__name__, exc)\n"
    )
    port = os.path.realpath(socat_pty.device)  # /dev/pts/N: the symlink's folder is private
    if os.getuid() == 0:
        os.chmod(port, 0o600)
    else:
        port = str(socat_pty.workdir / "denied")
        Path(port).touch(mode=0o000)
    said = subprocess.run(
        [sys.executable, "-c", check, port], capture_output=True, text=True, cwd=ROOT,
        timeout=60, check=True,
    ).stdout  # fmt: skip
    assert said.startswith("DriverAccessDenied permission denied on serial port"), said
    assert "add the service user to the dialout group" in said
