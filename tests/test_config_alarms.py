"""`[[alarm]]` tables: validated like the rest, every problem named by its key path and value."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import get_args

import pytest

from edge_agent.alarms import Kind
from edge_agent.cli import main
from edge_agent.config.alarms import AlarmKind
from edge_agent.config.loader import ConfigError, load_config

ROOT = Path(__file__).resolve().parent.parent

PLANT = """
[agent]
site = "t"

[[source]]
name = "fsf"
protocol = "opcua"
endpoint = "opc.tcp://127.0.0.1:4840/"

[[source.tag]]
id = "fsf.matte_temp"
node = "ns=2;s=fsf.matte_temp"
unit = "°C"

[[source.tag]]
id = "fsf.running"
node = "ns=2;s=fsf.running"

[[source.tag]]
id = "fsf.o2_flow"
node = "ns=2;s=fsf.o2_flow"

[[source.tag]]
id = "fsf.o2_flow_sp"
node = "ns=2;s=fsf.o2_flow_sp"
"""

GOOD_ALARMS = """
[[alarm]]
id = "fsf.matte_temp.high"
tag = "fsf.matte_temp"
kind = "high"
limit = 1300
deadband = 5
on_delay_s = 10
priority = "high"
message = "Matte temperature high"

[[alarm.suppress_when]]
tag = "fsf.running"
equals = false

[[alarm]]
id = "fsf.matte_temp.high_high"
tag = "fsf.matte_temp"
kind = "high_high"
limit = 1350
priority = 1
message = "Matte temperature very high"

[[alarm]]
id = "fsf.o2_flow.deviation"
tag = "fsf.o2_flow"
kind = "deviation"
reference = "fsf.o2_flow_sp"
limit = 2000
message = "Oxygen flow off its setpoint"

