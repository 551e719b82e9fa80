"""The straightforward JSON encoders the sink used before `drivers.json_batch.BatchWriter`:
dicts per sample and per group, then `json.dumps`. Kept as the reference the fast text writer
must match byte for byte (tests/test_drivers_json_batch_identity.py)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

from drivers.json_batch import SCHEMA_V1, SCHEMA_V2, raw_reading, wire_value
from edge_agent.alarms import records
from edge_agent.contracts.samples import Quality, Sample, Value, iso_utc

_GOOD = Quality.GOOD
_COMPACT: dict[str, Any] = {"ensure_ascii": False, "separators": (",", ":")}


class _Group:
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
    groups: list[_Group] = []
    newest: dict[int, _Group] = {}
    placed: dict[str, int] = {}
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
    return json.dumps(doc, **_COMPACT).encode()


def sample_payload(sample: Sample, unit: str | None) -> dict[str, Any]:
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
    body = [{"tag": s.tag, **sample_payload(s, units.get(s.tag))} for s in samples]
    doc = {"schema": SCHEMA_V1, "site": site, "unit": unit, "samples": body}
    return json.dumps(doc, ensure_ascii=False).encode()


def per_unit(
    site: str, samples: Sequence[Sample], schema: int, units: dict[str, str]
) -> list[tuple[str, bytes]]:
    """The sink's batch layout as it was: alarm records out, grouped by unit, one payload each."""
    plain, _ = records.split(samples)
    groups: dict[str, list[Sample]] = {}
    for s in plain:
        groups.setdefault(s.tag.partition(".")[0], []).append(s)
    if schema == 1:
        return [(u, encode_v1(site, u, members, units)) for u, members in groups.items()]
    return [(u, encode_v2(site, u, members)) for u, members in groups.items()]


def per_tag(sample: Sample, units: dict[str, str]) -> bytes:
    return json.dumps(sample_payload(sample, units.get(sample.tag)), ensure_ascii=False).encode()
