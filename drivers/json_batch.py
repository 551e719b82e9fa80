"""Our MQTT JSON batch payloads (`layout = "batch"`), both ways: the sink encodes, the MQTT
source (`protocol = "mqtt"`) decodes, so that one plant-level agent reads a unit agent's batches.

`edge-agent/batch/2` (the compact schema, default): one message per plant unit and outbox batch;
the samples that share a timestamp share one group, values are keyed by tag id, and quality,
reason and the device's raw reading appear only for the samples that have them (not Good):

    {"schema": "edge-agent/batch/2", "site": "demo", "unit": "fsf",
     "groups": [{"ts_ns": 1795…, "ts": "2026-11-18T11:06:40.000Z",
                 "values": {"fsf.matte_temp": 1231.5, "fsf.slag_temp": null},
                 "quality": {"fsf.slag_temp": "bad"},
                 "reason": {"fsf.slag_temp": "BadCommunicationError"}}]}

A tag absent from `quality` is Good. A tag appears at most once per group; a second sample of it
with the same timestamp opens a new group, and a tag's samples are in order across the groups, so
reading the groups in order replays every sample as the outbox holds it.

`edge-agent/batch/1` (the previous schema, `mqtt.batch_schema = 1`, kept for one release): a
`samples` array of per-tag payloads, each with its tag id, ISO time and `ts_ns`.

Non-finite numbers (NaN, ±inf) are not JSON: such a sample goes out Bad with `value` null and
reason `not_finite:nan` (or `inf`, `-inf`), in both schemas and the per-tag layout.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

from drivers.json_mapping import MappingError, quality_of, timestamp_ns, value_of
from edge_agent.contracts.samples import Quality, Sample, Value, iso_utc

SCHEMA_V1 = "edge-agent/batch/1"
SCHEMA_V2 = "edge-agent/batch/2"
SCHEMAS = (SCHEMA_V1, SCHEMA_V2)
BAD_AT_SOURCE = "bad_at_source"
_GOOD, _BAD = Quality.GOOD, Quality.BAD
_COMPACT = {"ensure_ascii": False, "separators": (",", ":")}


def wire_value(sample: Sample) -> tuple[Value | None, Quality, str | None]:
    """Value, quality and reason as JSON can carry them: a non-finite float becomes Bad."""
    value = sample.value
    if isinstance(value, float) and not math.isfinite(value):
        return None, _BAD, f"not_finite:{value}"
    return value, sample.quality, sample.reason


def raw_reading(sample: Sample) -> int | float | None:
    """What the device said, where plausibility made the sample Bad and it is a JSON number."""
    raw = sample.raw
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return None
    return raw if isinstance(raw, int) or math.isfinite(raw) else None


class _Group:
    __slots__ = ("index", "quality", "raw", "reason", "ts_ns", "values")

    def __init__(self, index: int, ts_ns: int) -> None:
        self.index = index
        self.ts_ns = ts_ns
        self.values: dict[str, Value | None] = {}
        self.quality: dict[str, str] = {}
        self.reason: dict[str, str] = {}
        self.raw: dict[str, int | float] = {}

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ts_ns": self.ts_ns,
            "ts": iso_utc(self.ts_ns),
            "values": self.values,
        }
        if self.quality:
            out["quality"] = self.quality
        if self.reason:
            out["reason"] = self.reason
        if self.raw:
            out["raw"] = self.raw
        return out


def encode_v2(site: str, unit: str, samples: Iterable[Sample]) -> bytes:
    """One unit's samples of one batch as `edge-agent/batch/2` (see the module docstring)."""
    groups: list[_Group] = []
    newest: dict[int, _Group] = {}  # ts_ns -> the newest group of that timestamp
    placed: dict[str, int] = {}  # tag -> index of the group holding its latest sample
    for s in samples:
        ts = s.acq_ns if s.source_ns is None else s.source_ns
        tag = s.tag
        group = newest.get(ts)
        last = placed.get(tag)
        if group is None or (last is not None and last >= group.index):
            group = newest[ts] = _Group(len(groups), ts)
            groups.append(group)
        placed[tag] = group.index
        value, quality, reason = s.value, s.quality, s.reason
        if type(value) is float and not math.isfinite(value):
            value, quality, reason = wire_value(s)
        group.values[tag] = value
        if quality is not _GOOD:
            group.quality[tag] = quality.value
        if reason is not None:
            group.reason[tag] = reason
        if s.raw is not None and (raw := raw_reading(s)) is not None:
            group.raw[tag] = raw
    doc = {"schema": SCHEMA_V2, "site": site, "unit": unit, "groups": [g.body() for g in groups]}
    return json.dumps(doc, **_COMPACT).encode()  # type: ignore[arg-type]


def sample_payload(sample: Sample, unit: str | None) -> dict[str, Any]:
    """One sample's JSON object as the per-tag layout and `batch/1` carry it (without `tag`)."""
    value, quality, reason = wire_value(sample)
    body: dict[str, Any] = {
        "value": value,
        "quality": quality.value,
        "ts": iso_utc(sample.ts_ns),
        "ts_ns": sample.ts_ns,
    }
    if unit:
        body["unit"] = unit
    if reason is not None:
        body["reason"] = reason
    if (raw := raw_reading(sample)) is not None:
        body["raw"] = raw
    return body