[[alarm]]
id = "fsf.stopped"
tag = "fsf.running"
kind = "discrete"
state = false
priority = "low"
message = "Furnace not running"
"""


def load(tmp_path: Path, alarms: str, plant: str = PLANT) -> object:
    path = tmp_path / "plant.toml"
    path.write_text(plant + textwrap.dedent(alarms), encoding="utf-8")
    return load_config(path)


def problems(tmp_path: Path, alarms: str, plant: str = PLANT) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, alarms, plant)
    return str(info.value)


def test_config_kinds_are_the_model_kinds() -> None:
    assert set(get_args(AlarmKind)) == {k.value for k in Kind if k is not Kind.EXTERNAL}


def test_valid_alarms_load(tmp_path: Path) -> None:
    cfg = load(tmp_path, GOOD_ALARMS)
    alarms = cfg.alarm  # type: ignore[attr-defined]
    assert [a.id for a in alarms][:2] == ["fsf.matte_temp.high", "fsf.matte_temp.high_high"]
    assert alarms[0].suppress_when[0].equals is False
    assert alarms[1].priority_level == 1


@pytest.mark.parametrize(
    ("alarm", "expected"),
    [
        (
            'tag = "fsf.nope"\nkind = "high"\nlimit = 1',
            'alarm.x.tag: unknown tag (got: "fsf.nope")',
        ),
        ('tag = "fsf.matte_temp"\nkind = "high"', "alarm.x.limit: a high alarm needs a limit"),
        (
            'tag = "fsf.matte_temp"\nkind = "high"\nlimit = nan',
            "alarm.x.limit: Input should be a finite number",
        ),
        ('tag = "fsf.matte_temp"\nkind = "stale"\nlimit = -3', "alarm.x.limit: a stale limit"),
        ('tag = "fsf.matte_temp"\nkind = "bad_quality"\nlimit = 3', "alarm.x.limit: a bad_quality"),
        ('tag = "fsf.matte_temp"\nkind = "deviation"\nlimit = 3', "alarm.x.reference: a deviation"),
        ('tag = "fsf.running"\nkind = "discrete"', "alarm.x.state: a discrete alarm needs a state"),
        ('tag = "fsf.matte_temp"\nkind = "hihi"\nlimit = 3', "alarm.x.kind"),
        ('tag = "fsf.matte_temp"\nkind = "high"\nlimit = 3\npriority = 7', "alarm.x.priority"),
        (
            'tag = "fsf.matte_temp"\nkind = "rate_of_change"\nlimit = 3\ndeadband = 4',
            "alarm.x.deadband: must be smaller than the limit (got: 4.0)",
        ),
        (
            'tag = "fsf.matte_temp"\nkind = "high"\nlimit = 3\n'
            '[[alarm.suppress_when]]\ntag = "fsf.gone"\nequals = 1',
            'alarm.x.suppress_when.fsf.gone.tag: unknown tag (got: "fsf.gone")',
        ),
        (
            'tag = "fsf.matte_temp"\nkind = "high"\nlimit = 3\n'
            '[[alarm.suppress_when]]\ntag = "fsf.running"',
            "alarm.x.suppress_when.fsf.running: give exactly one of equals, below, above",
        ),
    ],
)
def test_a_bad_alarm_names_its_key_path(tmp_path: Path, alarm: str, expected: str) -> None:
    text = problems(tmp_path, f'[[alarm]]\nid = "x"\nmessage = "m"\n{alarm}\n')
    assert expected in text


def test_bad_id_and_duplicates(tmp_path: Path) -> None:
    text = problems(
        tmp_path,
        GOOD_ALARMS + '[[alarm]]\nid = "fsf.stopped"\ntag = "fsf.running"\nkind = "discrete"\n'
        'state = true\nmessage = "again"\n'
        '[[alarm]]\nid = "Bad/Id"\ntag = "fsf.running"\nkind = "bad_quality"\nmessage = "m"\n',
    )
    assert 'alarm.4.id: duplicate alarm id (got: "fsf.stopped")' in text
    assert "alarm.Bad/Id.id: String should match pattern" in text


def test_high_high_must_lie_above_high(tmp_path: Path) -> None:
    text = problems(tmp_path, GOOD_ALARMS.replace("limit = 1350", "limit = 1290"))
    assert "alarm.fsf.matte_temp.high_high.limit: must lie above the high limit 1300" in text


def test_field_and_rule_problems_are_reported_together(tmp_path: Path) -> None:
    """A wrong type elsewhere must not hide an alarm on an unknown tag (rules run on raw data)."""
    text = problems(
        tmp_path,
        '[[alarm]]\nid = "x"\ntag = "fsf.nope"\nkind = "bad_quality"\nmessage = "m"\n'
        '[alarms]\ntick_s = "fast"\n',
    )
    assert "alarms.tick_s" in text
    assert 'alarm.x.tag: unknown tag (got: "fsf.nope")' in text


def test_kpi_tags_need_their_kpi_section(tmp_path: Path) -> None:
    text = problems(
        tmp_path,
        '[[alarm]]\nid = "m"\ntag = "kpi.heat_margin_mw"\nkind = "low"\nlimit = 1\nmessage = "m"\n',
    )
    assert 'alarm.m.tag: unknown tag (got: "kpi.heat_margin_mw")' in text


def test_kpi_tags_are_checked_against_the_exact_kpis_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The family (`kpi.heat`) exists in the demo, the name does not: the config layer cannot
    tell, the runtime's check (run and check-config) refuses it with the key and a suggestion."""
    demo = (ROOT / "config" / "demo.toml").read_text(encoding="utf-8")
    typo = demo.replace('tag = "kpi.heat_margin_mw"', 'tag = "kpi.heat_margn_mw"', 1)
    assert typo != demo
    path = tmp_path / "plant.toml"
    path.write_text(typo.replace('state_dir = "state"', f'state_dir = "{tmp_path}"'), "utf-8")
    load_config(path)  # valid as far as the config layer can judge
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "(kpi.heat_margin.low).tag: 'kpi.heat_margn_mw' is not a KPI this configuration" in err
    assert "did you mean kpi.heat_margin_mw" in err
    assert main(["run", str(path)]) == 2
    assert "'kpi.heat_margn_mw' is not a KPI" in capsys.readouterr().err
