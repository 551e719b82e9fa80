"""deploy/install.sh into a temporary root: install, install again (idempotent), uninstall.

Building the wheel and a virtualenv with every dependency takes a minute or two on a busy CI
machine, so this runs once per session and is marked slow. Dependencies come from pip's
configured index or `--find-links` (offline); nothing touches systemd with a root directory.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
INSTALL = ROOT / "deploy" / "install.sh"

pytestmark = pytest.mark.slow


def run(*args: str | Path) -> str:
    result = subprocess.run(
        ["sh", str(INSTALL), *map(str, args)],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.timeout(900)
def test_install_twice_then_uninstall(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    wheels = tmp_path / "wheels"
    subprocess.run(
        ["python3", "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(wheels), str(ROOT)],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    (wheel,) = wheels.glob("smelter_edge_agent-*.whl")

    ports = ("/dev/serial/by-id/usb-FTDI_RS485-if00-port0", "/dev/ttyS1")
    serial = [arg for port in ports for arg in ("--serial-port", port)]
    out = run("--root", root, "--wheel", wheel, "--no-compile", *serial)
    assert "systemd not touched" in out
    dropin = root / "etc/systemd/system/edge-agent.service.d/serial.conf"
    lines = dropin.read_text().splitlines()
    assert [line for line in lines if line.startswith("DeviceAllow=")] == [
        f"DeviceAllow={port} rw" for port in ports
    ]
    assert "SupplementaryGroups=dialout" in lines
    unit = root / "etc/systemd/system/edge-agent.service"
    config = root / "etc/edge-agent/agent.toml"
    binary = root / "opt/edge-agent/venv/bin/edge-agent"
    assert digest(unit) == digest(ROOT / "deploy/edge-agent.service")
    assert (root / "etc/edge-agent/agent.example.toml").is_file()
    assert (root / "opt/edge-agent/share/doc/operations.md").is_file()
    assert (root / "etc/edge-agent/credentials").stat().st_mode & 0o777 == 0o700
    assert os.access(binary, os.X_OK)
    # The installed program runs and accepts the example configuration it was given (whose
    # secrets and certificates the operator has yet to install: its content is judged).
    checked = subprocess.run(
        [binary, "check-config", "--content-only", config],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr

    # The operator's config survives a re-install; everything else is the same as before.
    config.write_text(config.read_text() + "\n# edited by the operator\n")
    edited = digest(config)
    before = sorted(p.relative_to(root) for p in root.rglob("*") if "venv" not in p.parts)
    run("--root", root, "--wheel", wheel, "--no-compile")
    after = sorted(p.relative_to(root) for p in root.rglob("*") if "venv" not in p.parts)
    assert after == before
    assert digest(config) == edited
    assert os.access(binary, os.X_OK)

    assert dropin.is_file()  # a re-install without --serial-port keeps the serial access

    run("--root", root, "--uninstall")
    assert not (root / "opt/edge-agent").exists()
    assert not unit.exists()
    assert not dropin.exists()
    assert digest(config) == edited  # config and secrets stay unless purged

    run("--root", root, "--uninstall", "--purge")
    assert not (root / "etc/edge-agent").exists()


def test_install_refuses_unknown_options() -> None:
    result = subprocess.run(
        ["sh", str(INSTALL), "--frobnicate"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert "unknown option --frobnicate" in result.stderr


def test_install_refuses_a_serial_port_outside_dev() -> None:
    result = subprocess.run(
        ["sh", str(INSTALL), "--serial-port", "ttyUSB0"], capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "--serial-port ttyUSB0: give a path under /dev" in result.stderr
