"""The KPI engine: every `kpi.interval_s` it reads the TagStore, runs the configured steps in a
worker thread and publishes their samples as `kpi.*` on the SampleBus, like any acquired tag.

The engine only orchestrates: each family of KPIs is a `kpi.tick.Step` in `kpi/steps/` with one
signature, `run(tick)`; the engine builds the tick, runs the steps in order, persists what they
hold between runs and restores it after a restart. Derived tags (units in docs/process-model.md,
"Derived tags"):

- recycled ratio (steps/recycled_ratio.py): `kpi.recycled_ratio.now`,
  `kpi.recycled_ratio.{hour,shift,day,month,fiscal_year}` (%), `..._coverage` (0..1), `..._gaps`,
  `..._resets`, `kpi.recycled_ratio.cu.<window>` on the copper basis, `kpi.recycled_ratio.target`,
  `kpi.recycled_ratio.gap` (target − fiscal year, pp), `kpi.recycled_ratio.basis` (text);
- heat balance (steps/heat_balance.py): `kpi.heat_margin_mw`,
  `kpi.heat.{reaction,matte,slag,offgas,dust,loss}_mw`, `kpi.heat.o2_demand_nm3h`,
  `kpi.heat.flux_demand_tph`, `kpi.heat.{matte,slag}_tph`, `kpi.heat.offgas_nm3h`,
  `kpi.heat.cu_to_matte_tph`, `kpi.heat.matte_grade_pct`, `kpi.heat.unexplained_mw`,
  `kpi.heat_margin_calibrated_mw`;
- advisor (steps/advisor.py): `kpi.advisor.{validity,reason,policy}`, `kpi.advisor.<setpoint>`
  (e.g. `kpi.advisor.escrap_feed_sp`), `kpi.advisor.<stream>_absorbable_tph`,
  `kpi.advisor.<stream>_heat_demand_gj_t`;
- CO2 (steps/co2.py): `kpi.co2.tph`, `kpi.co2.<source>_tph`, `kpi.co2.<window>_t`,
  `kpi.co2.per_t_input`, `kpi.co2.per_t_cu`, `kpi.co2.<window>_per_t_input`,
  `kpi.co2.<window>_per_t_cu`.

Quality follows the inputs: a Bad or missing input makes the KPIs that need it Bad (with the
input named in `reason`); an Uncertain or stale one makes them Uncertain.
"""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from edge_agent.config import AgentConfig
from edge_agent.contracts.samples import Sample, now_ns
from edge_agent.contracts.status import StatusRegistry
from edge_agent.kpi.advisor_status import AdvisorHealth
from edge_agent.kpi.state import load_json, save_json
from edge_agent.kpi.steps import heat_balance, recycled_ratio
from edge_agent.kpi.steps.advisor import AdvisorStep
from edge_agent.kpi.steps.co2 import Co2Step
from edge_agent.kpi.steps.heat_balance import HeatBalanceStep
from edge_agent.kpi.steps.recycled_ratio import RecycledRatioStep
from edge_agent.kpi.tick import Step, TagFacts, Tick
from edge_agent.kpi.windows import Calendar
from edge_agent.pipeline import SampleBus
from edge_agent.supervisor import Service
from edge_agent.tagstore import TagStore

log = structlog.get_logger(__name__)

STATE_FILE = "kpi_windows.json"
SAVE_EVERY_S = 30.0


def calendar(cfg: AgentConfig) -> Calendar:
    """The plant's calendar: shifts and fiscal year from the recycled-ratio section if any."""
    zone = ZoneInfo(cfg.agent.timezone)
    rr = cfg.kpi.recycled_ratio
    if rr is None:
        return Calendar(zone)
    shifts = tuple(datetime.strptime(s, "%H:%M").time() for s in rr.shifts)
    return Calendar(zone, shifts, rr.fiscal_year_start_month)


