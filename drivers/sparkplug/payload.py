"""Sparkplug B payload codec: our samples in, protobuf bytes out, and command metrics back.

Only this module touches the generated protobuf classes. It knows Sparkplug's value rules
(which `oneof` field each datatype travels in, two's complement for signed integers, `is_null`
instead of a value, the `Quality` property) and nothing of sessions or MQTT.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum

from drivers.sparkplug import sparkplug_b_pb2 as pb
from edge_agent.contracts.samples import Quality, Value


class DataType(IntEnum):
    """The specification's datatype numbers this agent sends or accepts in commands."""

    INT8 = 1
    INT16 = 2
    INT32 = 3
    INT64 = 4
    UINT8 = 5
    UINT16 = 6
    UINT32 = 7
    UINT64 = 8
    FLOAT = 9
    DOUBLE = 10
    BOOLEAN = 11
    STRING = 12
    DATETIME = 13
    TEXT = 14
    UUID = 15


class QualityCode(IntEnum):
    """Values of the `Quality` property (Int32). OPC UA Uncertain has no code of its own: STALE
    ("was right, may no longer be") is the closest the specification offers."""

    BAD = 0
    GOOD = 192
    STALE = 500


QUALITY_CODES = {Quality.GOOD: QualityCode.GOOD, Quality.UNCERTAIN: QualityCode.STALE,
                 Quality.BAD: QualityCode.BAD}  # fmt: skip
# Metric names the specification fixes: every edge node has them, whoever its host is.
BD_SEQ = "bdSeq"
REBIRTH = "Node Control/Rebirth"
ENG_UNIT_PROPERTY = "engUnit"  # Ignition's tag property name; MQTT Engine maps it directly
QUALITY_PROPERTY = "Quality"
# Why a metric is not Good, and what the device said when plausibility refused it (our names: the
# specification leaves custom properties to the application).
REASON_PROPERTY = "reason"
RAW_PROPERTY = "raw"

_SIGNED_32: dict[int, int] = {DataType.INT8: 8, DataType.INT16: 16, DataType.INT32: 32}
_UNSIGNED_32 = {DataType.UINT8, DataType.UINT16, DataType.UINT32}
_TEXT = {DataType.STRING, DataType.TEXT, DataType.UUID}
_U64 = 1 << 64


class PayloadError(ValueError):
    """A payload or metric this agent cannot decode or encode; the message names the field."""


def datatype_for(value: Value) -> DataType:
    """The datatype a birth declares for a Python value (bool before int: bool is an int)."""
    if isinstance(value, bool):
        return DataType.BOOLEAN
    if isinstance(value, int):
        return DataType.INT64 if -(1 << 63) <= value < (1 << 63) else DataType.UINT64
    if isinstance(value, float):
        return DataType.DOUBLE
    return DataType.STRING


def accepts(datatype: DataType, value: Value) -> bool:
    """Whether a declared metric can carry this value without a new birth."""
    if isinstance(value, bool):
        return datatype is DataType.BOOLEAN
    if isinstance(value, int):
        if datatype is DataType.DOUBLE:
            return True
        if datatype is DataType.INT64:
            return -(1 << 63) <= value < (1 << 63)
        return datatype is DataType.UINT64 and 0 <= value < _U64
    if isinstance(value, float):
        return datatype is DataType.DOUBLE
    return datatype is DataType.STRING


@dataclass(frozen=True, slots=True)
class MetricOut:
    """One metric to encode. Births give name, datatype and properties; data gives the alias."""

    timestamp_ms: int
    value: Value | None
    datatype: DataType
    name: str | None = None
    alias: int | None = None
    quality: Quality = Quality.GOOD
    unit: str | None = None
    with_datatype: bool = False
    historical: bool = False
    reason: str | None = None
    raw: float | None = None


def encode(timestamp_ms: int, metrics: Iterable[MetricOut], seq: int | None) -> bytes:
    """A serialised Payload. `seq` is None only for NDEATH, the one message that carries none."""
    payload = pb.Payload()
    payload.timestamp = timestamp_ms
    if seq is not None:
        payload.seq = seq
    for m in metrics:
        _fill_metric(payload.metrics.add(), m)
    return bytes(payload.SerializeToString())


