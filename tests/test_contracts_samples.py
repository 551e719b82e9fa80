"""edge_agent.contracts.samples: the sample type and its timestamp formatting."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from edge_agent.contracts.samples import Quality, Sample, iso_utc


@pytest.mark.parametrize(
    ("ts_ns", "text"),
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (1_764_000_000_123_456_789, "2025-11-24T16:00:00.123Z"),
        # Just below a full second: a float division would round this up into the next second.
        (1_764_000_000_999_999_999, "2025-11-24T16:00:00.999Z"),
        (1_764_000_001_000_000_000, "2025-11-24T16:00:01.000Z"),
    ],
)
def test_iso_utc_is_rfc3339_with_truncated_milliseconds(ts_ns: int, text: str) -> None:
    assert iso_utc(ts_ns) == text


def test_iso_utc_agrees_with_datetime_across_many_seconds() -> None:
    for ts_ns in range(1_764_000_000_000_000_000, 1_764_000_100_000_000_000, 3_700_000_001):
        dt = datetime.fromtimestamp(ts_ns // 1_000_000_000, tz=UTC)
        ms = (ts_ns // 1_000_000) % 1000
        assert iso_utc(ts_ns) == dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms:03d}Z"


def test_ts_ns_prefers_the_source_time() -> None:
    assert Sample("a.b", 1.0, Quality.GOOD, acq_ns=10, source_ns=7).ts_ns == 7
    assert Sample("a.b", 1.0, Quality.GOOD, acq_ns=10).ts_ns == 10


def test_bad_sample_carries_no_value_and_its_reason() -> None:
    s = Sample.bad("a.b", "connection_lost", acq_ns=5)
    assert (s.value, s.quality, s.reason, s.good) == (None, Quality.BAD, "connection_lost", False)


def test_samples_compare_and_hash_by_every_field() -> None:
    """Sample is a frozen record for the type checker and a plain slots class at run time
    (edge_agent/contracts/samples.py): equality, hashing and `replace` must not notice."""
    import dataclasses

    from edge_agent.contracts.samples import Quality, Sample

    a = Sample("fsf.matte_temp", 1231.5, Quality.GOOD, 10, 9)
    assert a == Sample("fsf.matte_temp", 1231.5, Quality.GOOD, 10, 9)
    assert hash(a) == hash(Sample("fsf.matte_temp", 1231.5, Quality.GOOD, 10, 9))
    assert a != dataclasses.replace(a, reason="x")
    assert len({a, dataclasses.replace(a, raw=1.0), a}) == 2
    assert not hasattr(a, "__dict__")
