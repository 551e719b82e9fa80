"""The recycled-feed ratio step: `kpi.recycled_ratio.*` now, per calendar window, on the mass and
the copper basis, against the year's target (docs/process-model.md, "Derived tags")."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import structlog

from edge_agent.config import RecycledRatioConfig
from edge_agent.contracts.samples import Quality
from edge_agent.kpi.recycled_ratio import RatioTracker, Stream, ratio_pct, target_pct
from edge_agent.kpi.tick import Judged, Step, TagFacts, Tick
from edge_agent.kpi.units import tonnes_factor, tph_factor
from edge_agent.kpi.windows import NS, WINDOWS, Calendar

log = structlog.get_logger(__name__)


class RecycledRatioStep(Step):
    """Publishes the ratio; leaves the furnace's total dry input rate (t/h) on the tick."""

    def __init__(
        self, rr: RecycledRatioConfig, facts: TagFacts, calendar: Calendar, now: int
    ) -> None:
        self.rr = rr
        self.facts = facts
        self.calendar = calendar
        self.streams = [Stream(s.name, s.role, s.cu_fraction) for s in rr.stream]
        self.ratio = RatioTracker(self.streams, calendar, rr.max_gap_s, now)
        self.basis = "dry mass; " + "; ".join(
            f"{role}: " + ", ".join(s.name for s in rr.stream if s.role == role)
            for role in ("primary", "recycled", "excluded")
        )

    def state(self) -> dict[str, Any]:
        return {"ratio": self.ratio.to_json()}

    def restore(self, data: dict[str, Any], now: int) -> None:
        if data.get("ratio"):
            self.ratio.restore(data["ratio"], now)

    def run(self, tick: Tick) -> None:
        judged = Judged()
        rates = self._rates(tick, judged)
        self._totals(tick)
        self._roll(tick.now)
        tick.emit("kpi.recycled_ratio.now", ratio_pct(rates, self.streams, "mass"), judged)
        tick.good("kpi.recycled_ratio.basis", self.basis)
        fiscal = self._windows(tick)
        target = target_pct(
            self.rr.targets, datetime.fromtimestamp(tick.now / NS, self.calendar.tz)
        )
        tick.good("kpi.recycled_ratio.target", target)
        tick.emit("kpi.recycled_ratio.gap", None if fiscal is None else target - fiscal)
        if judged.quality is not Quality.BAD:
            tick.input_tph = sum(
                rates.get(s.name, 0.0) for s in self.streams if s.role != "excluded"
            )

    def _rates(self, tick: Tick, judged: Judged) -> dict[str, float]:
        """Each stream's rate in t/h where it has a value; excluded streams do not judge."""
        rates: dict[str, float] = {}
        for s in self.rr.stream:
            if s.role != "excluded":
                sample = self.facts.judge(judged, s.rate_tag, tick.snap, tick.now)
            else:
                sample = tick.snap.get(s.rate_tag)
            if (
                sample is not None
                and sample.value is not None
                and sample.quality is not Quality.BAD
            ):
                factor = tph_factor(self.facts.unit(s.rate_tag, "t/h"))
                rates[s.name] = float(sample.value) * factor
        return rates

    def _totals(self, tick: Tick) -> None:
        """Feed the totalisers' Good readings to the windows (dry tonnes)."""
        for s in self.rr.stream:
            if s.total_tag is None:
                continue
            tot = tick.snap.get(s.total_tag)
            if tot is not None and tot.good and tot.value is not None:
                factor = tonnes_factor(self.facts.unit(s.total_tag, "t"))
                event = self.ratio.ingest(s.name, float(tot.value) * factor, tot.ts_ns)
                if event == "reset":
                    log.warning("totaliser_reset", stream=s.name, tag=s.total_tag)
                elif event == "gap":
                    log.warning("totaliser_gap", stream=s.name, tag=s.total_tag)

    def _roll(self, now: int) -> None:
        self.ratio.roll(now)
        for w in self.ratio.windows.closed:
            log.info(
                "ratio_window_closed",
                window=w.kind,
                start_ns=w.start_ns,
                ratio_pct=ratio_pct(w.sums, self.streams, "mass"),
            )
        self.ratio.windows.closed.clear()

    def _windows(self, tick: Tick) -> float | None:
        """Every window's ratio with its coverage; returns the fiscal year's (mass basis)."""
        rr, fiscal = self.rr, None
        for kind in WINDOWS:
            for basis, prefix in (
                ("mass", "kpi.recycled_ratio."),
                ("cu", "kpi.recycled_ratio.cu."),
            ):
                if basis == "cu" and not rr.cu_basis:
                    continue
                value, coverage = self.ratio.window(kind, tick.now, basis)  # type: ignore[arg-type]
                j = Judged()
                if coverage < rr.min_coverage:
                    j.doubt(f"coverage {coverage:.2f} < {rr.min_coverage:.2f}")
                tick.emit(prefix + kind, value, j)
                if basis == "mass":
                    w = self.ratio.windows.current[kind]
                    tick.good(f"kpi.recycled_ratio.{kind}_coverage", coverage)
                    tick.good(f"kpi.recycled_ratio.{kind}_gaps", w.gaps)
                    tick.good(f"kpi.recycled_ratio.{kind}_resets", w.resets)
                    if kind == "fiscal_year":
                        fiscal = value
        return fiscal


def check_units(rr: RecycledRatioConfig, facts: TagFacts) -> None:
    """Fail at start, naming the key, if a stream's rate or total has a unit we cannot convert."""
    for i, st in enumerate(rr.stream):
        facts.check_unit(f"kpi.recycled_ratio.stream.{i}.rate_tag", st.rate_tag, "t/h")
        if st.total_tag:
            key = f"kpi.recycled_ratio.stream.{i}.total_tag"
            facts.check_unit(key, st.total_tag, "t", tonnes_factor)
