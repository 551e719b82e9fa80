"""OPC UA values to samples and back: status codes to quality, DateTime to ns, Variant types.

Called for every tag of every read (or notification), so the per-value work is kept to plain
arithmetic: `datetime_ns` subtracts the epoch instead of building a time tuple (0.6 µs against
3 µs per timestamp).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from asyncua import ua

from drivers.base import WriteRefused
from edge_agent.contracts.opcua import OpcUaPoint
from edge_agent.contracts.samples import Quality, Sample, Value, shortest_float32

_EPOCH_NAIVE = datetime(1970, 1, 1)  # asyncua gives naive UTC DateTimes
_EPOCH_AWARE = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_FLOAT = ua.VariantType.Float


def quality_of(status: ua.StatusCode | None) -> tuple[Quality, str | None]:
    """OPC UA severity bits (the top two) to our quality; the status name becomes the reason."""
    code = status.value if status is not None else 0
    severity = code >> 30
    if severity == 0:
        return Quality.GOOD, None
    assert status is not None
    return (Quality.UNCERTAIN if severity == 1 else Quality.BAD), status.name


def datetime_ns(dt: datetime | None) -> int | None:
    """An OPC UA DateTime (naive UTC or aware) as integer ns since the epoch; None if absent."""
    if dt is None or dt.year < 1970:
        return None
    epoch = _EPOCH_NAIVE if dt.tzinfo is None else _EPOCH_AWARE
    return (dt - epoch) // _MICROSECOND * 1000


def plain_value(value: Any) -> Value:
    """The Variant's Python value as a Sample value; raises TypeError for what we do not carry."""
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, ua.LocalizedText):
        return value.Text or ""
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(type(value).__name__)


def to_sample(tag_id: str, dv: ua.DataValue, acq: int, server_ts: bool) -> Sample:
    status = dv.StatusCode
    if status is None or status.value >> 30 == 0:  # Good: the common case, checked first
        quality, reason = Quality.GOOD, None
    else:
        quality, reason = quality_of(status)
    source_ns = datetime_ns(dv.ServerTimestamp if server_ts else dv.SourceTimestamp)
    if quality is Quality.BAD:
        return Sample(tag_id, None, quality, acq, source_ns, reason)
    variant = dv.Value
    raw = variant.Value if variant is not None else None
    if raw is None:
        return Sample(tag_id, None, Quality.BAD, acq, source_ns, "null_value")
    if type(raw) is float:
        if not math.isfinite(raw):
            return Sample(tag_id, None, Quality.BAD, acq, source_ns, "not_finite")
        if variant.VariantType is _FLOAT:  # type: ignore[union-attr]
            raw = shortest_float32(raw)
        return Sample(tag_id, raw, quality, acq, source_ns, reason)
    try:
        value = plain_value(raw)
    except TypeError as exc:
        return Sample(tag_id, None, Quality.BAD, acq, source_ns, f"unsupported_type_{exc}")
    return Sample(tag_id, value, quality, acq, source_ns, reason)


def check_writable(tag: OpcUaPoint, value: Value) -> None:
    if not tag.writable:
        raise WriteRefused(f"tag {tag.id} is not writable (set writable = true with bounds)")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return
    if (tag.min is not None and value < tag.min) or (tag.max is not None and value > tag.max):
        raise WriteRefused(f"tag {tag.id}: {value} is outside [{tag.min}, {tag.max}]")


def coerce(value: Value, vtype: ua.VariantType) -> Value:
    """Python value for the node's own type (the server checks the type strictly)."""
    if vtype is ua.VariantType.Boolean:
        return bool(value)
    if vtype in (ua.VariantType.Float, ua.VariantType.Double):
        return float(value)
    if vtype is ua.VariantType.String:
        return str(value)
    if isinstance(value, str) or (isinstance(value, float) and not value.is_integer()):
        raise WriteRefused(f"{value!r} is not an integer, as the node's type {vtype.name} needs")
    return int(value)
