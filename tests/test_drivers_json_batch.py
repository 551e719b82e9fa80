"""Batch payloads (drivers/json_batch.py): what the sink encodes, the MQTT source decodes to the
same samples, qualities, reasons and timestamps; the compact schema's size; hostile documents."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers import json_batch
from drivers.json_batch import SCHEMA_V1, SCHEMA_V2, decode, encode_v1, encode_v2
from drivers.json_mapping import MappingError
from edge_agent.contracts.samples import Quality, Sample, shortest_float32

T0 = 1_795_000_000_000_000_000
NOW = T0 + 10**9


def identity(s: Sample) -> tuple[Any, ...]:
    """What a subscriber must get back: everything but our own acquisition time (the reader's
    acquisition time is its own; `ts_ns`, the sample's identity, travels as source time)."""
    value, quality, reason = json_batch.wire_value(s)
    raw = json_batch.raw_reading(s) if quality is Quality.BAD else None
    return (s.tag, value, quality, reason, s.ts_ns, raw)


def decoded(s: Sample) -> tuple[Any, ...]:
    assert s.acq_ns == NOW
    return (s.tag, s.value, s.quality, s.reason, s.source_ns, s.raw)


def per_tag(rows: list[tuple[Any, ...]]) -> dict[str, list[tuple[Any, ...]]]:
    out: dict[str, list[tuple[Any, ...]]] = {}
    for row in rows:
        out.setdefault(row[0], []).append(row)
    return out


def round_trip(samples: list[Sample], schema: int) -> list[Sample]:
    payload = (
        encode_v2("demo", "fsf", samples)
        if schema == 2
        else encode_v1("demo", "fsf", samples, {"fsf.a": "°C"})
    )
    got, errors = decode("t", json.loads(payload), {s.tag for s in samples}, NOW)
    assert errors == []
    return got


MIXED = [
    Sample("fsf.a", 1231.5, Quality.GOOD, T0 + 5, T0),
    Sample("fsf.b", 7, Quality.GOOD, T0),
    Sample("fsf.c", True, Quality.GOOD, T0),
    Sample("fsf.d", "auto", Quality.GOOD, T0),
    Sample.bad("fsf.e", "BadCommunicationError", acq_ns=T0),
    Sample("fsf.f", 0.21, Quality.UNCERTAIN, T0, None, "stale_input"),
    Sample("fsf.g", None, Quality.BAD, T0, None, "out_of_range", raw=3000.0),
    Sample("fsf.h", math.nan, Quality.GOOD, T0),
    Sample("fsf.a", 1232.0, Quality.GOOD, T0 + 7, T0),  # same tag, same time: a second group
    Sample("fsf.b", 8, Quality.GOOD, T0 + 10**8),
    Sample("fsf.b", 9, Quality.GOOD, T0),  # older time after a newer one: order is kept
]


@pytest.mark.parametrize("schema", [1, 2])
def test_every_sample_survives_the_round_trip_in_order(schema: int) -> None:
    got = round_trip(MIXED, schema)
    assert per_tag([decoded(s) for s in got]) == per_tag([identity(s) for s in MIXED])
    assert len(got) == len(MIXED)
    h = next(s for s in got if s.tag == "fsf.h")
    assert (h.value, h.quality, h.reason) == (None, Quality.BAD, "not_finite:nan")


def test_the_compact_schema_shares_timestamps_and_names_only_what_is_not_good() -> None:
    doc = json.loads(encode_v2("demo", "fsf", MIXED))
    assert (doc["schema"], doc["site"], doc["unit"]) == (SCHEMA_V2, "demo", "fsf")
    first = doc["groups"][0]
    assert first["ts_ns"] == T0
    assert first["ts"] == "2026-11-18T11:06:40.000Z"
    assert list(first["values"]) == [f"fsf.{c}" for c in "abcdefgh"]
    assert first["quality"] == {"fsf.e": "bad", "fsf.f": "uncertain", "fsf.g": "bad",
                                "fsf.h": "bad"}  # fmt: skip
    assert first["reason"] == {"fsf.e": "BadCommunicationError", "fsf.f": "stale_input",
                               "fsf.g": "out_of_range", "fsf.h": "not_finite:nan"}  # fmt: skip
    assert first["raw"] == {"fsf.g": 3000.0}
    assert [g["ts_ns"] for g in doc["groups"]] == [T0, T0, T0 + 10**8, T0]
    good_only = json.loads(encode_v2("demo", "fsf", [Sample("fsf.a", 1.5, Quality.GOOD, T0)]))
    assert set(good_only["groups"][0]) == {"ts_ns", "ts", "values"}


def test_a_float_tag_costs_at_most_40_bytes() -> None:
    """The issue's target, with tag ids as long as the demo's and float32 readings."""
    tags = [f"fsf.matte_temp_{i:03d}" for i in range(500)]
    samples = [
        Sample(t, shortest_float32(1000 + i * 1.37913), Quality.GOOD, T0)
        for i, t in enumerate(tags)
    ]
    v2 = len(encode_v2("demo", "fsf", samples)) / len(samples)
    v1 = len(encode_v1("demo", "fsf", samples, {})) / len(samples)
    assert v2 <= 40, v2
    assert v1 > 3 * v2  # what the old schema cost


finite = st.floats(allow_nan=False, allow_infinity=False)
values = st.one_of(finite, st.integers(-(2**53), 2**53), st.booleans(), st.text(max_size=8))
samples_st = st.lists(
    st.builds(
        lambda tag, value, quality, reason, ts, source: Sample(
            tag,
            None if quality is Quality.BAD else value,
            quality,
            T0 + ts,
            None if source is None else T0 + source,
            reason if reason or quality is not Quality.BAD else "bad_at_source",
        ),
        st.sampled_from(["fsf.a", "fsf.b", "fsf.c.d", "fsf.é"]),
        values,
        st.sampled_from(list(Quality)),
        st.one_of(st.none(), st.text(min_size=1, max_size=6)),
        st.integers(0, 3),
        st.one_of(st.none(), st.integers(0, 3)),
    ),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(samples_st)
def test_any_batch_round_trips_through_the_compact_schema(samples: list[Sample]) -> None:
    got = round_trip(samples, 2)
    assert per_tag([decoded(s) for s in got]) == per_tag([identity(s) for s in samples])


def test_a_broken_frame_is_refused_naming_the_path() -> None:
    good = json.loads(encode_v2("demo", "fsf", MIXED[:2]))
    cases: list[tuple[Any, str]] = [
        ({"schema": "edge-agent/batch/9"}, "schema = 'edge-agent/batch/9'"),
        ({**good, "groups": {}}, "groups = {} is not an array"),
        ({**good, "groups": [{"ts_ns": "x", "values": {}}]}, "groups.0.ts_ns = 'x'"),
        ({**good, "groups": [{"ts_ns": T0, "values": [1]}]}, "groups.0.values = [1]"),
        ({"schema": SCHEMA_V1, "samples": [{"value": 1}]}, "samples.0 = {'value': 1}"),
    ]
    for doc, message in cases:
        with pytest.raises(MappingError, match=message.replace("[", r"\[").replace("{", r"\{")):
            decode("plant/demo/_batch/fsf", doc, {"fsf.a"}, NOW)


def test_one_unreadable_value_costs_only_its_tag() -> None:
    doc = json.loads(encode_v2("demo", "fsf", MIXED[:2]))
    doc["groups"][0]["values"]["fsf.a"] = {"nested": 1}
    doc["groups"][0]["quality"] = {"fsf.b": "excellent"}
    doc["groups"][0]["values"]["fsf.z"] = 1.0  # not wanted: ignored
    got, errors = decode("plant/demo/_batch/fsf", doc, {"fsf.a", "fsf.b"}, NOW)
    assert got == []
    assert [tag for tag, _ in errors] == ["fsf.a", "fsf.b"]
    assert "groups.0.values.fsf.a = {'nested': 1}" in str(errors[0][1])
    assert "groups.0.quality.fsf.b = 'excellent'" in str(errors[1][1])
