"""The `[control]` table: writing setpoints to the plant (edge_agent/control, docs/control.md).

Safe by default: advisory mode writes nothing, and even in closed loop only allowlisted tags are
written, inside their bounds.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from edge_agent.contracts.section import Section

ControlOrigin = Literal["advisor", "scada"]


class ControlAllow(Section):
    """One `[[control.allow]]` entry: a setpoint the agent may write, and on whose behalf."""

    tag: str
    min: float
    max: float
    max_rate_per_min: float = Field(gt=0, description="largest total change in any 60 s window")
    origins: list[ControlOrigin] = Field(min_length=1)
    min_interval_s: float = Field(10.0, ge=0, description="per-tag rate limit between writes")
    recommendation: str | None = Field(
        None,
        pattern=r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$",
        description="tag holding the advisor's recommended value for this setpoint",
    )

    @model_validator(mode="after")
    def _consistent(self) -> ControlAllow:
        if not (math.isfinite(self.min) and math.isfinite(self.max)):
            raise ValueError(f"tag {self.tag}: min and max must be finite numbers")
        if self.min > self.max:
            raise ValueError(f"tag {self.tag}: min {self.min} is above max {self.max}")
        if len(set(self.origins)) != len(self.origins):
            raise ValueError(f"tag {self.tag}: origins {self.origins} repeat an origin")
        return self


class HeartbeatConfig(Section):
    # None: on in closed_loop mode, off in advisory mode.
    enabled: bool | None = None
    tag: str = "fsf.agent_heartbeat"
    interval_s: float = Field(1.0, gt=0, le=3600)


class ControlSection(Section):
    mode: Literal["advisory", "closed_loop"] = "advisory"
    permissive_tag: str = "fsf.advisor_permissive"
    permissive_max_age_s: float = Field(5.0, gt=0)
    heartbeat: HeartbeatConfig = HeartbeatConfig()
    # SCADA commands over MQTT ({root}/{site}/{unit}/{name}/set); need [mqtt].
    commands: bool = True
    command_max_age_s: float = Field(10.0, gt=0)
    max_clock_skew_s: float = Field(2.0, ge=0)
    max_payload_bytes: int = Field(1024, ge=64, le=65536)
    # How often the advisor's recommendations are considered for writing (closed_loop only).
    advisor_interval_s: float = Field(5.0, gt=0)
    write_timeout_s: float = Field(3.0, gt=0)
    readback_timeout_s: float = Field(5.0, gt=0)
    allow: list[ControlAllow] = []

    @property
    def heartbeat_on(self) -> bool:
        if self.heartbeat.enabled is not None:
            return self.heartbeat.enabled
        return self.mode == "closed_loop"

    @model_validator(mode="after")
    def _unique_allow(self) -> ControlSection:
        seen: set[str] = set()
        for i, entry in enumerate(self.allow):
            if entry.tag in seen:
                raise ValueError(f"allow[{i}]: tag {entry.tag!r} is allowlisted twice")
            seen.add(entry.tag)
        return self
