"""The one value type that flows from drivers to sinks.

Timestamps are integer nanoseconds since the Unix epoch (UTC): cheap to create at 10 000 samples
per second, exact to store in the outbox and in InfluxDB, and unambiguous across clock changes.
"""

from __future__ import annotations

import math
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache
from itertools import compress
from operator import ne
from typing import dataclass_transform

Value = float | int | bool | str


class Quality(StrEnum):
    """OPC UA's three quality classes; the precise cause travels in `Sample.reason`."""

    GOOD = "good"
    UNCERTAIN = "uncertain"
    BAD = "bad"


@dataclass_transform(frozen_default=True)
def _value_record(cls: type) -> type:
    """A dataclass that the type checker holds frozen, built at run time without the freezing.

    A frozen dataclass's `__init__` sets each field through `object.__setattr__`: 1.2 µs per
    `Sample` against 0.26 µs for plain slots, paid for every tag of every read. Nothing assigns
    to a sample (mypy --strict refuses it, as for any frozen dataclass), so the guard at run time
    buys nothing; equality, hashing (over all fields), `replace` and the slots stay the same.
    """
    return dataclass(slots=True, unsafe_hash=True)(cls)


@_value_record
class Sample:
    """One reading of one tag, or one derived value.

    A failed read is a Bad sample with `value=None` and a `reason` (an OPC UA status code name,
    a Modbus exception, "connection_lost", ...): never a gap and never the last good value.
    `source_ns` is the instrument's own timestamp; Modbus has none, so it is None there and
    `ts_ns` falls back to the acquisition time.

    `raw` is what the device said when that cannot be true (plausibility made the sample Bad:
    reason `out_of_range`, `no_value_marker`, `implausible_step`); the sinks keep it for diagnosis.
    """

    tag: str
    value: Value | None
    quality: Quality
    acq_ns: int
    source_ns: int | None = None
    reason: str | None = None
    raw: Value | None = None

    @property
    def ts_ns(self) -> int:
        """The sample's identity timestamp: source time where the instrument gives one."""
        return self.source_ns if self.source_ns is not None else self.acq_ns

    @property
    def good(self) -> bool:
        return self.quality is Quality.GOOD

    @classmethod
    def bad(cls, tag: str, reason: str, acq_ns: int | None = None) -> Sample:
        return cls(tag, None, Quality.BAD, acq_ns if acq_ns is not None else now_ns(), None, reason)


_FLOAT32 = struct.Struct("<f")


def shortest_float32(x: float) -> float:
    """The float32 `x` as the shortest decimal that reads back as the same float32.

    A float32 widened to a Python float carries binary noise (the instrument's 18.404083
    becomes 18.404083251953125); published as is, it claims digits the instrument never had.
    Python's repr of the result is what the instrument meant. Nine digits always round-trip.

    The tries are six digits, then seven, eight and nine; NaN and the infinities are left as
    they are. This is the reference for `shortest_float32s`, which does the same for a block.
    """
    pack = _FLOAT32.pack
    packed = pack(x)
    candidate = float("%.6g" % x)  # noqa: UP031 (%-formatting is the faster here)
    if pack(candidate) == packed:
        return candidate
    candidate = float("%.7g" % x)  # noqa: UP031
    if pack(candidate) == packed:
        return candidate
    return _beyond_seven_digits(x, packed)


def _beyond_seven_digits(x: float, packed: bytes) -> float:
    """`shortest_float32` of `x` (packed as float32: `packed`) where seven digits do not do."""
    candidate = float("%.8g" % x)  # noqa: UP031
    if _FLOAT32.pack(candidate) == packed:
        return candidate
    if not math.isfinite(x):
        return x
    return float("%.9g" % x)  # noqa: UP031


def shortest_float32s(xs: Sequence[float]) -> list[float]:
    """`shortest_float32` of every value, the same floats bit for bit, for a block at once.

    A Modbus read brings up to 62 float32 at a time, and per value the formats and packs cost
    more than everything else the driver does. The first two tries (six digits, then seven for
    those that six did not round-trip) run once for the block, in C: one `%`-format of all the
    values, one `float` per text, one `struct` pack of the candidates compared word by word with
    the packed originals. Instrument values with a few decimals pass them; only what is left
    (values computed in float32 need eight or nine digits) goes on one by one.
    """
    out = _candidates(xs, 6)
    todo = _misses(xs, out)
    if not todo:
        return out
    values = [xs[i] for i in todo]
    candidates = _candidates(values, 7)
    for i, candidate in zip(todo, candidates, strict=True):
        out[i] = candidate
    pack = _FLOAT32.pack
    for k in _misses(values, candidates):
        x = values[k]
        out[todo[k]] = _beyond_seven_digits(x, pack(x))
    return out


def _candidates(xs: Sequence[float], digits: int) -> list[float]:
    """Each value rounded to `digits` significant decimal digits, in one format for all."""
    return list(map(float, (_format(len(xs), digits) % tuple(xs)).split()))


def _misses(xs: Sequence[float], candidates: Sequence[float]) -> list[int]:
    """The positions where the candidate is not the same float32 as the value."""
    pack = _float32s(len(xs)).pack
    wanted, got = pack(*xs), pack(*candidates)
    if wanted == got:
        return []
    words = memoryview(wanted).cast("I"), memoryview(got).cast("I")
    return list(compress(range(len(xs)), map(ne, *words)))


@lru_cache(maxsize=512)
def _float32s(n: int) -> struct.Struct:
    return struct.Struct(f"<{n}f")


@lru_cache(maxsize=512)
def _format(n: int, digits: int) -> str:
    return " ".join([f"%.{digits}g"] * n)


def now_ns() -> int:
    return time.time_ns()


def iso_utc(ts_ns: int) -> str:
    """RFC 3339 UTC with millisecond precision, as the MQTT payloads carry it.

    Called for every published sample, and the samples of one poll share their second: the
    calendar part is formatted once per second (`_second_prefix`), only the milliseconds per call.
    Integer arithmetic throughout, so a time just below a full second never rounds up into it.
    """
    seconds, ns = divmod(ts_ns, 1_000_000_000)
    return f"{_second_prefix(seconds)}{ns // 1_000_000:03d}Z"


@lru_cache(maxsize=256)
def _second_prefix(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.")
