"""The alarm engine as the running agent has it: fed by the sample bus, ticking, persisted.

- Samples: a tap on the `SampleBus` evaluates every published batch on the spot (the index makes
  that a dict look-up per sample; a source with none of the watched tags skips the tap) and the
  events it causes are written to the outbox in the same batch, right behind the samples that
  caused them.
- The clock: the `alarms` service ticks every `alarms.tick_s` for what time alone decides
  (delays, stale tags, shelves expiring) and publishes those events as records.
- Operator actions (`act`) come from the command service and are published the same way.
- State: saved atomically in `agent.state_dir` (`alarms.state_file`) within a tick of any change
  and on stop, restored quietly on start (docs/alarms.md, "Restarts").

The tap never raises into the publisher: a failure is logged once (then counted) and the
samples are written regardless, because acquisition must not depend on the alarms.
"""

from __future__ import annotations

import asyncio
import difflib
import json
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import structlog

from edge_agent.alarms import external
from edge_agent.alarms.evaluator import AlarmSet, LatestValues
from edge_agent.alarms.model import (
    AlarmDefinition,
    AlarmEvent,
    Kind,
    Priority,
    State,
    Suppression,
    Transition,
)
from edge_agent.alarms.performance import PerformanceTracker
from edge_agent.alarms.records import to_sample
from edge_agent.config import AgentConfig
from edge_agent.config.alarms import AlarmConfig
from edge_agent.contracts.samples import Sample, now_ns
from edge_agent.contracts.status import ComponentStatus
from edge_agent.pipeline import SampleBus
from edge_agent.state_files import write_atomic
from edge_agent.status_board import StatusBoard
from edge_agent.supervisor import STOP_KPI, Service

log = structlog.get_logger("edge_agent.alarms")

STATE_VERSION = 1
HISTORY = 500  # the latest events, for the web view's list (InfluxDB keeps them all)
Action = Literal["ack", "shelve", "unshelve", "out_of_service", "in_service"]


def definition(a: AlarmConfig, unit: str | None = None) -> AlarmDefinition:
    return AlarmDefinition(
        id=a.id,
        tag=a.tag,
        kind=Kind(a.kind),
        priority=Priority(a.priority_level),
        message=a.message,
        limit=a.limit,
        deadband=a.deadband,
        on_delay_s=a.on_delay_s,
        off_delay_s=a.off_delay_s,
        reference=a.reference,
        state=a.state,
        suppress_when=tuple(
            Suppression(s.tag, s.equals, s.below, s.above) for s in a.suppress_when
        ),
        unit=unit or None,
    )


def unknown_kpi_tags(cfg: AgentConfig, kpis: set[str]) -> list[str]:
    """Alarm keys naming a `kpi.*` tag that the KPI engine does not compute for this file.

    The config layer checks only the KPI family (it cannot import the engine's catalogue);
    the runtime passes the exact list (`kpi_tags(cfg)`) before anything starts."""
    problems: list[str] = []
    for i, a in enumerate(cfg.alarm):
        keys = [("tag", a.tag), ("reference", a.reference)]
        keys += [(f"suppress_when[{j}].tag", s.tag) for j, s in enumerate(a.suppress_when)]
        for key, tag in keys:
            if tag is None or not tag.startswith("kpi.") or tag in kpis:
                continue
            near = difflib.get_close_matches(tag, sorted(kpis), n=3)
            hint = f"; did you mean {', '.join(near)}?" if near else ""
            problems.append(
                f"alarm[{i}] ({a.id}).{key}: {tag!r} is not a KPI this configuration computes{hint}"
            )
    return problems


def definitions(cfg: AgentConfig) -> list[AlarmDefinition]:
    tags = cfg.tags()
    return [
        definition(a, tags[a.tag].unit if a.tag in tags else None) for a in cfg.alarm if a.enabled
    ]