def build_steps(cfg: AgentConfig, now: int) -> list[Step]:
    """The enabled steps in the order they feed each other: ratio, heat, advisor, CO2.

    The units of a section's mass and flow tags are checked even where the section is disabled,
    so that enabling it later cannot fail on a unit the start accepted.
    """
    facts, cal, kpi = TagFacts.of(cfg), calendar(cfg), cfg.kpi
    if kpi.recycled_ratio is not None:
        recycled_ratio.check_units(kpi.recycled_ratio, facts)
    if kpi.heat_balance is not None:
        heat_balance.check_units(kpi.heat_balance, facts)
    steps: list[Step] = []
    if kpi.recycled_ratio is not None and kpi.recycled_ratio.enabled:
        steps.append(RecycledRatioStep(kpi.recycled_ratio, facts, cal, now))
    if kpi.heat_balance is not None and kpi.heat_balance.enabled:
        heat = HeatBalanceStep(cfg, facts)
        steps.append(heat)
        if kpi.advisor is not None and kpi.advisor.enabled:
            steps.append(AdvisorStep(cfg, facts, heat.model))
    if kpi.co2 is not None and kpi.co2.enabled:
        steps.append(Co2Step(kpi.co2, facts, cal, kpi.interval_s, now))
    return steps


class KpiEngine:
    """Runs the steps and keeps their state between runs; `compute` is synchronous (a thread)."""

    def __init__(self, cfg: AgentConfig, store: TagStore, bus: SampleBus) -> None:
        self.cfg = cfg
        self.store = store
        self.bus = bus
        self.state_path = Path(cfg.agent.state_dir) / STATE_FILE
        self.steps = build_steps(cfg, now_ns())
        # What the state file holds for a disabled step: the windows of a disabled ratio or CO2
        # are dropped; a calibration learnt before the heat balance was disabled is kept.
        self._absent: dict[str, Any] = {"ratio": None, "co2": None, "unexplained_mw": 0.0}
        self._last_tick: int | None = None
        self._last_save = 0.0
        self._restored = False
        self._lock = threading.Lock()  # compute and save run in worker threads

    # -- state -------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        data = {**self._absent, "last_tick": self._last_tick}
        for step in self.steps:
            data.update(step.state())
        return data

    def restore(self, data: dict[str, Any], now: int) -> None:
        for step in self.steps:
            step.restore(data, now)
        if isinstance(data.get("unexplained_mw"), (int, float)):
            self._absent["unexplained_mw"] = float(data["unexplained_mw"])
        if data.get("last_tick") is not None:
            self._last_tick = int(data["last_tick"])

    # -- computing ---------------------------------------------------------------------------

    def compute(self, snap: dict[str, Sample], now: int) -> list[Sample]:
        """All KPI samples for this instant. Blocking maths: call from a worker thread."""
        with self._lock:
            tick = Tick(snap, now, self._last_tick)
            for step in self.steps:
                step.run(tick)
            self._last_tick = now
            return tick.out

    def save(self) -> None:
        """Persist the steps' state (blocking; waits for a computation in progress)."""
        with self._lock:
            data = self.state()
        save_json(self.state_path, data)

    # -- running -----------------------------------------------------------------------------

    async def run(self) -> None:
        if not self._restored:  # once per process: a supervised restart keeps memory state
            data = await asyncio.to_thread(load_json, self.state_path)
            if data is not None:
                self.restore(data, now_ns())
                log.info("kpi_state_restored", path=str(self.state_path))
            self._restored = True
        try:
            while True:
                started = time.monotonic()
                snap = self.store.snapshot()
                samples = await asyncio.to_thread(self.compute, snap, now_ns())
                await self.bus.publish(samples)
                if started - self._last_save >= SAVE_EVERY_S:
                    await asyncio.to_thread(self.save)
                    self._last_save = started
                elapsed = time.monotonic() - started
                await asyncio.sleep(max(0.0, self.cfg.kpi.interval_s - elapsed))
        finally:
            await asyncio.shield(asyncio.to_thread(self.save))


def build_services(
    cfg: AgentConfig, store: TagStore, bus: SampleBus, board: StatusRegistry | None = None
) -> list[Service]:
    """The KPI engine as one supervised service (none when no KPI is configured); with a
    `board`, the advisor's verdict goes on it when the advisor is configured."""
    if not cfg.kpi.sections():
        return []
    if board is not None and cfg.kpi.advisor is not None:
        board.add(AdvisorHealth(store))
    engine = KpiEngine(cfg, store, bus)
    return [Service("kpi", engine.run)]
