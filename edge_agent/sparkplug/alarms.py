"""Alarm state as Sparkplug B metrics of the unit's device (docs/alarms.md, "Sparkplug B").

Alarm `fsf.matte_temp.high` on tag `fsf.matte_temp` becomes four metrics of device `fsf`:
`_alarms/fsf/matte_temp/high/state` (String; the id's dots become folder levels like a tag's),
`…/active` and `…/acknowledged` (Boolean),
`…/priority` (Int64, 1 urgent … 4 low), each event's time as the metric timestamp. They are
declared in the device's birth from the configuration (and, for an OPC UA server's conditions,
from the saved state), so a host knows every alarm before its first event; the birth carries
each alarm's current state (`status_samples`), restored state included, never null.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from edge_agent.alarms import records
from edge_agent.alarms.machine import AlarmStatus
from edge_agent.contracts.catalogue import TagInfo, ValueType
from edge_agent.contracts.samples import Quality, Sample, Value

FIELDS: dict[str, ValueType] = {
    "state": "string",
    "active": "boolean",
    "acknowledged": "boolean",
    "priority": "integer",
}


def metric_tag(unit: str, alarm_id: str, field: str) -> str:
    return f"{unit}._alarms.{alarm_id}.{field}"


def metric_tags(alarms: Iterable[tuple[str, str]]) -> list[TagInfo]:
    """The four metrics of every (alarm id, tag), for the node's catalogue."""
    return [
        TagInfo(metric_tag(tag.partition(".")[0], alarm_id, field), "", value_type)
        for alarm_id, tag in alarms
        for field, value_type in FIELDS.items()
    ]


def status_samples(statuses: Iterable[AlarmStatus], acq_ns: int) -> dict[str, Sample]:
    """Each alarm's current state as its four metrics (what a birth carries before the first
    event after a restart: the engine restored the state, so no alarm metric is born null)."""
    out: dict[str, Sample] = {}
    for st in statuses:
        d = st.defn
        values: dict[str, Value] = {
            "state": st.state.value,
            "active": st.active,
            "acknowledged": st.acknowledged,
            "priority": int(d.priority),
        }
        for field, value in values.items():
            tag = metric_tag(d.tag.partition(".")[0], d.id, field)
            out[tag] = Sample(tag, value, Quality.GOOD, acq_ns, acq_ns)
    return out


def metric_samples(alarm_records: Sequence[Sample]) -> list[Sample]:
    out: list[Sample] = []
    for record in alarm_records:
        event = records.from_sample(record)
        if event is None:
            continue
        unit = event.tag.partition(".")[0]
        values: dict[str, Value] = {
            "state": event.state.value,
            "active": event.active,
            "acknowledged": event.acknowledged,
            "priority": int(event.priority),
        }
        for field, value in values.items():
            tag = metric_tag(unit, event.alarm_id, field)
            out.append(Sample(tag, value, Quality.GOOD, record.acq_ns, event.ts_ns))
    return out
