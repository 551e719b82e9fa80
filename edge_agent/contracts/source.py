"""What a driver needs of every source and every tag, whatever the protocol.

The agent's configuration extends these with what only the agent reads (units, descriptions,
freshness, quality sources); a driver sees no more than it needs to talk to its device.
"""

from __future__ import annotations

from pydantic import Field, ValidationInfo, field_validator

from edge_agent.contracts.section import Section

TAG_ID_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$"


class TagPoint(Section):
    """One tag as a driver sees it: its id, and whether (and within what) it may be written."""

    id: str = Field(pattern=TAG_ID_PATTERN)
    writable: bool = False
    min: float | None = None
    max: float | None = None

    @field_validator("max")
    @classmethod
    def _max_not_below_min(cls, value: float | None, info: ValidationInfo) -> float | None:
        low = info.data.get("min")
        if value is not None and low is not None and low > value:
            raise ValueError(f"max is below min ({low})")
        return value


class SourceSettings(Section):
    """One connection to one device or server."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    endpoint: str
    # Bounds: below 10 ms a poll loop costs a core and no device answers that fast; above an
    # hour it is not acquisition any more.
    poll_interval_s: float = Field(1.0, ge=0.01, le=3600)
    timeout_s: float = Field(2.0, gt=0, le=600)
