"""Settings that cannot run do not start: the corpus of bad files in tests/bad_configs/.

Each file starts with one `# expect: key.path: message` line per problem it must report; both
`check-config` and `run` must print exactly those lines (after the file name), exit 2, start
nothing and show no traceback. Every case of issue 12 is here: infinite, huge, tiny and string
intervals, ports out of range or given as booleans, endpoints with the wrong scheme or none,
an unwritable state directory, 900 levels of nesting, registers shared across sources, missing
secrets and unreadable key files. The files that shipped valid stay valid.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.cli import main
from edge_agent.config.loader import load_config

ROOT = Path(__file__).resolve().parent.parent
CORPUS = sorted((ROOT / "tests" / "bad_configs").glob("*.toml"))
EXIT_CONFIG = 2


def expected(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [
        f"{path}: {line.removeprefix('# expect: ')}"
        for line in lines
        if line.startswith("# expect: ")
    ]


@pytest.fixture(autouse=True)
def _no_secrets_around(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGE_AGENT_TEST_SECRET_NOT_SET", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)


def test_the_corpus_has_every_case_of_the_issue() -> None:
    names = {p.stem for p in CORPUS}
    assert len(CORPUS) >= 30
    for case in ("poll_interval_inf", "poll_interval_huge", "poll_interval_tiny",
                 "poll_interval_string", "health_listen_port", "modbus_endpoint_not_url",
                 "opcua_endpoint_http", "state_dir_unwritable", "nesting_too_deep",
                 "mqtt_port_bool", "overlapping_registers_across_sources",
                 "mqtt_password_env_unset", "opcua_private_key_unreadable"):  # fmt: skip
        assert case in names
    assert all(expected(p) for p in CORPUS), "every file says what it must print"


@pytest.mark.parametrize("command", ["check-config", "run"])
@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_each_bad_file_is_refused_with_its_lines(
    path: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [command, str(path)] if command == "check-config" else [command, "--config", str(path)]
    assert main(argv) == EXIT_CONFIG
    out, err = capsys.readouterr()
    assert err.splitlines() == expected(path)
    assert "Traceback" not in out + err
    assert "agent_started" not in out


@pytest.mark.parametrize("name", ["nesting_too_deep", "state_dir_unwritable", "mqtt_port_bool"])
def test_run_as_a_process_exits_2_without_a_traceback(name: str) -> None:
    path = ROOT / "tests" / "bad_configs" / f"{name}.toml"
    result = subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "run", "--config", str(path)],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == EXIT_CONFIG
    assert result.stderr.splitlines() == expected(path)
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize("path", sorted((ROOT / "config").glob("*.toml")), ids=lambda p: p.name)
def test_the_shipped_files_stay_valid(path: Path) -> None:
    # Their secrets and key files name /etc/edge-agent: only their content is judged here.
    load_config(path, resolve=False)
