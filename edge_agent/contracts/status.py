"""How a component says how it is doing: the vocabulary of health, metrics and the watchdog.

Every source, sink, the outbox, the KPI engine and the control path own a small state object that
satisfies `StatusProvider`: `status()` returns a `ComponentStatus` snapshot. Each component adds
its providers to the `StatusRegistry` it is given when it is built; the health endpoint, the
metrics, the watchdog and the live views only read them. Nothing here knows HTTP or Prometheus.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

Kind = Literal["source", "sink", "outbox", "kpi", "control", "service", "alarms", "worker"]

# Read latencies of OPC UA and Modbus requests: milliseconds on a LAN, seconds when a device
# struggles, the timeout at worst.
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class LatencyHistogram:
    """A cumulative histogram a loop can `observe()` into without touching prometheus-client."""

    def __init__(self, buckets: Sequence[float] = LATENCY_BUCKETS_S) -> None:
        self.buckets = tuple(sorted(buckets))
        self._counts = [0] * (len(self.buckets) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self._counts[bisect.bisect_left(self.buckets, seconds)] += 1
        self.sum += seconds

    @property
    def count(self) -> int:
        return sum(self._counts)

    def snapshot(self) -> tuple[tuple[int, ...], float]:
        """(per-bucket counts, sum): what an acquisition worker sends its main process."""
        return tuple(self._counts), self.sum

    def restore(self, counts: Sequence[int], total: float) -> None:
        """Take over a `snapshot` (the main process's mirror of a worker's histogram)."""
        if len(counts) != len(self._counts):
            raise ValueError(f"{len(counts)} bucket counts for {len(self._counts)} buckets")
        self._counts = [int(n) for n in counts]
        self.sum = total

    def cumulative(self) -> list[tuple[str, float]]:
        """(upper bound, cumulative count) pairs ending in +Inf, as Prometheus wants them."""
        out: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip((*map(repr, self.buckets), "+Inf"), self._counts, strict=True):
            running += n
            out.append((bound, float(running)))
        return out


@dataclass(frozen=True)
class ComponentStatus:
    """One component's state at one instant.

    `state` is a word an operator reads ("connected", "connecting", "disconnected", "running",
    "stopped", "failed"); `healthy` is the verdict `/healthz` uses. `progress` advances once per
    completed loop cycle (the watchdog's evidence of life; `watched=False` exempts a component).
    """

    name: str
    kind: Kind
    state: str
    healthy: bool
    detail: str = ""
    progress: int = 0
    watched: bool = True
    counters: Mapping[str, float] = field(default_factory=dict)
    gauges: Mapping[str, float] = field(default_factory=dict)
    histograms: Mapping[str, LatencyHistogram] = field(default_factory=dict)

    def as_json(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "state": self.state,
            "healthy": self.healthy,
            **({"detail": self.detail} if self.detail else {}),
            **dict(self.counters),
            **dict(self.gauges),
        }


class StatusProvider(Protocol):
    """Anything that can say how it is doing."""

    def status(self) -> ComponentStatus: ...


class StatusRegistry(Protocol):
    """Where a component puts its providers when it is built (the runtime's status board)."""

    def add(self, provider: StatusProvider) -> None: ...


@dataclass
class SourceStats:
    """One acquisition loop's state and counters, kept by the loop, read through its status."""

    source: str
    protocol: str
    tags: int
    connected: bool = False
    reads: int = 0
    samples: int = 0
    overruns: int = 0
    connects: int = 0
    connection_losses: int = 0
    read_seconds_total: float = 0.0
    last_read_s: float = 0.0
    last_error: str | None = None
    read_latency: LatencyHistogram = field(default_factory=LatencyHistogram)