class AlarmEngine:
    def __init__(
        self,
        cfg: AgentConfig,
        latest: LatestValues,
        bus: SampleBus,
        defs: Sequence[AlarmDefinition] | None = None,
        clock: Callable[[], int] = now_ns,
    ) -> None:
        self.settings = cfg.alarms
        self.bus = bus
        self.clock = clock
        self.state_path = Path(cfg.agent.state_dir) / self.settings.state_file
        self.alarms = AlarmSet(defs if defs is not None else definitions(cfg), latest, clock())
        self.performance = PerformanceTracker()
        self.events_total = 0
        self.tap_failures = 0
        self.progress = 0
        self.history: deque[AlarmEvent] = deque(maxlen=HISTORY)
        self.commands: Any = None  # the MQTT command service, when one runs (commands.py)
        self._dirty = False
        self._restore()
        self.external = external.build(cfg, self.alarms, self.publish)  # OPC UA conditions
        bus.add_tap(self.tap, self.alarms.watched_tags())

    # --------------------------------------------------------------------------- inputs

    def tap(self, samples: Sequence[Sample]) -> list[Sample]:
        try:
            return self._records(self.alarms.on_samples(samples))
        except Exception as exc:  # never into acquisition: see the module docstring
            self.tap_failures += 1
            if self.tap_failures == 1:
                log.exception("alarm_evaluation_failed", error=repr(exc))
            return []

    def tick(self) -> list[Sample]:
        now = self.clock()
        self.performance.expire(now)
        return self._records(self.alarms.tick(now))

    async def act(
        self,
        action: Action,
        alarm_id: str,
        operator: str,
        reason: str | None,
        duration_s: float | None = None,
        ts_ns: int | None = None,
    ) -> list[AlarmEvent]:
        """An operator action; raises `ActionRefused` (with why) when it does not apply."""
        ts = ts_ns if ts_ns is not None else self.clock()
        a = self.alarms
        server = self.external.owner(alarm_id)
        if action == "ack" and server is not None:  # the server's condition: its method first
            await server.acknowledge(a.status(alarm_id), operator, reason)
        if action == "ack":
            events = a.acknowledge(alarm_id, ts, operator, reason)
        elif action == "shelve":
            assert duration_s is not None
            assert reason is not None
            events = a.shelve(alarm_id, ts, duration_s, operator, reason)
        elif action == "unshelve":
            events = a.unshelve(alarm_id, ts, operator, reason)
        elif action == "out_of_service":
            assert reason is not None
            events = a.remove_from_service(alarm_id, ts, operator, reason)
        else:
            events = a.return_to_service(alarm_id, ts, operator, reason)
        await self.publish(events)
        return events

    async def publish(self, events: list[AlarmEvent]) -> None:
        """Events not caused by a sample (operator actions, servers' conditions) to the outbox."""
        await self.bus.record(self._records(events))

    def _records(self, events: list[AlarmEvent]) -> list[Sample]:
        if not events:
            return []
        self._dirty = True
        self.events_total += len(events)
        acq = self.clock()
        self.history.extend(events)
        for event in events:
            if event.transition is Transition.ACTIVATED:
                self.performance.activated(event.alarm_id, event.ts_ns)
            log.info(
                "alarm_" + event.transition.value,
                alarm=event.alarm_id,
                state=event.state.value,
                priority=event.priority.label,
                **({"operator": event.operator} if event.operator else {}),
            )
        return [to_sample(e, acq) for e in events]

    # ---------------------------------------------------------------------------- service

    async def run(self) -> None:
        try:
            while True:
                await asyncio.sleep(self.settings.tick_s)
                await self.bus.record(self.tick())
                if self._dirty:
                    await asyncio.to_thread(self._save, self.alarms.snapshot())
                self.progress += 1
        finally:
            if self._dirty:
                self._save(self.alarms.snapshot())

    def services(self) -> list[Service]:
        own = [Service("alarms", self.run, STOP_KPI)]
        return (
            [*own, *self.external.services()] if len(self.alarms) or self.external.sources else []
        )

    def _save(self, snapshot: dict[str, Any]) -> None:
        self._dirty = False
        data = {"version": STATE_VERSION, "saved_ns": self.clock(), "alarms": snapshot}
        write_atomic(self.state_path, json.dumps(data, separators=(",", ":")))

    def _restore(self) -> None:
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("alarm_state_unreadable", path=str(self.state_path), error=str(exc))
            return
        saved = data.get("alarms") if isinstance(data, dict) else None
        if not isinstance(saved, dict) or data.get("version") != STATE_VERSION:
            log.warning("alarm_state_unreadable", path=str(self.state_path), error="format")
            return
        skipped = self.alarms.restore(saved)
        counts = self.alarms.counts()
        log.info(
            "alarm_state_restored",
            active=counts[State.ACTIVE_UNACK] + counts[State.ACTIVE_ACK],
            shelved=counts[State.SHELVED],
            out_of_service=counts[State.OUT_OF_SERVICE],
            **({"started_normal": skipped} if skipped else {}),
        )

    # ----------------------------------------------------------------------------- health

    def status(self) -> ComponentStatus:
        counts = self.alarms.counts()
        now = self.clock()
        gauges: dict[str, float] = {f"{state.value}": float(n) for state, n in counts.items()}
        by_priority = dict.fromkeys(Priority, 0)
        for st in self.alarms.statuses():
            if st.active and not st.removed:
                by_priority[st.defn.priority] += 1
        gauges.update({f"active_{p.label}": float(n) for p, n in by_priority.items()})
        gauges.update(self.performance.figures(now, self.alarms.statuses()))
        return ComponentStatus(
            name="alarms",
            kind="alarms",
            state="running",
            healthy=self.tap_failures == 0,
            detail=f"{self.tap_failures} evaluation failures" if self.tap_failures else "",
            progress=self.progress,
            counters={
                "events_total": float(self.events_total),
                "activations_total": float(self.performance.activations_total),
                "evaluation_failures_total": float(self.tap_failures),
            },
            gauges=gauges,
        )


def build(
    cfg: AgentConfig, latest: LatestValues, bus: SampleBus, board: StatusBoard | None = None
) -> AlarmEngine | None:
    """The engine when any alarm is configured (None: nothing to do, no tap on the bus)."""
    if not any(a.enabled for a in cfg.alarm) and not external.condition_sources(cfg):
        return None
    engine = AlarmEngine(cfg, latest, bus)
    if board is not None:
        board.add(engine)
    return engine
