"""JSON payloads from MQTT into samples: our unified-namespace format, or a mapped foreign one.

Our own format (the JSON sink's, per-tag layout) is read natively: `{"value": …, "quality":
"good", "ts": "2026-…Z", "ts_ns": …, "reason": …}`, so a tag keeps the unit agent's value,
quality and source timestamp end to end. Any other device's JSON is read through a per-tag mapping:

- `value_path`: where the value is (`"temp"`, `"data.temp"`, `"readings.0.v"`: dots walk
  objects, integers index arrays);
- `timestamp_path` (optional): an RFC 3339 string, or a number read as `timestamp_format`
  (`unix_s`, `unix_ms`, `unix_us`, `unix_ns`); without it the sample has no source time and
  its age is the arrival time's;
- `quality_path` (optional): `"good"`/`"uncertain"`/`"bad"` (any case), a boolean (true is
  good), or an integer OPC UA StatusCode (0 good, 0x4… uncertain, 0x8… bad).

A payload that does not parse, or a value that is missing, null, not a number/bool/string, or
NaN, gives a Bad sample with reason `bad_payload` and a `MappingError` that names the topic, the
path and what was found: the tag goes Bad, nothing else is touched.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from edge_agent.contracts.samples import Quality, Sample, Value

BAD_PAYLOAD = "bad_payload"
TimestampFormat = Literal["rfc3339", "unix_s", "unix_ms", "unix_us", "unix_ns"]
_SCALE = {"unix_s": 10**9, "unix_ms": 10**6, "unix_us": 10**3, "unix_ns": 1}
_QUALITY_NAMES = {q.value: q for q in Quality}


class MappingError(ValueError):
    """A payload field that cannot become a sample; the message names topic, path and value."""


@dataclass(frozen=True, slots=True)
class JsonField:
    """Where one tag's value, timestamp and quality are in a topic's payload.

    All paths None: our own format (`value`, `ts`, `quality`, `reason`)."""

    tag: str
    value_path: str | None = None
    timestamp_path: str | None = None
    quality_path: str | None = None
    timestamp_format: TimestampFormat = "rfc3339"

    @property
    def native(self) -> bool:
        return self.value_path is None


def parse(topic: str, payload: bytes) -> Any:
    """The JSON document of a message; MappingError for anything that is not JSON."""
    try:
        return json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MappingError(f"{topic}: not JSON ({exc}): {payload[:60]!r}") from exc


def to_sample(topic: str, doc: Any, f: JsonField, now_ns: int) -> Sample:
    """One tag's sample from a parsed document; raises MappingError (the caller publishes the
    Bad sample from `bad_sample`, and logs the message)."""
    if f.native:
        return _native(topic, doc, f.tag, now_ns)
    assert f.value_path is not None
    value = value_of(topic, f.value_path, lookup(topic, doc, f.value_path))
    source_ns = None
    if f.timestamp_path is not None:
        raw = lookup(topic, doc, f.timestamp_path)
        source_ns = timestamp_ns(topic, f.timestamp_path, raw, f.timestamp_format)
    quality = Quality.GOOD
    if f.quality_path is not None:
        quality = quality_of(topic, f.quality_path, lookup(topic, doc, f.quality_path))
    if quality is Quality.BAD:
        return Sample(f.tag, None, Quality.BAD, now_ns, source_ns, "bad_at_source")
    return Sample(f.tag, value, quality, now_ns, source_ns)


def bad_sample(tag: str, now_ns: int) -> Sample:
    return Sample(tag, None, Quality.BAD, now_ns, None, BAD_PAYLOAD)


def lookup(topic: str, doc: Any, path: str) -> Any:
    """Walk `a.b.0.c`; MappingError naming the first step that is not there."""
    node = doc
    walked: list[str] = []
    for step in path.split("."):
        walked.append(step)
        if isinstance(node, dict) and step in node:
            node = node[step]
        elif (
            isinstance(node, list)
            and step.lstrip("-").isdigit()
            and -len(node) <= int(step) < len(node)
        ):
            node = node[int(step)]
        else:
            where = ".".join(walked)
            raise MappingError(f"{topic}: no {where!r} in the payload (path {path!r})")
    return node


def value_of(topic: str, path: str, raw: Any) -> Value:
    if isinstance(raw, bool | str | int):
        return raw
    if isinstance(raw, float) and math.isfinite(raw):
        return raw
    raise MappingError(f"{topic}: {path} = {raw!r} is not a finite number, a boolean or a string")


def timestamp_ns(topic: str, path: str, raw: Any, fmt: TimestampFormat) -> int:
    if fmt == "rfc3339":
        if not isinstance(raw, str):
            raise MappingError(f"{topic}: {path} = {raw!r} is not an RFC 3339 timestamp")
        try:
            dt = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError as exc:
            raise MappingError(f"{topic}: {path} = {raw!r} is not an RFC 3339 timestamp") from exc
        if dt.tzinfo is None:
            raise MappingError(f"{topic}: {path} = {raw!r} has no UTC offset")
        return round(dt.timestamp() * 1e6) * 1000
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        raise MappingError(f"{topic}: {path} = {raw!r} is not a {fmt} number")
    return int(raw * _SCALE[fmt])


def quality_of(topic: str, path: str, raw: Any) -> Quality:
    if isinstance(raw, bool):
        return Quality.GOOD if raw else Quality.BAD
    if isinstance(raw, str) and raw.lower() in _QUALITY_NAMES:
        return _QUALITY_NAMES[raw.lower()]
    if isinstance(raw, int) and 0 <= raw < 1 << 32:
        severity = raw >> 30
        return (Quality.GOOD, Quality.UNCERTAIN, Quality.BAD, Quality.BAD)[severity]
    raise MappingError(
        f"{topic}: {path} = {raw!r} is not a quality (good/uncertain/bad, a boolean, "
        "or an OPC UA StatusCode)"
    )


def _native(topic: str, doc: Any, tag: str, now_ns: int) -> Sample:
    """Our JSON sink's payload: a Bad sample keeps the unit agent's reason."""
    if not isinstance(doc, dict):
        raise MappingError(f"{topic}: expected a JSON object with 'value', got {doc!r:.60}")
    quality = quality_of(topic, "quality", doc.get("quality", "good"))
    source_ns = None
    if doc.get("ts_ns") is not None:  # exact; `ts` is the same instant at ms precision
        source_ns = timestamp_ns(topic, "ts_ns", doc["ts_ns"], "unix_ns")
    elif doc.get("ts") is not None:
        source_ns = timestamp_ns(topic, "ts", doc["ts"], "rfc3339")
    reason = doc.get("reason")
    reason = None if reason is None else str(reason)
    if quality is Quality.BAD:
        return Sample(tag, None, Quality.BAD, now_ns, source_ns, reason or "bad_at_source")
    if "value" not in doc:
        raise MappingError(f"{topic}: no 'value' in the payload")
    return Sample(tag, value_of(topic, "value", doc["value"]), quality, now_ns, source_ns, reason)
