"""The status board: every component's status providers, read by health, metrics and the views.

Components add their own providers when they are built (the board is their `StatusRegistry`);
nothing else registers on their behalf. The board reads them on demand, so the one place that
counts is the component's own loop. It also feeds the systemd watchdog (`probes()`) and the
one-line STATUS= summary.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from edge_agent.contracts.samples import Quality
from edge_agent.contracts.status import ComponentStatus, StatusProvider
from edge_agent.sdnotify import ProgressProbe
from edge_agent.tagstore import TagStore

log = structlog.get_logger(__name__)


class StatusBoard:
    """The registry of providers that health, metrics, the watchdog and the demo view read."""

    def __init__(self, store: TagStore | None = None) -> None:
        self.store = store
        self._providers: list[StatusProvider] = []
        self._read_rate = _Rate()

    def add(self, provider: StatusProvider) -> None:
        self._providers.append(provider)

    def clear(self) -> None:
        """Forget every provider (a reload rebuilds the components, which add themselves anew)."""
        self._providers.clear()

    def statuses(self) -> list[ComponentStatus]:
        return [s for _, s in self._statuses()]

    def _statuses(self) -> list[tuple[StatusProvider, ComponentStatus]]:
        out: list[tuple[StatusProvider, ComponentStatus]] = []
        for provider in list(self._providers):
            try:
                out.append((provider, provider.status()))
            except Exception as exc:  # a broken provider must not take /healthz down
                log.warning("status_provider_failed", provider=repr(provider), error=repr(exc))
        return out

    def healthy(self) -> bool:
        return all(s.healthy for s in self.statuses())

    def probes(self) -> list[ProgressProbe]:
        """Watchdog probes: acquisition per source and delivery per sink. Each reads its own
        provider (a source's status looks at each of its tags: reading every provider for every
        probe cost sources × tags per watchdog round)."""
        probes: list[ProgressProbe] = []
        for provider, s in self._statuses():
            if s.watched and s.kind in ("source", "sink"):
                probes.append(ProgressProbe(f"{s.kind}:{s.name}", _progress_reader(provider)))
        return probes

    def summary(self) -> str:
        """The one-line STATUS= text: tags Good, samples per second (read), outbox depth."""
        statuses = self.statuses()
        parts: list[str] = []
        if self.store is not None:
            snapshot = self.store.snapshot()
            good = sum(1 for s in snapshot.values() if s.quality is Quality.GOOD)
            parts.append(f"{good}/{len(snapshot)} tags good")
        read = sum(
            s.counters.get("samples_read_total", 0.0) for s in statuses if s.kind == "source"
        )
        parts.append(f"{self._read_rate.update(read):.0f} samples/s")
        depth = sum(s.gauges.get("depth_samples", 0.0) for s in statuses if s.kind == "outbox")
        parts.append(f"outbox {depth:.0f}")
        down = [_down(s) for s in statuses if not s.healthy]
        if down:
            parts.append("; ".join(down))
        return ", ".join(parts)


def _down(s: ComponentStatus) -> str:
    """`sink influx starting` or, with its last error, `service sink:mqtt restarting: …`."""
    text = f"{s.kind} {s.name} {s.state}"
    return f"{text}: {s.detail[:120]}" if s.detail else text


class _Rate:
    """Per-second rate of a growing total, over at least one second between updates."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last: tuple[float, float] | None = None
        self._value = 0.0

    def update(self, total: float) -> float:
        now = self._clock()
        if self._last is None:
            self._last = (now, total)
        elif now - self._last[0] >= 1.0:
            self._value = max(0.0, total - self._last[1]) / (now - self._last[0])
            self._last = (now, total)
        return self._value


def _progress_reader(provider: StatusProvider) -> Callable[[], int]:
    def read() -> int:
        try:
            return provider.status().progress
        except Exception:  # logged by the board's own reads; for the watchdog: no progress
            return -1

    return read