def encode_v1(site: str, unit: str, samples: Iterable[Sample], units: dict[str, str]) -> bytes:
    """One unit's samples of one batch as `edge-agent/batch/1` (the previous schema)."""
    body = [{"tag": s.tag, **sample_payload(s, units.get(s.tag))} for s in samples]
    doc = {"schema": SCHEMA_V1, "site": site, "unit": unit, "samples": body}
    return json.dumps(doc, ensure_ascii=False).encode()


def is_batch(doc: Any) -> bool:
    return isinstance(doc, dict) and doc.get("schema") in SCHEMAS


def decode(
    topic: str, doc: Any, wanted: Sequence[str] | set[str] | dict[str, Any], now_ns: int
) -> tuple[list[Sample], list[tuple[str, MappingError]]]:
    """The samples of the `wanted` tags in a batch document, in order, and the tags whose entry
    could not be read (each with the error naming topic, path and value; the caller makes
    them Bad). A document whose frame is broken raises MappingError: nothing in it is trusted."""
    if not is_batch(doc):
        got = doc.get("schema") if isinstance(doc, dict) else doc
        raise MappingError(f"{topic}: schema = {got!r:.60} is not one of {', '.join(SCHEMAS)}")
    if doc["schema"] == SCHEMA_V1:
        return _decode_v1(topic, doc, wanted, now_ns)
    return _decode_v2(topic, doc, wanted, now_ns)


def _decode_v2(
    topic: str, doc: dict[str, Any], wanted: Any, now_ns: int
) -> tuple[list[Sample], list[tuple[str, MappingError]]]:
    groups = doc.get("groups")
    if not isinstance(groups, list):
        raise MappingError(f"{topic}: groups = {groups!r:.60} is not an array")
    samples: list[Sample] = []
    errors: list[tuple[str, MappingError]] = []
    for i, group in enumerate(groups):
        where = f"groups.{i}"
        if not isinstance(group, dict):
            raise MappingError(f"{topic}: {where} = {group!r:.60} is not an object")
        ts = timestamp_ns(topic, f"{where}.ts_ns", group.get("ts_ns"), "unix_ns")
        values, quality, reason, raw = (
            _object(topic, group, where, key) for key in ("values", "quality", "reason", "raw")
        )
        for tag, value in values.items():
            if tag not in wanted:
                continue
            try:
                samples.append(
                    _sample(topic, (f"{where}.values.{tag}", f"{where}.quality.{tag}"), tag,
                            value, quality.get(tag, "good"), reason.get(tag), raw.get(tag),
                            now_ns, ts)
                )  # fmt: skip
            except MappingError as exc:
                errors.append((tag, exc))
    return samples, errors


def _decode_v1(
    topic: str, doc: dict[str, Any], wanted: Any, now_ns: int
) -> tuple[list[Sample], list[tuple[str, MappingError]]]:
    elements = doc.get("samples")
    if not isinstance(elements, list):
        raise MappingError(f"{topic}: samples = {elements!r:.60} is not an array")
    samples: list[Sample] = []
    errors: list[tuple[str, MappingError]] = []
    for i, el in enumerate(elements):
        where = f"samples.{i}"
        if not isinstance(el, dict) or not isinstance(el.get("tag"), str):
            raise MappingError(f"{topic}: {where} = {el!r:.60} is not an object with a tag")
        tag = el["tag"]
        if tag not in wanted:
            continue
        try:
            ts = timestamp_ns(topic, f"{where}.ts_ns", el.get("ts_ns"), "unix_ns")
            if "value" not in el:
                raise MappingError(f"{topic}: no {where}.value in the payload")
            samples.append(
                _sample(topic, (f"{where}.value", f"{where}.quality"), tag, el["value"],
                        el.get("quality", "good"), el.get("reason"), el.get("raw"), now_ns, ts)
            )  # fmt: skip
        except MappingError as exc:
            errors.append((tag, exc))
    return samples, errors


def _object(topic: str, group: dict[str, Any], where: str, key: str) -> dict[str, Any]:
    found = group.get(key, {} if key != "values" else None)
    if not isinstance(found, dict):
        raise MappingError(f"{topic}: {where}.{key} = {found!r:.60} is not an object")
    return found


def _sample(
    topic: str, paths: tuple[str, str], tag: str, value: Any, quality: Any, reason: Any,
    raw: Any, now_ns: int, ts_ns: int,
) -> Sample:  # fmt: skip
    """One decoded sample; `paths` name its value and its quality in the document."""
    q = quality_of(topic, paths[1], quality)
    why = None if reason is None else str(reason)
    kept_raw = raw if isinstance(raw, int | float) and not isinstance(raw, bool) else None
    if q is _BAD:
        return Sample(tag, None, _BAD, now_ns, ts_ns, why or BAD_AT_SOURCE, kept_raw)
    return Sample(tag, value_of(topic, paths[0], value), q, now_ns, ts_ns, why)


__all__ = [
    "SCHEMAS",
    "SCHEMA_V1",
    "SCHEMA_V2",
    "decode",
    "encode_v1",
    "encode_v2",
    "is_batch",
    "sample_payload",
    "wire_value",
]
