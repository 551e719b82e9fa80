"""InfluxDB line protocol for our samples: the schema the InfluxDB sink writes.

Schema (narrow: one point per sample; docs/influxdb.md explains the choice and the queries):

    fsf,site=demo,tag_id=fsf.matte_temp value=1231.5,quality="good" 1795…
    fsf,site=demo,tag_id=fsf.burner_on value_bool=true,quality="good" 1795…
    kiln,site=demo,tag_id=kiln.mode value_str="drying",quality="good" 1795…
    offgas,site=demo,tag_id=offgas.so2 quality="bad",reason="BadCommunicationError" 1795…

- measurement = the unit (first part of the tag id); tag key `tag_id` = the full tag id, the
  same string as in the configuration and the MQTT topics (`tag` and `name` are InfluxQL
  keywords, which every query would have to quote);
- numbers are always written as floats in `value` (a value that is sometimes int and sometimes
  float would otherwise be a field type conflict), booleans in `value_bool`, strings in
  `value_str`: each field keeps one type per measurement as InfluxDB requires;
- `quality` is stored with every sample, `reason` where there is one; a Bad sample has no value
  field at all, never a fake one. A value that cannot be true (reason `out_of_range`,
  `no_value_marker`, `implausible_step`) is Bad, and what the device said is kept in the float
  field `raw`, outside `value`, so that no query that averages `value` ever sees it.

Alarm events (records on `_alarms.*`, docs/alarms.md) go to the measurement `alarm_event`, tag
keys `site`, `alarm_id`, `transition`, `priority`.

Identity: a point is (measurement, tag set, timestamp), and the timestamp is the sample's
(source time, else acquisition time), so a replayed batch overwrites itself: at-least-once
delivery is idempotent. At a coarser `precision` than ns, two samples of one tag within one
tick share an identity and the later one wins.

Cost: the series key is formatted once per tag, the timestamp once per read (the samples of one
read share it), a reason once per distinct text; a Good float is one f-string.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from edge_agent.alarms import records
from edge_agent.contracts.samples import Quality, Sample
from edge_agent.outbox import Batch

MAX_STRING_BYTES = 64 * 1024 - 1
_DIVISOR = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}


def _escape_key(text: str) -> str:
    return text.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _escape_measurement(text: str) -> str:
    return text.replace("\\", "\\\\").replace(",", "\\,").replace(" ", "\\ ")


def _string_field(text: str) -> str:
    text = text.replace("\r", " ").replace("\n", " ")
    if len(text.encode()) > MAX_STRING_BYTES:
        text = text.encode()[:MAX_STRING_BYTES].decode(errors="ignore")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class LineEncoder:
    """Samples to line protocol, sanitised so that no single sample can poison a batch."""

    def __init__(self, site: str, precision: str = "ns") -> None:
        self.site_tag = f"site={_escape_key(site)}"
        self.divisor = _DIVISOR[precision]
        self._series: dict[str, str] = {}  # tag -> series key ("" for an alarm record)
        self._stamp_ns = -1  # the samples of one read share their timestamp: format it once
        self._stamp = ""
        self._reasons: dict[str, str] = {}  # reasons repeat (a dead device's every tag)

    def series(self, tag: str) -> str:
        key = self._series.get(tag)
        if key is None:
            unit = tag.partition(".")[0]
            key = f"{_escape_measurement(unit)},{self.site_tag},tag_id={_escape_key(tag)}"
            self._series[tag] = "" if tag.startswith(records.PREFIX) else key
        return key

    def line(self, s: Sample) -> str:
        """One point. Shared per tag: the series key; per read: the timestamp; the common case
        (a Good finite float) is one f-string, with no per-sample list or lookups beyond that."""
        series = self._series.get(s.tag)
        if series is None:
            self.series(s.tag)
            series = self._series[s.tag]
        if not series:
            return self.alarm_line(s)
        ts = s.acq_ns if s.source_ns is None else s.source_ns
        if ts != self._stamp_ns:
            self._stamp_ns, self._stamp = ts, f" {ts // self.divisor}"
        value = s.value
        if (
            type(value) is float
            and s.quality is Quality.GOOD
            and s.reason is None
            and s.raw is None
            and math.isfinite(value)
        ):
            return f'{series} value={value!r},quality="good"{self._stamp}'
        return f"{series} {self._fields(s)}{self._stamp}"

    def _fields(self, s: Sample) -> str:
        value, quality, reason = s.value, s.quality.value, s.reason
        fields: list[str] = []
        if isinstance(value, bool):
            fields.append(f"value_bool={'true' if value else 'false'}")
        elif isinstance(value, int | float):
            number = float(value)
            if math.isfinite(number):
                fields.append(f"value={number!r}")
            else:
                quality, reason = "bad", f"not_finite:{number}"
        elif isinstance(value, str):
            fields.append(f"value_str={_string_field(value)}")
        fields.append(f'quality="{quality}"')
        if reason is not None:
            field = self._reasons.get(reason)
            if field is None:
                field = f"reason={_string_field(reason)}"
                if len(self._reasons) < 1024:
                    self._reasons[reason] = field
            fields.append(field)
        raw = s.raw
        if isinstance(raw, int | float) and not isinstance(raw, bool) and math.isfinite(raw):
            fields.append(f"raw={float(raw)!r}")
        return ",".join(fields)

    def alarm_line(self, s: Sample) -> str:
        """An alarm event as a point of `alarm_event` (docs/alarms.md, "InfluxDB")."""
        event = records.from_sample(s)
        if event is None:  # unreadable record: keep it visible rather than lose it
            text = _string_field(str(s.value))
            return f"alarm_event,{self.site_tag} unreadable={text} {s.ts_ns // self.divisor}"
        tags = (
            f"alarm_event,{self.site_tag},alarm_id={_escape_key(event.alarm_id)}"
            f",transition={event.transition.value},priority={event.priority.label}"
        )
        fields = [
            f"state={_string_field(event.state.value)}",
            f"active={'true' if event.active else 'false'}",
            f"acknowledged={'true' if event.acknowledged else 'false'}",
            f"priority_level={int(event.priority)}i",
            f"tag_id={_string_field(event.tag)}",
            f"kind={_string_field(event.kind.value)}",
            f"message={_string_field(event.message)}",
        ]
        value = event.value
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            fields.append(f"value={float(value)!r}")
        elif value is not None:
            fields.append(f"value_str={_string_field(str(value))}")
        for key in ("operator", "reason"):
            text = getattr(event, key)
            if text is not None:
                fields.append(f"{key}={_string_field(text)}")
        return f"{tags} {','.join(fields)} {event.ts_ns // self.divisor}"

    def lines(self, batches: Iterable[Batch]) -> list[str]:
        return [self.line(s) for b in batches for s in b.samples]
