"""`edge-agent balance`: the what-if calculator reproduces the reference case from the demo
config and lets any input be overridden by tag id."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import pytest

from edge_agent.cli import build_parser
from edge_agent.config.loader import ConfigError

DEMO = str(Path(__file__).resolve().parent.parent / "config" / "demo.toml")


def main(argv: list[str]) -> int:
    """The subcommand's handler, as `edge-agent` runs it (without reconfiguring logging)."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        for line in exc.lines:
            print(line, file=sys.stderr)
        return 2


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:  # type: ignore[type-arg]
    assert main(["balance", "--config", DEMO, "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def test_demo_config_reproduces_the_reference_case(capsys: pytest.CaptureFixture[str]) -> None:
    b = run_json(capsys)["balance"]
    expected = {
        "reaction_heat_mw": 119.5, "oxygen_demand_nm3h": 34100, "flux_demand_tph": 16.0,
        "matte_tph": 97.6, "slag_tph": 107.5, "heat_out_matte_mw": 22.2,
        "heat_out_slag_mw": 43.3, "heat_out_offgas_mw": 30.7, "heat_out_dust_mw": 4.2,
        "heat_loss_mw": 15.0,
    }  # fmt: skip
    for key, value in expected.items():
        assert b[key] == pytest.approx(value, rel=0.02), key
    assert b["heat_margin_mw"] == pytest.approx(4.2, abs=1.5)
    assert b["largest_element_imbalance"] < 1e-3


def test_tag_override_and_advice(capsys: pytest.CaptureFixture[str]) -> None:
    base = run_json(capsys)
    more = run_json(capsys, "--tag", "fsf.cu_scrap_feed_rate=5")
    assert more["inputs"]["fsf.cu_scrap_feed_rate"] == {
        "value": 5.0,
        "unit": "t/h",
        "from": "--tag",
    }
    # the same oxygen for more copper: a richer matte, and the scrap's heat demand
    assert more["balance"]["heat_margin_mw"] < base["balance"]["heat_margin_mw"]
    assert more["balance"]["matte_grade_pct"] > base["balance"]["matte_grade_pct"]
    adv = base["advisor"]
    assert adv["policy"] == "hold_matte_grade"
    assert adv["validity"] == "valid"
    assert adv["streams"]["cu_scrap"]["heat_demand_gj_per_t"] == pytest.approx(2.9, abs=0.3)
    sp = {r["tag"]: r for r in adv["recommendations"]}
    assert sp["fsf.escrap_feed_sp"]["recommended"] == pytest.approx(2.0)


def test_set_keeps_its_meaning_and_table_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["balance", "--config", DEMO, "--set", "kpi.advisor.policy=hold_oxygen"]) == 0
    out = capsys.readouterr().out
    assert "reaction heat" in out
    assert "policy hold_oxygen" in out


def test_unknown_tag_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["balance", "--config", DEMO, "--tag", "fsf.nope=3"]) == 2
    assert "fsf.nope=3" in capsys.readouterr().err
    assert main(["balance", "--config", DEMO, "--tag", "fsf.conc_feed_rate=lots"]) == 2
    assert "'lots' is not a number" in capsys.readouterr().err


def test_live_with_the_plant_unreachable_says_so_first_and_exits_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Configured values standing in for live ones are not the answer asked for."""
    with socket.socket() as closed:  # bound, never listening: every connect is refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        sets = [
            "--set", f"source.fsf.endpoint=opc.tcp://127.0.0.1:{port}/",
            "--set", f"source.offgas.endpoint=tcp://127.0.0.1:{port}",
            "--set", f"source.kiln.endpoint=tcp://127.0.0.1:{port}",
        ]  # fmt: skip
        assert main(["balance", DEMO, "--live", *sets]) == 1
        out = capsys.readouterr()
        first = out.out.splitlines()[0]
        assert first.startswith("NOT LIVE: 20 of 20 inputs could not be read")
        assert "fsf.conc_feed_rate" in first
        assert f"fsf: cannot reach OPC UA server opc.tcp://127.0.0.1:{port}/" in out.err
        assert main(["balance", DEMO, "--live", "--json", *sets]) == 1
        doc = json.loads(capsys.readouterr().out)
        assert "fsf.conc_feed_rate" in doc["live_fallback"]
        assert doc["inputs"]["fsf.conc_feed_rate"]["from"] == "config"
