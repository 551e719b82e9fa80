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
from json.encoder import encode_basestring as _string  # what ensure_ascii=False uses
from typing import Any

from drivers.json_mapping import MappingError, quality_of, timestamp_ns, value_of
from edge_agent.contracts.samples import Quality, Sample, Value, iso_utc

SCHEMA_V1 = "edge-agent/batch/1"
SCHEMA_V2 = "edge-agent/batch/2"
SCHEMAS = (SCHEMA_V1, SCHEMA_V2)
BAD_AT_SOURCE = "bad_at_source"
_GOOD, _BAD = Quality.GOOD, Quality.BAD


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


_NOTHING = object()


class _Tag:
    """What one tag's text costs once, not per sample: its plant unit (None: set aside, not
    encoded), its key as batch/2 writes it, its head as batch/1 writes it, its engineering unit;
    and the number of the group that holds its latest sample (`BatchWriter.compact`)."""

    __slots__ = ("head", "key", "last", "member", "placed", "unit", "unit_text")

    def __init__(self, tag: str, unit: str | None, engineering_unit: str | None) -> None:
        quoted = _string(tag)
        self.unit = unit
        self.placed = -1
        # The last finite float written and its member text: a driver that reads an unchanged
        # value hands on the same float object (drivers/modbus_codec.py), whose repr is known.
        self.last: object = _NOTHING
        self.member = ""
        self.key = quoted + ":"
        self.head = '{"tag": ' + quoted + ", "
        self.unit_text = ', "unit": ' + _scalar(engineering_unit) if engineering_unit else ""


class _Group:
    """One timestamp's samples of one unit, as the JSON members of `values`, `quality`, ...

    `number` grows with every group a writer opens, across units and batches, so "this tag is
    already in this group or a later one" is one comparison with the tag's `placed`."""

    __slots__ = ("number", "quality", "raw", "reason", "ts_ns", "values")

    def __init__(self, number: int, ts_ns: int) -> None:
        self.number = number
        self.ts_ns = ts_ns
        self.values: list[str] = []
        self.quality: list[str] = []
        self.reason: list[str] = []
        self.raw: list[str] = []

    def more(self, key: str, s: Sample, quality: Quality, reason: str | None) -> None:
        """What a sample carries beside its value: quality and reason where not Good, raw."""
        if quality is not _GOOD:
            self.quality.append(key + _scalar(quality.value))
        if reason is not None:
            self.reason.append(key + _scalar(reason))
        if s.raw is not None and (raw := raw_reading(s)) is not None:
            self.raw.append(key + _scalar(raw))

    def text(self) -> str:
        ts = self.ts_ns
        out = f'{{"ts_ns":{_scalar(ts)},"ts":{_string(iso_utc(ts))},"values":{{'
        out += ",".join(self.values) + "}"
        if self.quality:
            out += ',"quality":{' + ",".join(self.quality) + "}"
        if self.reason:
            out += ',"reason":{' + ",".join(self.reason) + "}"
        if self.raw:
            out += ',"raw":{' + ",".join(self.raw) + "}"
        return out + "}"


class _Unit:
    """One plant unit's groups while a batch is written (see `BatchWriter.compact`)."""

    __slots__ = ("groups", "newest")

    def __init__(self) -> None:
        self.groups: list[_Group] = []
        self.newest: dict[int, _Group] = {}  # ts_ns -> the newest group of that timestamp


_NO_GROUP = _Group(-2, 0)  # where a unit has no group of a timestamp yet: every tag opens one


