"""`edge-agent check-config`: summary and exit 0, or every problem on its own line and exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.cli import build_parser, main

ROOT = Path(__file__).resolve().parent.parent

BAD = """\
[agent]
colour = "red"
shutdown_timeout_s = "soon"

[[source]]
name = "fsf"
protocol = "opcua"
endpoint = "opc.tcp://127.0.0.1:4840/"

[[source.tag]]
id = "fsf.matte_temp"
node = "s=a"

[[source.tag]]
id = "fsf.matte_temp"
node = "s=b"

[mqtt]
password = "hunter2"
"""


def test_check_config_demo_prints_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(ROOT / "config" / "demo.toml")]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{ROOT / 'config' / 'demo.toml'}: valid\n")
    assert "    fsf: opcua opc.tcp://127.0.0.1:4840/smelter/" in out
    assert "sinks: mqtt (json) 127.0.0.1:1883" in out


def test_check_config_reports_every_problem_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(BAD)
    assert main(["check-config", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 4
    assert all(line.startswith(f"{path}: ") for line in lines)
    assert f'{path}: agent.colour: unknown key (got: "red")' in lines
    assert any("agent.shutdown_timeout_s: Input should be a valid number" in x for x in lines)
    assert any("source.fsf.tag.1.id: duplicate tag id" in x for x in lines)
    assert any(
        x.startswith(f"{path}: mqtt.password: secrets are not written inline") for x in lines
    )
    assert "hunter2" not in captured.err


def test_check_config_applies_overrides(capsys: pytest.CaptureFixture[str]) -> None:
    demo = str(ROOT / "config" / "demo.toml")
    code = main(["check-config", demo, "--set", "mqtt.port=1884", "--set", "mqtt.host=broker"])
    assert code == 0
    assert "sinks: mqtt (json) broker:1884" in capsys.readouterr().out


def test_check_config_bad_override_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    demo = str(ROOT / "config" / "demo.toml")
    assert main(["check-config", demo, "--set", "source.nope.endpoint=x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("--set source.nope.endpoint: source has no entry 'nope' (entries: fsf, ")
    assert err.count("\n") == 1


def test_console_script_runs_check_config() -> None:
    """The installed entry point, as a plant engineer calls it."""
    result = subprocess.run(
        [Path(sys.executable).parent / "edge-agent", "check-config", "config/demo.toml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith("config/demo.toml: valid")


# -------------------------------------------------------------- one command line for every command

COMMANDS = ["check-config", "run", "probe", "balance", "demo"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_takes_the_file_as_option_or_positional(command: str) -> None:
    parser = build_parser()
    assert parser.parse_args([command, "--config", "a.toml"]).config == "a.toml"
    assert parser.parse_args([command, "-c", "a.toml"]).config == "a.toml"
    assert parser.parse_args([command, "a.toml"]).config == "a.toml"
    assert parser.parse_args([command, "a.toml", "--config", "a.toml"]).config == "a.toml"


@pytest.mark.parametrize("command", COMMANDS)
def test_global_options_before_or_after_the_command(command: str) -> None:
    parser = build_parser()
    before = parser.parse_args(["--log-level", "warning", command, "a.toml"])
    after = parser.parse_args([command, "a.toml", "--log-level", "warning"])
    assert before.log_level == after.log_level == "warning"
    assert parser.parse_args([command, "a.toml"]).log_level is None


@pytest.mark.parametrize("command", [c for c in COMMANDS if c != "demo"])
def test_a_missing_config_file_is_a_usage_error(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main([command])
    assert exc.value.code == 2
    assert "the config file is required: --config FILE (or FILE)" in capsys.readouterr().err


def test_two_different_config_files_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["run", "a.toml", "--config", "b.toml"])
    assert exc.value.code == 2
    assert "two config files given (a.toml and --config b.toml): give one" in (
        capsys.readouterr().err
    )


def test_demo_defaults_to_the_demo_plant() -> None:
    assert build_parser().parse_args(["demo"]).config == str(ROOT / "config" / "demo.toml")


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_examples_and_exit_status(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    examples = out.split("examples:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert examples
    assert all(e.startswith(f"  edge-agent {command}") for e in examples)
    exits = out.split("exit status:\n", 1)[1].splitlines()
    assert [e.split()[0] for e in exits][:1] == ["0"]
    assert "  2      usage or configuration error: nothing was started" in exits


def test_log_level_after_the_command_reaches_the_handler(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """What used to be 'unrecognized arguments: --log-level warning'."""
    demo = str(ROOT / "config" / "demo.toml")
    assert main(["check-config", "--config", demo, "--log-level", "warning"]) == 0
    assert capsys.readouterr().out.startswith(f"{demo}: valid\n")


# ------------------------------------------------------------ a file that would start an idle agent


def test_check_config_warns_of_no_source_and_no_sink(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    assert main(["check-config", str(empty)]) == 0  # valid: a warning, not an error
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"{empty}: warning: no enabled [[source]]: the agent would read")
    assert err[1].startswith(f"{empty}: warning: no sink: neither [mqtt] nor [influx]")
    assert len(err) == 2


def test_check_config_of_the_demo_warns_of_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(ROOT / "config" / "demo.toml")]) == 0
    assert capsys.readouterr().err == ""


def test_run_refuses_an_idle_config_unless_forced(tmp_path: Path) -> None:
    only_mqtt = tmp_path / "only-mqtt.toml"
    only_mqtt.write_text('[mqtt]\nhost = "127.0.0.1"\n')
    result = subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "run", str(only_mqtt)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"{only_mqtt}: no enabled [[source]]: the agent would read nothing "
        "(add one; config/plant.example.toml shows every kind)",
        "not started: fix the file, or give --force to run it as it is",
    ]
    assert build_parser().parse_args(["run", str(only_mqtt), "--force"]).force is True
