"""Plausibility: a value that cannot be true is never Good.

A transmitter that spikes to twice its span, or a Modbus device that signals a failed input with
a reserved integer (0x8000 on an int16), still answers the read successfully: the protocol says
Good. These checks run on every sample between the driver and the bus, per tag, in this order:

- `no_value_marker`: the raw register equals one of the tag's "no value" markers (Modbus integer
  tags with `no_value` set; off unless set, see `DEFAULT_NO_VALUE` for the conventions);
- `out_of_range`: the value lies outside [`valid_min`, `valid_max`]; where the file gives neither,
  the OPC UA EURange the server publishes for the node (the driver reads it on connect);
- `implausible_step`: the value moved faster than `max_step_per_s` from the last plausible one.
  The reference is only ever a plausible value, and the allowed step grows with the time since
  it: a spike is refused, a real change that persists is believed once the rate allows it.

A sample that fails becomes Bad with `value=None`, the check's name as its `reason` and what the
device said in `raw`, which the sinks keep for diagnosis. Bad samples and non-numbers pass as
they are; Uncertain ones are checked too (an Uncertain spike is still impossible).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from drivers.modbus_codec import bytes_to_registers, decode
from edge_agent.config import ModbusTag, TagBase
from edge_agent.contracts.samples import Quality, Sample, Value

OUT_OF_RANGE = "out_of_range"
NO_VALUE_MARKER = "no_value_marker"
IMPLAUSIBLE_STEP = "implausible_step"

# The raw value devices use for "no value" per integer type: the most negative number for signed
# types, all bits set for unsigned ones (`no_value = "default"` selects these).
DEFAULT_NO_VALUE: dict[str, int] = {
    "int16": -(2**15),
    "uint16": 2**16 - 1,
    "int32": -(2**31),
    "uint32": 2**32 - 1,
    "int64": -(2**63),
    "uint64": 2**64 - 1,
}
_BITS = {"int16": 16, "uint16": 16, "int32": 32, "uint32": 32, "int64": 64, "uint64": 64}


@dataclass(frozen=True)
class TagLimits:
    """What one tag's values must satisfy; None switches a check off."""

    valid_min: float | None = None
    valid_max: float | None = None
    no_value: frozenset[Value] = frozenset()  # engineering values of the raw markers
    max_step_per_s: float | None = None

    @property
    def checks_anything(self) -> bool:
        return bool(
            self.valid_min is not None
            or self.valid_max is not None
            or self.no_value
            or self.max_step_per_s is not None
        )


def tag_limits(tag: TagBase) -> TagLimits:
    """A tag's configured limits (an OPC UA server's EURange is learnt later, on connect)."""
    markers: frozenset[Value] = frozenset()
    if isinstance(tag, ModbusTag) and tag.no_value is not None:
        markers = frozenset(marker_value(tag, raw) for raw in no_value_raws(tag))
    return TagLimits(tag.valid_min, tag.valid_max, markers, tag.max_step_per_s)


def no_value_raws(tag: ModbusTag) -> list[int]:
    """The tag's markers as raw integers of its type (configured, or the type's default)."""
    if tag.no_value is None:
        return []
    if tag.no_value == "default":
        return [DEFAULT_NO_VALUE[tag.type]]
    return [signed(tag.type, raw) for raw in tag.no_value]


def signed(type_: str, raw: int) -> int:
    """`0x8000` written for an int16 means -32768: the register's bits, read as the type does."""
    bits = _BITS[type_]
    if not type_.startswith("u") and 1 << (bits - 1) <= raw < 1 << bits:
        return raw - (1 << bits)
    return raw


def marker_value(tag: ModbusTag, raw: int) -> Value:
    """The engineering value the driver decodes from raw marker registers. Computed by the
    driver's own codec, so that scale and offset give exactly the same number."""
    bits = _BITS[tag.type]
    data = raw.to_bytes(bits // 8, "big", signed=not tag.type.startswith("u"))
    return decode(tag, bytes_to_registers(data, tag.byte_order))


@dataclass
class _Reference:
    """The last plausible value of a tag and when it was acquired (for the step check)."""

    value: float
    acq_ns: int


@dataclass
class Plausibility:
    """The checks of one source's tags; `apply` runs on every batch the driver returns."""

    limits: dict[str, TagLimits]
    _last: dict[str, _Reference] = field(default_factory=dict, init=False)

    @classmethod
    def for_tags(cls, tags: Sequence[TagBase]) -> Plausibility:
        limits = {t.id: tag_limits(t) for t in tags}
        return cls({tag: lim for tag, lim in limits.items() if lim.checks_anything})

    def learn_ranges(self, ranges: Mapping[str, tuple[float, float]], configured: set[str]) -> None:
        """Take the server's EURange for the tags whose file gives no valid_min or valid_max."""
        for tag, (low, high) in ranges.items():
            if tag in configured or not (math.isfinite(low) and math.isfinite(high)) or low > high:
                continue
            current = self.limits.get(tag, TagLimits())
            self.limits[tag] = TagLimits(low, high, current.no_value, current.max_step_per_s)

    def apply(self, samples: Sequence[Sample]) -> Sequence[Sample]:
        """The batch with implausible samples made Bad; the batch itself where no tag of the
        source has a limit (settled when the source is built, and again on each connect when a
        server's EURange arrives). A test per batch for "none of these tags has a limit" was
        measured: `map` over the tags costs as much as the loop below (CPython 3.11's
        specialised attribute loads), so a source with limits runs the loop."""
        limits = self.limits
        if not limits:
            return samples
        return [self._check(s, lim) if (lim := limits.get(s.tag)) else s for s in samples]

    def _check(self, s: Sample, lim: TagLimits) -> Sample:
        value = s.value
        if (
            s.quality is Quality.BAD
            or isinstance(value, bool)
            or not isinstance(value, int | float)
        ):
            return s
        if lim.no_value and value in lim.no_value:
            return _implausible(s, NO_VALUE_MARKER)
        if (lim.valid_min is not None and value < lim.valid_min) or (
            lim.valid_max is not None and value > lim.valid_max
        ):
            return _implausible(s, OUT_OF_RANGE)
        if lim.max_step_per_s is not None:
            last = self._last.get(s.tag)
            if last is not None:
                elapsed_s = max(s.acq_ns - last.acq_ns, 0) / 1e9
                if abs(value - last.value) > lim.max_step_per_s * elapsed_s:
                    return _implausible(s, IMPLAUSIBLE_STEP)
            self._last[s.tag] = _Reference(float(value), s.acq_ns)
        return s


def _implausible(s: Sample, reason: str) -> Sample:
    return Sample(s.tag, None, Quality.BAD, s.acq_ns, s.source_ns, reason, raw=s.value)


__all__ = [
    "DEFAULT_NO_VALUE",
    "IMPLAUSIBLE_STEP",
    "NO_VALUE_MARKER",
    "OUT_OF_RANGE",
    "Plausibility",
    "TagLimits",
    "marker_value",
    "no_value_raws",
    "tag_limits",
]
