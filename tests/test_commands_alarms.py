"""`edge-agent alarms report` over a real InfluxDB 1.x, for a scripted run of alarm events
written by the agent's own line encoder; and the v2 (Flux CSV) reader on a canned answer."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from edge_agent.alarms import AlarmEvent, Kind, Priority, State, Transition
from edge_agent.alarms.records import to_sample
from edge_agent.cli import main
from edge_agent.commands.alarms import _parse_v2, parse_time
from edge_agent.sinks.line_protocol import LineEncoder
from tests.support.services import InfluxDB1

S = 1_000_000_000
T0 = 1_796_000_000 * S - (1_796_000_000 * S) % (600 * S)  # on a 10-minute boundary
DAY = 86_400 * S


def ev(alarm_id: str, ts: int, transition: Transition, active: bool, state: State) -> AlarmEvent:
    return AlarmEvent(
        alarm_id, transition, state, State.NORMAL, ts, active, not active, Priority.HIGH,
        "fsf.matte_temp", Kind.HIGH, "m", 1.0,
    )  # fmt: skip


def scripted_run() -> list[AlarmEvent]:
    on, off = Transition.ACTIVATED, Transition.CLEARED
    events = []
    # A flood: twelve activations (and clearings) of four alarms in the first 10 minutes.
    for i in range(12):
        ts = T0 + DAY + i * 40 * S
        events.append(ev(f"flood.{i % 4}", ts, on, True, State.ACTIVE_UNACK))
        events.append(ev(f"flood.{i % 4}", ts + 5 * S, off, False, State.RETURNED_UNACK))
    # A chattering alarm: three activations within 50 s.
    for i in range(3):
        ts = T0 + DAY + 1200 * S + i * 25 * S
        events.append(ev("chatter", ts, on, True, State.ACTIVE_UNACK))
        events.append(ev("chatter", ts + 2 * S, off, False, State.NORMAL))
    # A stale alarm: active since the first minute of the period, never cleared.
    events.append(ev("stuck", T0 + 60 * S, on, True, State.ACTIVE_UNACK))
    return events


def write(influx: InfluxDB1, site: str, events: list[AlarmEvent]) -> None:
    enc = LineEncoder(site)
    body = "\n".join(enc.line(to_sample(e)) for e in events).encode()
    url = f"{influx.url}/write?db={influx.db}&precision=ns"
    with urllib.request.urlopen(urllib.request.Request(url, data=body, method="POST")) as r:
        assert r.status == 204


@pytest.mark.services
def test_report_over_influxdb_v1(
    influxdb1: InfluxDB1, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(influxdb1, "demo", scripted_run())
    # Another site's event in the same database must not count.
    write(
        influxdb1,
        "other",
        [ev("elsewhere", T0 + DAY, Transition.ACTIVATED, True, State.ACTIVE_UNACK)],
    )
    config = tmp_path / "plant.toml"
    config.write_text(
        f'[agent]\nsite = "demo"\n[influx]\napi = "v1"\nurl = "{influxdb1.url}"\n'
        f'db = "{influxdb1.db}"\n'
    )
    since = T0
    until = T0 + DAY + 1800 * S  # the day plus three 10-minute intervals
    args = ["alarms", "report", str(config), "--json"]
    args += ["--since", _iso(since), "--until", _iso(until)]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["activations"] == 12 + 3 + 1
    assert report["events"] == 24 + 6 + 1
    assert report["per_10min_peak"] == 12
    assert report["intervals_10min"] == 144 + 3
    assert report["flood_intervals"] == 1
    assert report["chattering"] == ["chatter"]
    assert report["stale"] == ["stuck"]
    assert report["top"][0] == {"alarm_id": "chatter", "activations": 3}
    assert {t["alarm_id"] for t in report["top"]} == {
        "chatter",
        "flood.0",
        "flood.1",
        "flood.2",
        "flood.3",
        "stuck",
    }

    assert (
        main(["alarms", "report", str(config), "--since", _iso(since), "--until", _iso(until)]) == 0
    )
    text = capsys.readouterr().out
    assert "flood             1 intervals" in text
    assert "chattering        chatter" in text


def test_report_refuses_a_bad_time_and_a_missing_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "plant.toml"
    config.write_text('[agent]\nsite = "demo"\n')
    assert main(["alarms", "report", str(config), "--since", "yesterday"]) == 2
    assert "neither a duration" in capsys.readouterr().err
    assert main(["alarms", "report", str(config), "--since", "24h"]) == 2
    assert "[influx] is not configured" in capsys.readouterr().err


def test_durations_and_times() -> None:
    now = 1_800_000_000 * S
    assert parse_time("24h", now) == now - DAY
    assert parse_time("30m", now) == now - 1800 * S
    assert parse_time("2027-01-15T08:00:00Z", now) == 1_800_000_000 * S
    assert parse_time("2027-01-15T09:00:00.5+01:00", now) == 1_800_000_000 * S + S // 2


def test_v2_flux_csv_is_read() -> None:
    body = (
        b"#datatype,string,long,dateTime:RFC3339,string,string,boolean,string\n"
        b"#group,false,false,false,true,true,false,false\n"
        b"#default,_result,,,,,,\n"
        b",result,table,_time,alarm_id,transition,active,state\n"
        b",,0,2026-12-01T10:00:00.123456789Z,fsf.matte_temp.high,activated,true,active_unack\n"
        b"\n"
        b"#datatype,string,long,dateTime:RFC3339,string,string,boolean,string\n"
        b",result,table,_time,alarm_id,transition,active,state\n"
        b",,1,2026-12-01T10:00:05Z,fsf.matte_temp.high,cleared,false,returned_unack\n"
    )
    first, second = _parse_v2(body)
    assert (first.alarm_id, first.transition, first.active) == (
        "fsf.matte_temp.high",
        "activated",
        True,
    )
    assert first.ts_ns % S == 123_456_789
    assert (second.transition, second.active, second.state) == ("cleared", False, "returned_unack")


def _iso(ts: int) -> str:
    from edge_agent.commands.alarms import iso_ns

    return iso_ns(ts)
