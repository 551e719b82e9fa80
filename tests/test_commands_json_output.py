"""`--json` means stdout is one JSON document and nothing else, faults or not; logs go to stderr.

Run as real processes against sources that are down, which is when libraries log (pymodbus'
"Failed to connect", asyncua's connection errors) and when a script most needs to parse the
answer.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.services import free_port

ROOT = Path(__file__).resolve().parent.parent
AGENT = str(Path(sys.executable).parent / "edge-agent")


def down(tmp_path: Path) -> list[str]:
    nobody = free_port()
    return [
        *("--set", f"agent.state_dir={tmp_path}"),
        *("--set", f"source.fsf.endpoint=opc.tcp://127.0.0.1:{nobody}/"),
        *("--set", f"source.offgas.endpoint=tcp://127.0.0.1:{nobody}"),
        *("--set", f"source.kiln.endpoint=tcp://127.0.0.1:{nobody}"),
    ]


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "command",
    [["probe", "config/demo.toml", "--json"], ["balance", "config/demo.toml", "--live", "--json"]],
    ids=["probe", "balance-live"],
)
def test_stdout_is_exactly_one_json_document(tmp_path: Path, command: list[str]) -> None:
    result = subprocess.run(
        [AGENT, *command, *down(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
    )
    # json.loads refuses anything before or after the one document (a log line, a second one).
    document = json.loads(result.stdout)
    assert isinstance(document, dict), result.stdout
    assert result.stderr.strip(), "the faults were logged, on stderr"
