"""Alarm records in the sinks' formats: MQTT JSON state + event topics, InfluxDB alarm_event."""

from __future__ import annotations

import json
from typing import Any

from drivers.sparkplug.payload import DataType
from edge_agent.alarms import AlarmEvent, Kind, Priority, State, Transition
from edge_agent.alarms.records import from_sample, split, to_sample
from edge_agent.config import AgentConfig, MqttSection
from edge_agent.contracts.samples import Quality, Sample
from edge_agent.outbox import Batch, decode, encode
from edge_agent.runtime import build_catalogue
from edge_agent.sinks.line_protocol import LineEncoder
from edge_agent.sinks.mqtt_json import JsonEncoder
from edge_agent.sparkplug.alarms import metric_samples
from edge_agent.sparkplug.sink import node_catalogue

T0 = 1_795_000_000_000_000_000


def event(**kw: Any) -> AlarmEvent:
    fields: dict[str, Any] = {
        "alarm_id": "fsf.matte_temp.high",
        "transition": Transition.ACTIVATED,
        "state": State.ACTIVE_UNACK,
        "previous": State.NORMAL,
        "ts_ns": T0,
        "active": True,
        "acknowledged": False,
        "priority": Priority.HIGH,
        "tag": "fsf.matte_temp",
        "kind": Kind.HIGH,
        "message": 'Matte "hot", check fuel',
        "value": 1310.5,
    }
    fields.update(kw)
    return AlarmEvent(**fields)


def test_a_record_survives_the_outbox_encoding() -> None:
    record = to_sample(event(operator="op.anna", reason="seen"), acq_ns=T0 + 7)
    (back,) = decode(encode([record]))
    assert from_sample(back) == event(operator="op.anna", reason="seen")
    assert back.source_ns == T0


def test_split_leaves_a_batch_without_records_untouched() -> None:
    samples = [Sample("fsf.matte_temp", 1.0, Quality.GOOD, T0)]
    assert split(samples)[0] is samples
    plain, records = split([*samples, to_sample(event())])
    assert [s.tag for s in plain] == ["fsf.matte_temp"]
    assert [s.tag for s in records] == ["_alarms.fsf.matte_temp.high"]


def test_mqtt_json_retained_state_and_event_stream() -> None:
    enc = JsonEncoder(MqttSection.model_validate({"topic_root": "plant"}), "demo", {})
    samples = [Sample("fsf.matte_temp", 1310.5, Quality.GOOD, T0, T0), to_sample(event())]
    msgs = enc.encode([Batch(1, samples)])
    assert [(m.topic, m.retain) for m in msgs] == [
        ("plant/demo/fsf/matte_temp", False),
        ("plant/demo/_alarms/fsf.matte_temp.high", True),
        ("plant/demo/_alarms/fsf.matte_temp.high/event", False),
    ]
    body = json.loads(msgs[1].payload)
    for key in ("state", "active", "acknowledged", "priority", "message", "tag", "value", "ts"):
        assert key in body
    assert body["state"] == "active_unack"
    assert body["priority"] == "high"
    assert body["ts"] == "2026-11-18T11:06:40.000Z"


def test_mqtt_batch_layout_also_publishes_alarm_topics() -> None:
    settings = MqttSection.model_validate({"topic_root": "plant", "layout": "batch"})
    msgs = JsonEncoder(settings, "demo", {}).encode([Batch(1, [to_sample(event())])])
    assert [m.topic for m in msgs] == [
        "plant/demo/_alarms/fsf.matte_temp.high",
        "plant/demo/_alarms/fsf.matte_temp.high/event",
    ]


def test_influx_alarm_event_point() -> None:
    line = LineEncoder("demo").line(to_sample(event(operator="op anna")))
    assert line == (
        "alarm_event,site=demo,alarm_id=fsf.matte_temp.high,transition=activated,priority=high "
        'state="active_unack",active=true,acknowledged=false,priority_level=2i,'
        'tag_id="fsf.matte_temp",kind="high",message="Matte \\"hot\\", check fuel",'
        f'value=1310.5,operator="op anna" {T0}'
    )


def test_influx_text_values_and_precision() -> None:
    line = LineEncoder("demo", "ms").line(to_sample(event(kind=Kind.BAD_QUALITY, value="bad")))
    assert ',value_str="bad" ' in line
    assert line.endswith(f" {T0 // 1_000_000}")


def test_sparkplug_alarm_metrics_are_declared_and_fed() -> None:
    cfg = AgentConfig.model_validate(
        {
            "source": [
                {
                    "name": "fsf",
                    "protocol": "opcua",
                    "endpoint": "opc.tcp://127.0.0.1:4840/",
                    "tag": [{"id": "fsf.matte_temp", "node": "ns=2;s=m"}],
                }
            ],
            "alarm": [
                {
                    "id": "fsf.matte_temp.high",
                    "tag": "fsf.matte_temp",
                    "kind": "high",
                    "limit": 1300,
                    "message": "m",
                }
            ],
        }
    )
    catalogue = node_catalogue(cfg, build_catalogue(cfg))
    state = catalogue.get("fsf._alarms.fsf.matte_temp.high.state")
    assert state is not None
    assert (state.device, state.name, state.datatype) == (
        "fsf",
        "_alarms/fsf/matte_temp/high/state",
        DataType.STRING,
    )
    samples = metric_samples([to_sample(event(), acq_ns=T0 + 1)])
    assert {s.tag.rsplit(".", 1)[1]: s.value for s in samples} == {
        "state": "active_unack",
        "active": True,
        "acknowledged": False,
        "priority": 2,
    }
    assert all(catalogue.fits(s.tag, s.value) for s in samples)
    assert all(s.ts_ns == T0 for s in samples)
