"""OPC UA DataValues to samples: timestamps, qualities and values as the server stated them."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta, timezone

from asyncua import ua
from hypothesis import given
from hypothesis import strategies as st

from drivers.opcua_values import datetime_ns, to_sample
from edge_agent.contracts.samples import Quality

moments = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1))


@given(moments)
def test_datetime_ns_is_the_calendar_s_for_naive_and_aware_times(dt: datetime) -> None:
    expected = calendar.timegm(dt.utctimetuple()) * 1_000_000_000 + dt.microsecond * 1000
    assert datetime_ns(dt) == expected
    assert datetime_ns(dt.replace(tzinfo=UTC)) == expected
    assert datetime_ns(dt.replace(tzinfo=UTC).astimezone(timezone(timedelta(hours=2)))) == (
        expected
    )


def test_a_time_before_1970_or_none_is_absent() -> None:
    assert datetime_ns(datetime(1601, 1, 1)) is None  # OPC UA's "no time"
    assert datetime_ns(None) is None


def test_good_float_uncertain_and_bad_data_values() -> None:
    t = datetime(2026, 12, 1, 12, 0, 0, 123456)
    t_ns = datetime_ns(t)
    good = ua.DataValue(ua.Variant(18.404083251953125, ua.VariantType.Float), SourceTimestamp=t)
    s = to_sample("fsf.x", good, 5, server_ts=False)
    assert (s.value, s.quality, s.source_ns, s.reason) == (18.404083, Quality.GOOD, t_ns, None)
    uncertain = ua.DataValue(
        ua.Variant(7, ua.VariantType.Int32),
        StatusCode=ua.StatusCode(ua.StatusCodes.UncertainLastUsableValue),
        SourceTimestamp=t,
    )
    s = to_sample("fsf.x", uncertain, 5, server_ts=False)
    assert (s.value, s.quality, s.reason) == (7, Quality.UNCERTAIN, "UncertainLastUsableValue")
    nan = ua.DataValue(ua.Variant(float("nan"), ua.VariantType.Double), SourceTimestamp=t)
    s = to_sample("fsf.x", nan, 5, server_ts=False)
    assert (s.value, s.quality, s.reason) == (None, Quality.BAD, "not_finite")
    bad = ua.DataValue(StatusCode=ua.StatusCode(ua.StatusCodes.BadSensorFailure))
    s = to_sample("fsf.x", bad, 5, server_ts=False)
    assert (s.value, s.quality, s.reason, s.source_ns) == (
        None,
        Quality.BAD,
        "BadSensorFailure",
        None,
    )
