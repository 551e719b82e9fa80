"""The fast batch writer (drivers.json_batch.BatchWriter) writes byte for byte what the
straightforward dict-and-json.dumps encoders wrote (tests/support/json_reference.py), for the
compact schema, the previous one and the per-tag layout, over many random batches."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.json_batch import BatchWriter
from edge_agent.alarms import records
from edge_agent.config import MqttSection
from edge_agent.contracts.samples import Quality, Sample, Value
from edge_agent.outbox import Batch
from edge_agent.sinks.mqtt_json import JsonEncoder
from tests.support import json_reference

T0 = 1_795_000_000_000_000_000
UNITS = {"fsf.a": "°C", 'fsf.é"x': 'm³/h "n"', "cvt.b": "", "acp.\u2028": "%\n"}
ALARM = records.PREFIX + "fsf_high"
# Characters json must escape (quotes, backslash, controls) and those it keeps (non-ASCII).
NASTY = ['"', "\\", "\n", "\t", "\x00", "\x1f", "\x7f", "é", "\u2028", "😀", "/", " ", "a"]
FLOATS = [
    0.0, -0.0, 1.5, -2.25, 1231.5, 0.1, 1e300, -1e-300, 5e-324, 1e16, 123456789.123,
    math.nan, math.inf, -math.inf, 18.404083251953125, 2.0**53,
]  # fmt: skip


def text(rng: random.Random, most: int = 6) -> str:
    return "".join(rng.choice(NASTY) for _ in range(rng.randint(0, most)))


def value(rng: random.Random) -> Value | None:
    kind = rng.randrange(8)
    if kind == 0:
        return rng.choice(FLOATS)
    if kind == 1:
        return rng.choice([0, 1, -1, 7, 2**63, -(2**70), 10**30])
    if kind == 2:
        return rng.choice([True, False])
    if kind == 3:
        return text(rng)
    if kind == 4:
        return None
    return rng.uniform(-1e6, 1e6) if kind < 7 else rng.random()


def batch(rng: random.Random) -> list[Sample]:
    tags = [*UNITS, "fsf.b", "fsf.c.d", "cvt.a", "plain", f"u{text(rng, 2)}.x", ALARM]
    times = [T0, T0 + 1, T0 + 10**9 - 1, T0 + 10**9, T0 + 999_999]
    out: list[Sample] = []
    for _ in range(rng.randint(0, 40)):
        tag = rng.choice(tags)
        if tag == ALARM:
            out.append(Sample(tag, '{"alarm_id":"fsf_high"}', Quality.GOOD, T0, T0 + 3))
            continue
        quality = rng.choice([Quality.GOOD, Quality.GOOD, Quality.UNCERTAIN, Quality.BAD])
        reason = rng.choice([None, None, "stale_input", "out_of_range", text(rng)])
        raw = rng.choice([None, None, 3000.0, -7, True, math.nan, math.inf, "x", 0.1])
        source = rng.choice([None, rng.choice(times)])
        out.append(Sample(tag, value(rng), quality, rng.choice(times), source, reason, raw))
    return out


def assert_identical(writer: BatchWriter, samples: list[Sample]) -> None:
    for schema in (1, 2):
        write = writer.previous if schema == 1 else writer.compact
        payloads, aside = write(samples)
        assert payloads == json_reference.per_unit(writer.site, samples, schema, writer.units)
        assert aside == [s for s in samples if records.is_alarm_record(s)]
    for s in samples:
        if not records.is_alarm_record(s):
            assert writer.per_tag(s) == json_reference.per_tag(s, writer.units), s


def test_thousands_of_random_batches_encode_byte_for_byte_as_json_dumps() -> None:
    rng = random.Random(19)
    writer = BatchWriter('dé"mo', UNITS, set_aside="_alarms")
    for _ in range(3000):
        assert_identical(writer, batch(rng))


def test_a_poll_cycle_of_floats_is_identical_too() -> None:
    """The common shape: one timestamp, one unit, float32 readings; read again with new values,
    then with the very same float objects (as a Modbus run that did not change hands them on,
    which the writer recognises), and once more with some of them Bad or Uncertain."""
    rng = random.Random(5)
    writer = BatchWriter("demo", {}, set_aside="_alarms")
    values = [rng.uniform(0, 2000) for _ in range(500)]
    for cycle in range(5):
        if cycle < 2:
            values = [rng.uniform(0, 2000) for _ in range(500)]
        quality = [Quality.UNCERTAIN if cycle == 4 and i % 7 == 0 else Quality.GOOD
                   for i in range(500)]  # fmt: skip
        samples = [
            Sample(f"fsf.t{i}", v, q, T0 + cycle, None, None if q is Quality.GOOD else "stale")
            for i, (v, q) in enumerate(zip(values, quality, strict=True))
        ]
        assert_identical(writer, samples)


sample_st = st.builds(
    Sample,
    st.sampled_from(["fsf.a", "fsf.b", "cvt.x.y", 'fsf.é"x', ALARM]),
    st.one_of(st.none(), st.floats(), st.integers(), st.booleans(), st.text(max_size=5)),
    st.sampled_from(list(Quality)),
    st.integers(T0, T0 + 3),
    st.one_of(st.none(), st.integers(T0, T0 + 3)),
    st.one_of(st.none(), st.text(max_size=5)),
    st.one_of(st.none(), st.floats(), st.integers(), st.booleans()),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(sample_st, max_size=25))
def test_any_batch_is_identical(samples: list[Sample]) -> None:
    assert_identical(BatchWriter('dé"mo', UNITS, set_aside="_alarms"), samples)


def test_the_one_unit_helpers_refuse_samples_of_another_unit() -> None:
    from drivers.json_batch import encode_v2

    with pytest.raises(ValueError, match="cvt"):
        encode_v2("demo", "fsf", [Sample("cvt.a", 1.0, Quality.GOOD, T0)])


@pytest.mark.parametrize(("layout", "schema"), [("batch", 2), ("batch", 1), ("tag", 2)])
def test_the_sink_sends_the_same_messages_in_the_same_order(layout: str, schema: int) -> None:
    """Through JsonEncoder: plant values (per unit or per tag), then each batch's alarm records."""
    settings = MqttSection.model_validate({"layout": layout, "batch_schema": schema})
    enc = JsonEncoder(settings, "demo", UNITS)
    rng = random.Random(layout + str(schema))
    batches = [Batch(i, batch(rng)) for i in range(300)]
    expected: list[tuple[str, bytes, bool]] = []
    for b in batches:
        plain, alarms = records.split(b.samples)
        if layout == "tag":
            expected += [(enc.topic(s.tag), json_reference.per_tag(s, UNITS), False) for s in plain]
        else:
            payloads = json_reference.per_unit("demo", b.samples, schema, UNITS)
            expected += [(enc.batch_topic(u), p, False) for u, p in payloads]
        expected += [(m.topic, m.payload, m.retain) for m in enc._alarms(alarms)]
    got = [(m.topic, m.payload, m.retain) for m in enc.encode(batches)]
    assert got == expected
    assert any("_alarms" in topic for topic, _, _ in got)
