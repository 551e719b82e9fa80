"""Per-tag plausibility limits (edge_agent/plausibility.py applies them; docs/acquisition.md).

Mixed into the tag models: `valid_min`/`valid_max` and `max_step_per_s` on every tag, and
`no_value` markers on Modbus tags. The file's values are checked here; the defaults that come
from the server (OPC UA EURange) are learnt at run time.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from edge_agent.contracts.section import Section

# The integer range of each Modbus type a marker may name; unsigned spellings (0x8000) of signed
# types are accepted, as the register's bits.
_MARKER_SPAN = {
    "int16": (-(2**15), 2**16 - 1), "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**32 - 1), "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**64 - 1), "uint64": (0, 2**64 - 1),
}  # fmt: skip


class PlausibilityLimits(Section):
    """What a tag's value must satisfy to be Good (none: nothing is checked)."""

    # The instrument's span: below or above it, a reading is `out_of_range`. Where neither is
    # given, an OPC UA tag takes the EURange its server publishes.
    valid_min: float | None = None
    valid_max: float | None = None
    # The fastest change the process can make (per second): faster is `implausible_step`.
    max_step_per_s: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _range_order(self) -> PlausibilityLimits:
        low, high = self.valid_min, self.valid_max
        if low is not None and high is not None and low >= high:
            raise ValueError(f"valid_min {low:g} is not below valid_max {high:g}")
        return self


class NoValueMarkers(Section):
    """Modbus integer tags: raw register values that mean "no value" (`no_value_marker`).

    `no_value = "default"` takes the type's convention (int16 -32768 = 0x8000, uint16 65535,
    int32 -2^31, uint32 2^32-1, ...); a list names the raw values (before scale and offset).
    """

    no_value: Literal["default"] | list[int] | None = None

    @model_validator(mode="after")
    def _integer_type(self) -> NoValueMarkers:
        if self.no_value is None:
            return self
        kind: Any = getattr(self, "type", None)
        span = _MARKER_SPAN.get(kind)
        if span is None:
            raise ValueError(f"no_value is for integer types, not {kind!r}")
        if isinstance(self.no_value, list):
            low, high = span
            bad = [raw for raw in self.no_value if not low <= raw <= high]
            if bad or not self.no_value:
                raise ValueError(f"no_value {bad or '[]'}: give raw {kind} values ({low}..{high})")
        return self
