"""The bus's own checks (drivers/modbus_bus.py): serial port problems named plainly, pacing,
an adapter pulled and plugged back."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from drivers.base import DriverConnectionError
from drivers.modbus_bus import LinkSettings, ModbusBus, ModbusBuses
from edge_agent.acquisition import SourcePoller
from edge_agent.config import ModbusSource
from edge_agent.pipeline import SampleBus
from edge_agent.tagstore import TagStore
from tests.support.fake_plant import stop_tasks
from tests.support.plant import StartPlant
from tests.support.services import SocatPtyPair
from tests.support.waiting import eventually

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


@pytest.mark.slow
async def test_an_unplugged_adapter_is_bad_then_good_when_plugged_back(
    plant_sim_factory: StartPlant, socat_pty: SocatPtyPair
) -> None:
    """The pty pair dies (a USB adapter pulled) and comes back under the same name."""
    sim = await plant_sim_factory(serve_opcua=False, modbus_serial_port=socat_pty.far_end)
    sim.serial_devices = {"rtu": socat_pty.device}
    kiln = next(s for s in sim.agent_config().source if s.name == "kiln")
    assert isinstance(kiln, ModbusSource)
    src = sim.modbus_source(kiln.model_copy(update={"poll_interval_s": 0.2}), "rtu")
    store = TagStore()
    task = asyncio.create_task(SourcePoller(src, SampleBus(store)).run())

    def kiln_temp(good: bool, reason: str | None = None) -> bool:
        s = store.get("kiln.temp")
        return s is not None and s.good is good and (reason is None or s.reason == reason)

    try:
        await eventually(lambda: kiln_temp(True), 10, "kiln Good over the serial line")
        socat_pty.stop(kill=True)
        await eventually(lambda: kiln_temp(False, "connection_lost"), 10, "kiln Bad when unplugged")
        socat_pty.start()
        await sim.restart("modbus")  # the simulator's end of the new pair
        await eventually(lambda: kiln_temp(True), 15, "kiln Good when plugged back")
    finally:
        await stop_tasks(task)
