"""The heat-balance step: `kpi.heat_margin_mw`, `kpi.heat.*` and the on-site calibration
(`kpi.heat.unexplained_mw`, `kpi.heat_margin_calibrated_mw`); docs/process-model.md."""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import structlog

from edge_agent.config import AgentConfig, HeatBalanceConfig
from edge_agent.contracts.samples import Quality, Sample
from edge_agent.kpi.balance_inputs import (
    at_basis,
    furnace_model,
    heat_balance_tags,
    live_balance,
    operating_point,
)
from edge_agent.kpi.furnace import Balance, BalanceError, OperatingPoint
from edge_agent.kpi.heat_balance import solve
from edge_agent.kpi.tick import HeatResult, Judged, Step, TagFacts, Tick
from edge_agent.kpi.windows import NS

log = structlog.get_logger(__name__)


class HeatBalanceStep(Step):
    """Publishes the balance at the temperature basis; leaves it (and its operating point) on
    the tick for the advisor and CO2 steps."""

    def __init__(self, cfg: AgentConfig, facts: TagFacts) -> None:
        hb = cfg.kpi.heat_balance
        assert hb is not None
        self.hb = hb
        self.facts = facts
        self.model = furnace_model(hb)
        self.tags = heat_balance_tags(hb)
        self.calibration = Calibration(hb, cfg.kpi.advisor.running_tag if cfg.kpi.advisor else None)

    def state(self) -> dict[str, Any]:
        return {"unexplained_mw": self.calibration.unexplained_mw}

    def restore(self, data: dict[str, Any], now: int) -> None:
        if isinstance(data.get("unexplained_mw"), (int, float)):
            self.calibration.unexplained_mw = float(data["unexplained_mw"])

    def run(self, tick: Tick) -> None:
        judged = Judged()
        values: dict[str, float] = {}
        for tag in self.tags:
            sample = self.facts.judge(judged, tag, tick.snap, tick.now)
            if (
                sample is not None
                and sample.value is not None
                and sample.quality is not Quality.BAD
            ):
                values[tag] = float(sample.value)
        op, balance = self._solve(tick, values, judged)
        for tag, value in balance_values(balance).items():
            tick.emit(tag, value, judged)
        unexplained = self.calibration.unexplained_mw
        calibrated = None if balance is None else balance.margin_mw - unexplained
        tick.emit("kpi.heat.unexplained_mw", unexplained)
        tick.emit("kpi.heat_margin_calibrated_mw", calibrated, judged)
        tick.heat = HeatResult(op, balance, judged, unexplained)

    def _solve(
        self, tick: Tick, values: dict[str, float], judged: Judged
    ) -> tuple[OperatingPoint | None, Balance | None]:
        """The balance at the basis, after calibrating on the one at the measured temperatures.
        Nothing when an input is Bad; when the plant's state is impossible, `judged` turns Bad
        and says why (what was solved before the impossible part is kept)."""
        op: OperatingPoint | None = None
        balance: Balance | None = None
        if judged.quality is Quality.BAD:
            return op, balance
        try:
            point = operating_point(self.hb, values, self.facts.units)
            measured, _ = live_balance(self.model, self.hb, point)
            op, balance = live_balance(self.model, self.hb, at_basis(self.hb, measured))
            closing = solve(self.model, measured).margin_mw
            self.calibration.learn(tick.snap, tick.now, judged, closing)
        except BalanceError as exc:
            judged.quality = Quality.BAD
            judged.reasons.append(str(exc))
            log.warning("heat_balance_infeasible", error=str(exc))
        return op, balance


class Calibration:
    """What the balance at the measured temperatures leaves unexplained, learnt while steady.

    While the furnace runs steady (matte temperature within `calibration_band_k` over
    `calibration_window_s`), the margin at the measured temperatures should be zero; what is left
    is learnt as a first-order filter with `calibration_tau_s` (0 = off).
    """

    def __init__(self, hb: HeatBalanceConfig, running_tag: str | None) -> None:
        self.hb = hb
        self.running_tag = running_tag
        self.unexplained_mw = 0.0
        self._temps: deque[tuple[int, float]] = deque()
        self._last: int | None = None

    def learn(self, snap: dict[str, Sample], now: int, judged: Judged, closing_mw: float) -> None:
        hb = self.hb
        temp = snap.get(hb.matte_temp_tag)
        if temp is not None and temp.good and isinstance(temp.value, (int, float)):
            self._temps.append((now, float(temp.value)))
        window = int(hb.calibration_window_s * NS)
        while self._temps and self._temps[0][0] < now - window:
            self._temps.popleft()
        last, self._last = self._last, now
        if hb.calibration_tau_s <= 0 or judged.quality is not Quality.GOOD or last is None:
            return
        if not self._steady(snap, now, window):
            return
        alpha = 1.0 - math.exp(-(now - last) / NS / hb.calibration_tau_s)
        self.unexplained_mw += alpha * (closing_mw - self.unexplained_mw)

    def _steady(self, snap: dict[str, Sample], now: int, window: int) -> bool:
        running = snap.get(self.running_tag) if self.running_tag else None
        if running is not None and not (running.good and running.value):
            return False
        covered = bool(self._temps) and now - self._temps[0][0] >= 0.9 * window
        temps = [t for _, t in self._temps]
        return covered and max(temps) - min(temps) <= self.hb.calibration_band_k


def balance_values(b: Balance | None) -> dict[str, float | None]:
    """The balance's derived tags (None everywhere when there is no balance)."""

    def g(attr: str) -> float | None:
        return None if b is None else float(getattr(b, attr))

    grade = g("matte_grade")
    return {
        "kpi.heat_margin_mw": g("margin_mw"),
        "kpi.heat.reaction_mw": g("reaction_mw"),
        "kpi.heat.matte_mw": g("matte_heat_mw"),
        "kpi.heat.slag_mw": g("slag_heat_mw"),
        "kpi.heat.offgas_mw": g("offgas_heat_mw"),
        "kpi.heat.dust_mw": g("dust_heat_mw"),
        "kpi.heat.loss_mw": g("loss_mw"),
        "kpi.heat.o2_demand_nm3h": g("o2_demand_nm3h"),
        "kpi.heat.flux_demand_tph": g("flux_tph"),
        "kpi.heat.matte_tph": g("matte_tph"),
        "kpi.heat.slag_tph": g("slag_tph"),
        "kpi.heat.offgas_nm3h": g("offgas_nm3h"),
        "kpi.heat.cu_to_matte_tph": g("cu_to_matte_tph"),
        "kpi.heat.matte_grade_pct": None if grade is None else 100 * grade,
    }


def check_units(hb: HeatBalanceConfig, facts: TagFacts) -> None:
    """Fail at start, naming the key, if a feed or fuel tag has a unit we cannot convert."""
    facts.check_unit("kpi.heat_balance.conc_feed_tag", hb.conc_feed_tag, "t/h")
    facts.check_unit("kpi.heat_balance.fuel_flow_tag", hb.fuel_flow_tag, "kg/h")
    for i, r in enumerate(hb.recycled):
        facts.check_unit(f"kpi.heat_balance.recycled.{i}.rate_tag", r.rate_tag, "t/h")
