"""The outbox's live counters, read on the loop (status, /metrics) and written by its worker."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class OutboxState:
    """Live counters for /metrics and /healthz (read on the loop, written by the worker)."""

    batches: int = 0
    samples: int = 0
    bytes: int = 0
    max_bytes: int = 0
    appended_samples: int = 0
    dropped_samples_cap: int = 0
    dropped_samples_memory: int = 0
    disk_alarm: bool = False
    disk_alarm_reason: str = ""
    memory_buffered_samples: int = 0
    quarantined: int = 0
    commits: int = 0
    head_id: int = 0
    oldest_created_ns: int = 0
    acked: dict[str, int] = field(default_factory=dict)
