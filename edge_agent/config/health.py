"""The `[health]` table: the local HTTP endpoint and the watchdog's patience."""

from __future__ import annotations

from pydantic import Field, field_validator

from edge_agent.config import addresses
from edge_agent.contracts.section import Section


class HealthSection(Section):
    """The local HTTP endpoint (/healthz, /metrics) and the watchdog's patience."""

    enabled: bool = True
    listen: str = Field(
        "127.0.0.1:9108", pattern=r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]*):[0-9]{1,5}$"
    )
    # A source or sink loop that completes no cycle for this long is hung: the systemd watchdog
    # heartbeat stops (and systemd restarts the agent WatchdogSec= later). Longer than any
    # reconnect backoff, so that a device that is merely down never triggers a restart.
    stall_after_s: float = Field(120.0, gt=0)

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        return addresses.host_port(value, listen=True)
