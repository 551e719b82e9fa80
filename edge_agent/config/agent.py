"""The `[agent]` table: identity, state directory, time zone, logging, shutdown, workers."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from edge_agent.contracts.section import Section

LogLevel = Literal["debug", "info", "warning", "error"]


class AgentSection(Section):
    site: str = Field("site", pattern=r"^[A-Za-z0-9_-]+$")
    instance_id: str = Field("edge-01", pattern=r"^[A-Za-z0-9_-]+$")
    state_dir: Path = Path("state")
    timezone: str = "UTC"
    log_level: LogLevel = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    shutdown_timeout_s: float = Field(10.0, gt=0, le=300)
    # Worker processes reading the sources that can move (docs/configuration.md); 0: all in one.
    acquisition_workers: int = Field(0, ge=0, le=32)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value
