"""The systemd unit passes `systemd-analyze verify` and rates 2.0 or lower on `security`."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "deploy" / "edge-agent.service"

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze not installed (.ci/run installs it)",
)


def _directives(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_unit_has_the_operational_contract() -> None:
    d = _directives(UNIT.read_text())
    assert d["Type"] == ["notify"]
    assert d["KillMode"] == ["mixed"]  # the agent stops its acquisition workers itself
    assert d["NotifyAccess"] == ["main"]
    assert d["Restart"] == ["on-failure"]
    assert d["RestartPreventExitStatus"] == ["2"]
    assert d["DynamicUser"] == ["yes"]
    assert d["StateDirectory"] == ["edge-agent"]
    assert d["ConfigurationDirectory"] == ["edge-agent"]
    assert d["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert int(d["WatchdogSec"][0]) > 0
    assert any(c.startswith("-mqtt_password:") for c in d["LoadCredential"])
    assert d["ExecStart"][0].startswith("/opt/edge-agent/venv/bin/edge-agent run")


def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    # ExecStart must name an executable that exists: point it at this interpreter.
    unit = tmp_path / "edge-agent.service"
    unit.write_text(
        re.sub(r"^ExecStart=\S+", f"ExecStart={sys.executable}", UNIT.read_text(), flags=re.M)
    )
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


def test_security_exposure_is_at_most_2() -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(UNIT)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.0, result.stdout


SERIAL_DROPIN = ROOT / "deploy" / "edge-agent-serial.conf"
# What the serial drop-in may change, and nothing more: the rest of the hardening stays.
SERIAL_RELAXES = {"PrivateDevices", "PrivateUsers"}


def _with_serial_dropin(tmp_path: Path) -> Path:
    """The unit as systemd sees it with the drop-in: a second [Service] section appended."""
    unit = tmp_path / "edge-agent.service"
    text = re.sub(r"^ExecStart=\S+", f"ExecStart={sys.executable}", UNIT.read_text(), flags=re.M)
    dropin = SERIAL_DROPIN.read_text().replace("@SERIAL_PORT@", "/dev/ttyS0")
    unit.write_text(text + "\n" + dropin)
    return unit


def test_serial_access_is_a_drop_in_that_keeps_the_hardening(tmp_path: Path) -> None:
    base = _directives(UNIT.read_text())
    assert base["PrivateDevices"] == ["yes"]  # no serial port without the drop-in
    assert "SupplementaryGroups" not in base
    serial = _directives(SERIAL_DROPIN.read_text())
    assert serial["SupplementaryGroups"] == ["dialout"]
    assert serial["DeviceAllow"] == ["@SERIAL_PORT@ rw"]
    assert serial["DevicePolicy"] == ["closed"]
    changed = {k for k in serial if k in base and serial[k] != base[k]}
    assert changed == SERIAL_RELAXES
    unit = _with_serial_dropin(tmp_path)
    verified = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stderr
    assert verified.stderr.strip() == "", verified.stderr
    rated = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", rated.stdout)
    assert match, rated.stdout + rated.stderr
    assert float(match.group(1)) <= 2.0, rated.stdout
