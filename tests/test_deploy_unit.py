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
