"""The base of every settings table, in the agent's configuration and in the drivers' contracts."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """Base for every config table: unknown keys are errors, models are immutable, and every
    number is finite (`inf` and `nan` are TOML; no setting can run on them)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