def _fill_metric(out: pb.Payload.Metric, m: MetricOut) -> None:
    if m.name is not None:
        out.name = m.name
    if m.alias is not None:
        out.alias = m.alias
    out.timestamp = m.timestamp_ms
    if m.with_datatype:
        out.datatype = int(m.datatype)
    if m.historical:
        out.is_historical = True
    if m.value is None:
        out.is_null = True
    else:
        _set_value(out, m.datatype, m.value)
    if m.quality is Quality.GOOD and not m.with_datatype and m.raw is None and not m.unit:
        return  # a Good data metric carries no properties: the common case, no list built
    keys: list[tuple[str, DataType, Value]] = []
    if m.unit:
        keys.append((ENG_UNIT_PROPERTY, DataType.STRING, m.unit))
    # The specification makes the property optional while the quality is GOOD; a birth always
    # states it so that a host reconnecting mid-session starts from an explicit quality.
    if m.quality is not Quality.GOOD or m.with_datatype:
        keys.append((QUALITY_PROPERTY, DataType.INT32, int(QUALITY_CODES[m.quality])))
    if m.quality is not Quality.GOOD and m.reason:
        keys.append((REASON_PROPERTY, DataType.STRING, m.reason))
    if m.raw is not None and math.isfinite(m.raw):
        keys.append((RAW_PROPERTY, DataType.DOUBLE, m.raw))
    for key, datatype, value in keys:
        out.properties.keys.append(key)
        prop = out.properties.values.add()
        prop.type = int(datatype)
        if datatype is DataType.STRING:
            prop.string_value = str(value)
        elif datatype is DataType.DOUBLE:
            prop.double_value = float(value)
        else:
            prop.int_value = int(value)


def _set_value(out: pb.Payload.Metric, datatype: DataType, value: Value) -> None:
    if datatype is DataType.DOUBLE:  # the common case first
        out.double_value = float(value)
    elif datatype is DataType.BOOLEAN:
        out.boolean_value = bool(value)
    elif datatype in (DataType.INT64, DataType.UINT64, DataType.DATETIME):
        out.long_value = int(value) % _U64  # two's complement for negative Int64
    elif datatype in _SIGNED_32 or datatype in _UNSIGNED_32:
        out.int_value = int(value) % (1 << 32)
    elif datatype is DataType.FLOAT:
        out.float_value = float(value)
    elif datatype in _TEXT:
        out.string_value = str(value)
    else:
        raise PayloadError(f"datatype {datatype!r} is not one this agent encodes")


# ------------------------------------------------------------------------------------ decoding


@dataclass(frozen=True, slots=True)
class MetricIn:
    """One metric of a received command (NCMD/DCMD): by name or by alias, with its value."""

    name: str | None
    alias: int | None
    value: Value | None
    timestamp_ms: int | None = None  # the metric's, else the payload's; None if neither has one


def decode(data: bytes) -> pb.Payload:
    """Parse a Sparkplug B payload; malformed bytes raise PayloadError, not a protobuf error."""
    payload = pb.Payload()
    try:
        payload.ParseFromString(data)
    except Exception as exc:  # protobuf raises DecodeError, and others on odd input
        raise PayloadError(f"not a Sparkplug B payload ({len(data)} bytes): {exc}") from exc
    return payload


def command_metrics(payload: pb.Payload, datatypes: dict[int, DataType]) -> list[MetricIn]:
    """The metrics of a command, with values decoded by the command's datatype or, for an alias
    without one (hosts may omit it), by the datatype our birth declared (`datatypes[alias]`)."""
    out: list[MetricIn] = []
    for i, m in enumerate(payload.metrics):
        name = m.name if m.HasField("name") else None
        alias = m.alias if m.HasField("alias") else None
        if name is None and alias is None:
            raise PayloadError(f"metrics[{i}]: neither name nor alias")
        declared = m.datatype if m.HasField("datatype") else None
        if declared is None and alias is not None:
            declared = datatypes.get(alias)
        value = metric_value(m, declared, f"metrics[{i}]")
        if m.HasField("timestamp"):
            ts: int | None = m.timestamp
        else:
            ts = payload.timestamp if payload.HasField("timestamp") else None
        out.append(MetricIn(name, alias, value, ts))
    return out


def metric_value(m: pb.Payload.Metric, datatype: int | None, where: str = "metric") -> Value | None:
    """A metric's value as a Python value; None when it is null or carries no value."""
    if m.is_null:
        return None
    kind = m.WhichOneof("value")
    if kind is None:
        return None
    if kind == "int_value":
        raw = int(m.int_value)
        bits = _SIGNED_32.get(datatype) if datatype is not None else None
        if bits is None:
            return raw
        if raw >= 1 << 31:  # sign-extended to 32 bits, as the specification's examples do
            return raw - (1 << 32)
        return raw - (1 << bits) if raw >= 1 << (bits - 1) else raw
    if kind == "long_value":
        raw = int(m.long_value)
        signed = datatype in (None, DataType.INT64)
        return raw - _U64 if signed and raw >= 1 << 63 else raw
    if kind in ("float_value", "double_value"):
        number = float(getattr(m, kind))
        if math.isnan(number):
            raise PayloadError(f"{where}: value is NaN")
        return number
    if kind == "boolean_value":
        return bool(m.boolean_value)
    if kind == "string_value":
        return str(m.string_value)
    raise PayloadError(f"{where}: {kind} values are not accepted here")


def property_map(m: pb.Payload.Metric) -> dict[str, Value | None]:
    """A metric's properties as a dict (for tests and diagnostics)."""
    out: dict[str, Value | None] = {}
    for key, prop in zip(m.properties.keys, m.properties.values, strict=True):
        kind = prop.WhichOneof("value")
        out[key] = None if prop.is_null or kind is None else getattr(prop, kind)
    return out
