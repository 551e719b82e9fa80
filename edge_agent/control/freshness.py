"""Is the agent fit to write? Judged from the TagStore, the one place every reading lands.

Acquisition is healthy when every enabled source has delivered a Good sample recently: a lost
connection turns a source's tags Bad within one interval, and a hung acquisition stops refreshing
them, and both must stop the control path. The advisor is healthy when each recommendation the
allowlist follows has been refreshed recently (a `hold` is a live advisor; a silent one is not).
"""

from __future__ import annotations

from collections.abc import Callable

from edge_agent.config import AgentConfig
from edge_agent.contracts.samples import now_ns
from edge_agent.control.guard import HealthCheck
from edge_agent.tagstore import TagStore

_NS = 1_000_000_000
Clock = Callable[[], int]


def acquisition_health(cfg: AgentConfig, store: TagStore, clock: Clock = now_ns) -> HealthCheck:
    sources = [
        (s.name, [t.id for t in s.tag], _window_ns(s.poll_interval_s, s.timeout_s))
        for s in cfg.source
        if s.enabled and s.tag
    ]

    def check() -> str | None:
        now = clock()
        for name, tags, window in sources:
            newest = max(
                (
                    sample.acq_ns
                    for sample in map(store.get, tags)
                    if sample is not None and sample.good
                ),
                default=None,
            )
            if newest is None:
                return f"source {name} has delivered no Good sample"
            if now - newest > window:
                return f"source {name}: no Good sample for {(now - newest) / _NS:.1f} s"
        return None

    return check


def advisor_health(cfg: AgentConfig, store: TagStore, clock: Clock = now_ns) -> HealthCheck:
    tags = [a.recommendation for a in cfg.control.allow if a.recommendation is not None]
    window = _window_ns(cfg.kpi.interval_s, cfg.kpi.interval_s)

    def check() -> str | None:
        now = clock()
        for tag in tags:
            sample = store.get(tag)
            if sample is None:
                return f"advisor has not published {tag}"
            if now - sample.acq_ns > window:
                return f"advisor: {tag} not refreshed for {(now - sample.acq_ns) / _NS:.1f} s"
        return None

    return check


def all_of(*checks: HealthCheck) -> HealthCheck:
    def check() -> str | None:
        for one in checks:
            problem = one()
            if problem is not None:
                return problem
        return None

    return check


def _window_ns(interval_s: float, timeout_s: float) -> int:
    """Three missed cycles, or one cycle plus its timeout, whichever is longer."""
    return int(max(3 * interval_s, interval_s + timeout_s) * _NS)