class BatchWriter:
    """One pass from a batch's samples to the JSON text of each plant unit's payload.

    The text is built directly, byte for byte what `json.dumps` writes for the same document
    (ensure_ascii=False; tests/support/json_reference.py holds that straightforward version and
    the tests prove them identical over random batches): the per-sample dicts, the per-unit
    lists and json's walk over them cost most of the sink's CPU at high rates. What depends only
    on the tag (its unit, its quoted key) is worked out the first time the tag is seen.

    `set_aside` names a "unit" whose samples are not plant values (the alarm records'
    `_alarms`): they are returned as they are, for the caller to encode in its own way.
    """

    def __init__(
        self, site: str, units: dict[str, str] | None = None, set_aside: str | None = None
    ) -> None:
        self.site = site
        self.units = units or {}
        self.set_aside = set_aside
        self._tags: dict[str, _Tag] = {}
        self._unit_ids: dict[str, str] = {}
        self._groups_opened = 0

    def tag(self, tag: str) -> _Tag:
        known = self._tags.get(tag)
        if known is None:
            name = tag.partition(".")[0]
            unit = self._unit_ids.setdefault(name, name)  # one str object per unit: `is` finds it
            known = self._tags[tag] = _Tag(
                tag, None if unit == self.set_aside else unit, self.units.get(tag)
            )
        return known

    def _group(self, ts_ns: int) -> _Group:
        self._groups_opened += 1
        return _Group(self._groups_opened, ts_ns)

    def compact(self, samples: Iterable[Sample]) -> tuple[list[tuple[str, bytes]], list[Sample]]:
        """(plant unit, `edge-agent/batch/2` payload) per unit in order of first appearance, and
        the samples set aside."""
        units: dict[str, _Unit] = {}
        aside: list[Sample] = []
        tags = self._tags
        # The samples of one read come in runs of one unit and one timestamp: their group is
        # looked up once per run.
        unit_now: str | None = None
        ts_now = -1
        u: _Unit | None = None
        group = _NO_GROUP
        number = group.number
        add = group.values.append  # replaced with the first group's before its first use
        good, float_repr = _GOOD, _float_repr
        for s in samples:
            tag = s.tag
            info = tags.get(tag)
            if info is None:
                info = self.tag(tag)
            unit = info.unit
            if unit is None:
                aside.append(s)
                continue
            ts = s.source_ns
            if ts is None:
                ts = s.acq_ns
            if unit is not unit_now or ts != ts_now:
                unit_now, ts_now = unit, ts
                u = units.get(unit)
                if u is None:
                    u = units[unit] = _Unit()
                group = u.newest.get(ts, _NO_GROUP)
                number, add = group.number, group.values.append
            if info.placed >= number:  # already in this group (or a later one): a new one
                assert u is not None
                group = u.newest[ts] = self._group(ts)
                u.groups.append(group)
                number, add = group.number, group.values.append
            info.placed = number
            value = s.value
            if value is info.last:  # the very object of the last read: its text is known
                add(info.member)
            elif type(value) is float:
                if value - value == 0.0:  # finite: inf - inf and NaN - NaN are NaN
                    info.last = value
                    add(member := info.key + float_repr(value))
                    info.member = member
                else:
                    add(info.key + "null")
                    group.more(info.key, s, _BAD, f"not_finite:{value}")
                    continue
            else:
                add(info.key + _scalar(value))
            if s.quality is not good or s.reason is not None or s.raw is not None:
                group.more(info.key, s, s.quality, s.reason)
        head = f'{{"schema":"{SCHEMA_V2}","site":{_scalar(self.site)},"unit":'
        return [
            (unit, f'{head}{_scalar(unit)},"groups":[{",".join(g.text() for g in u.groups)}]}}'
             .encode())
            for unit, u in units.items()
        ], aside  # fmt: skip

    def previous(self, samples: Iterable[Sample]) -> tuple[list[tuple[str, bytes]], list[Sample]]:
        """As `compact`, in the previous schema `edge-agent/batch/1`."""
        units: dict[str, list[str]] = {}
        aside: list[Sample] = []
        for s in samples:
            info = self._tags.get(s.tag) or self.tag(s.tag)
            if info.unit is None:
                aside.append(s)
                continue
            members = units.get(info.unit)
            if members is None:
                members = units[info.unit] = []
            members.append(info.head + self._body(s, info) + "}")
        head = f'{{"schema": "{SCHEMA_V1}", "site": {_scalar(self.site)}, "unit": '
        return [
            (unit, f'{head}{_scalar(unit)}, "samples": [{", ".join(members)}]}}'.encode())
            for unit, members in units.items()
        ], aside

    def per_tag(self, sample: Sample) -> bytes:
        """One sample's payload as the per-tag layout carries it."""
        return ("{" + self._body(sample, self.tag(sample.tag)) + "}").encode()

    @staticmethod
    def _body(s: Sample, info: _Tag) -> str:
        """A sample's members as batch/1 and the per-tag layout write them (json's default
        separators): value, quality, ts, ts_ns, unit, reason, raw."""
        value, quality, reason = s.value, s.quality, s.reason
        if type(value) is float and value - value != 0.0:
            value, quality, reason = None, _BAD, f"not_finite:{value}"
        ts = s.ts_ns
        out = (
            f'"value": {_scalar(value)}, "quality": {_scalar(quality.value)}, '
            f'"ts": {_string(iso_utc(ts))}, "ts_ns": {_scalar(ts)}{info.unit_text}'
        )
        if reason is not None:
            out += ', "reason": ' + _scalar(reason)
        if s.raw is not None and (raw := raw_reading(s)) is not None:
            out += ', "raw": ' + _scalar(raw)
        return out


def _scalar(value: object) -> str:
    """A JSON scalar exactly as json.dumps(ensure_ascii=False) writes it: the common types
    directly (json itself uses float's and int's repr), anything else through json."""
    if type(value) is float:
        return _float_repr(value) if value - value == 0.0 else json.dumps(value)
    if value is None:
        return "null"
    if type(value) is str:
        return _string(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    if type(value) is int:
        return _int_repr(value)
    return json.dumps(value, ensure_ascii=False)


_float_repr = float.__repr__
_int_repr = int.__repr__


def encode_v2(site: str, unit: str, samples: Iterable[Sample]) -> bytes:
    """One unit's samples as `edge-agent/batch/2` (see the module docstring)."""
    return _one_unit(unit, BatchWriter(site).compact(samples)[0]) or _empty(
        SCHEMA_V2, site, unit, "groups", (",", ":")
    )


def encode_v1(site: str, unit: str, samples: Iterable[Sample], units: dict[str, str]) -> bytes:
    """One unit's samples of one batch as `edge-agent/batch/1` (the previous schema)."""
    return _one_unit(unit, BatchWriter(site, units).previous(samples)[0]) or _empty(
        SCHEMA_V1, site, unit, "samples", (", ", ": ")
    )


def _one_unit(unit: str, payloads: list[tuple[str, bytes]]) -> bytes | None:
    if [u for u, _ in payloads] not in ([], [unit]):
        raise ValueError(f"samples of units {[u for u, _ in payloads]} given as unit {unit!r}")
    return payloads[0][1] if payloads else None


def _empty(schema: str, site: str, unit: str, key: str, separators: tuple[str, str]) -> bytes:
    doc = {"schema": schema, "site": site, "unit": unit, key: []}
    return json.dumps(doc, ensure_ascii=False, separators=separators).encode()


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
    "BatchWriter",
    "decode",
    "encode_v1",
    "encode_v2",
    "is_batch",
    "wire_value",
]
