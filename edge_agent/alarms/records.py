"""Alarm events travel through the outbox as samples, so they share its durability and order.

An event is a Sample on the reserved tag `_alarms.{alarm id}` whose value is the event's JSON
object (`AlarmEvent.as_dict`), with the event's time as source time. The outbox stores it like
any sample (no schema change; older files stay readable), so an event produced while a sink is
down waits on disk with the samples around it and is delivered in order. Sinks recognise the
prefix and encode the record in their own format (MQTT state and event topics, an InfluxDB
measurement, Sparkplug metrics). A tag id cannot start with `_` (ids start with a letter), so the
prefix never clashes with a plant tag.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from edge_agent.alarms.model import AlarmEvent
from edge_agent.contracts.samples import Quality, Sample, now_ns

UNIT = "_alarms"  # the reserved first part of a record's tag id, in place of a plant unit
PREFIX = UNIT + "."


def is_alarm_record(sample: Sample) -> bool:
    return sample.tag.startswith(PREFIX)


def split(samples: Sequence[Sample]) -> tuple[Sequence[Sample], list[Sample]]:
    """(tag samples, alarm records) of a batch; the batch itself when it holds no record."""
    records = [s for s in samples if s.tag.startswith(PREFIX)]
    if not records:
        return samples, records
    return [s for s in samples if not s.tag.startswith(PREFIX)], records


def to_sample(event: AlarmEvent, acq_ns: int | None = None) -> Sample:
    body = json.dumps(event.as_dict(), ensure_ascii=False, separators=(",", ":"))
    return Sample(
        PREFIX + event.alarm_id,
        body,
        Quality.GOOD,
        acq_ns if acq_ns is not None else now_ns(),
        event.ts_ns,
    )


def from_sample(sample: Sample) -> AlarmEvent | None:
    """The event a record holds; None for anything else (including an unreadable record)."""
    if not is_alarm_record(sample) or not isinstance(sample.value, str):
        return None
    try:
        body = json.loads(sample.value)
        return AlarmEvent.from_dict(body) if isinstance(body, dict) else None
    except (ValueError, KeyError, TypeError):
        return None
