"""What a sink reports to /healthz, /metrics and the watchdog: one dataclass, counted in place.

Each sink's own loop updates its `SinkState`; `status()` turns it into the health board's
`ComponentStatus` snapshot. `progress` advances on every loop turn, including idle waits for
data, so the watchdog sees a quiet plant as alive and only a hung sink as stalled.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from edge_agent.contracts.status import ComponentStatus
from edge_agent.outbox import Cursor, OutboxState


@dataclass
class SinkState:
    name: str
    state: str = "starting"
    healthy: bool = False  # until it has connected or delivered: "starting" is not "ok"
    detail: str = ""
    progress: int = 0
    samples_published_total: int = 0
    batches_confirmed_total: int = 0
    publish_errors_total: int = 0
    retries_total: int = 0
    quarantined_samples_total: int = 0
    samples_suppressed_total: int = 0  # report by exception
    last_confirmed_monotonic: float | None = None
    cursor: Cursor | None = None

    def fail(self, state: str, detail: str) -> None:
        """Mark unhealthy: data stays in the outbox, the sink keeps retrying."""
        self.state, self.healthy, self.detail = state, False, detail
        self.publish_errors_total += 1

    def up(self) -> None:
        """Connected (or delivered): healthy, whatever went wrong before."""
        self.state, self.healthy, self.detail = "connected", True, ""

    def confirmed(self, batches: int, samples: int) -> None:
        self.state, self.healthy, self.detail = "connected", True, ""
        self.batches_confirmed_total += batches
        self.samples_published_total += samples
        self.last_confirmed_monotonic = time.monotonic()

    def status(self) -> ComponentStatus:
        gauges = {}
        if self.cursor is not None:
            gauges["lag_batches"] = float(self.cursor.lag_batches)
        if self.last_confirmed_monotonic is not None:
            gauges["seconds_since_confirmation"] = time.monotonic() - self.last_confirmed_monotonic
        return ComponentStatus(
            name=self.name,
            kind="sink",
            state=self.state,
            healthy=self.healthy,
            detail=self.detail,
            progress=self.progress,
            counters={
                "samples_published_total": float(self.samples_published_total),
                "batches_confirmed_total": float(self.batches_confirmed_total),
                "publish_errors_total": float(self.publish_errors_total),
                "retries_total": float(self.retries_total),
                "quarantined_samples_total": float(self.quarantined_samples_total),
                "samples_suppressed_total": float(self.samples_suppressed_total),
            },
            gauges=gauges,
        )


class OutboxStatus:
    """The outbox's StatusProvider. A full-disk alarm is unhealthy; a cap drop is not."""

    def __init__(self, state: OutboxState, name: str = "outbox") -> None:
        self._state = state
        self.name = name

    def status(self) -> ComponentStatus:
        s = self._state
        oldest = (time.time_ns() - s.oldest_created_ns) / 1e9 if s.oldest_created_ns else 0.0
        return ComponentStatus(
            name=self.name,
            kind="outbox",
            state="disk_alarm" if s.disk_alarm else "running",
            healthy=not s.disk_alarm,
            detail=s.disk_alarm_reason,
            watched=False,
            counters={
                "appended_samples_total": float(s.appended_samples),
                "dropped_samples_total": float(s.dropped_samples_cap + s.dropped_samples_memory),
                "dropped_samples_cap_total": float(s.dropped_samples_cap),
                "dropped_samples_memory_total": float(s.dropped_samples_memory),
                "quarantined_samples_total": float(s.quarantined),
                "commits_total": float(s.commits),
            },
            gauges={
                "depth_samples": float(s.samples + s.memory_buffered_samples),
                "depth_batches": float(s.batches),
                "bytes": float(s.bytes),
                "max_bytes": float(s.max_bytes),
                "memory_buffered_samples": float(s.memory_buffered_samples),
                "oldest_age_seconds": max(0.0, oldest),
            },
        )
