"""The CO2 step: `kpi.co2.*`, the emission rate by source, per tonne of input and of copper, and
its totals per calendar window."""

from __future__ import annotations

from typing import Any

from edge_agent.config import Co2Config
from edge_agent.contracts.samples import Quality
from edge_agent.kpi.co2 import Co2Rate, co2_rate, fuel_factor
from edge_agent.kpi.tick import Judged, Step, TagFacts, Tick
from edge_agent.kpi.units import tph_factor
from edge_agent.kpi.windows import NS, WINDOWS, Calendar, WindowSet

# Integrate only over a gap of at most this many KPI intervals (a longer pause is not guessed).
MAX_GAP_INTERVALS = 5


class Co2Step(Step):
    """Runs last: per tonne of input needs the ratio step's input rate, per tonne of copper the
    heat balance's copper to matte."""

    def __init__(
        self, co2: Co2Config, facts: TagFacts, calendar: Calendar, interval_s: float, now: int
    ) -> None:
        self.co2 = co2
        self.facts = facts
        self.max_gap_ns = MAX_GAP_INTERVALS * interval_s * NS
        self.factors = [
            fuel_factor(f.name, facts.units.get(f.tag, ""), f.t_co2_per_t, f.kg_co2_per_nm3)
            for f in co2.fuel
        ]
        self.windows = WindowSet(calendar, now)

    def state(self) -> dict[str, Any]:
        return {"co2": self.windows.to_json()}

    def restore(self, data: dict[str, Any], now: int) -> None:
        if data.get("co2"):
            self.windows.restore(data["co2"], now)

    def run(self, tick: Tick) -> None:
        judged = Judged()
        rate = self._rate(tick, judged)
        bad = judged.quality is Quality.BAD
        input_tph = tick.input_tph
        cu_tph = tick.heat.balance.cu_to_matte_tph if tick.heat and tick.heat.balance else None
        tick.emit("kpi.co2.tph", None if bad else rate.total_tph, judged)
        for name, tph in rate.by_source_tph.items():
            tick.emit(f"kpi.co2.{name}_tph", None if bad else tph, judged)
        per_input = None if bad or not input_tph else rate.total_tph / input_tph
        tick.emit("kpi.co2.per_t_input", per_input, judged)
        tick.emit(
            "kpi.co2.per_t_cu", None if bad or not cu_tph else rate.total_tph / cu_tph, judged
        )
        if not bad:
            self._integrate(tick, rate.total_tph, input_tph, cu_tph)
        self._windows(tick)

    def _rate(self, tick: Tick, judged: Judged) -> Co2Rate:
        """The emission rate from the fuel flows (a fuel without a value counts as none) and the
        kiln's burn-off of organics (feed minus residue)."""
        co2 = self.co2
        flows: dict[str, float] = {}
        for f in co2.fuel:
            sample = self.facts.judge(judged, f.tag, tick.snap, tick.now)
            flows[f.name] = float(sample.value) if sample and sample.value is not None else 0.0
        kiln: list[float | None] = [None, None]
        if co2.kiln_feed_tag and co2.kiln_residue_tag:
            for i, tag in enumerate((co2.kiln_feed_tag, co2.kiln_residue_tag)):
                sample = self.facts.judge(judged, tag, tick.snap, tick.now)
                if sample is not None and sample.value is not None:
                    kiln[i] = float(sample.value) * tph_factor(self.facts.unit(tag, "t/h"))
        return co2_rate(
            flows, self.factors, kiln[0], kiln[1], co2.burnoff_carbon, co2.kiln_feed_moisture
        )

    def _integrate(
        self, tick: Tick, co2_tph: float, input_tph: float | None, cu_tph: float | None
    ) -> None:
        """Add the tonnes since the previous computation (skipped after a long pause)."""
        last, now = tick.last, tick.now
        if last is None or not 0 < now - last <= self.max_gap_ns:
            return
        hours = (now - last) / NS / 3600
        self.windows.add("co2", last, now, co2_tph * hours)
        if input_tph:
            self.windows.add("input", last, now, input_tph * hours)
        if cu_tph:
            self.windows.add("cu", last, now, cu_tph * hours)

    def _windows(self, tick: Tick) -> None:
        self.windows.roll(tick.now)
        self.windows.closed.clear()
        for kind in WINDOWS:
            w = self.windows.current[kind]
            cov = w.coverage("co2", tick.now)
            j = Judged()
            if cov < 0.9:
                j.doubt(f"coverage {cov:.2f}")
            total = w.sums.get("co2", 0.0)
            tick.emit(f"kpi.co2.{kind}_t", total, j)
            inp, cu = w.sums.get("input", 0.0), w.sums.get("cu", 0.0)
            tick.emit(f"kpi.co2.{kind}_per_t_input", total / inp if inp > 0 else None, j)
            tick.emit(f"kpi.co2.{kind}_per_t_cu", total / cu if cu > 0 else None, j)
