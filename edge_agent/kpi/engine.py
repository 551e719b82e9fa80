"""The KPI engine: every `kpi.interval_s` it reads the TagStore, computes the KPIs in a worker
thread and publishes them as `kpi.*` samples on the SampleBus, like any acquired tag.

Derived tags (units in docs/process-model.md, "Derived tags"):

- recycled ratio: `kpi.recycled_ratio.now`, `kpi.recycled_ratio.{hour,shift,day,month,fiscal_year}`
  (%), `..._coverage` (0..1), `..._gaps`, `..._resets`, `kpi.recycled_ratio.cu.<window>` on the
  copper basis, `kpi.recycled_ratio.target`, `kpi.recycled_ratio.gap` (target − fiscal year, pp),
  `kpi.recycled_ratio.basis` (text);
- heat balance: `kpi.heat_margin_mw`, `kpi.heat.{reaction,matte,slag,offgas,dust,loss}_mw`,
  `kpi.heat.o2_demand_nm3h`, `kpi.heat.flux_demand_tph`, `kpi.heat.{matte,slag}_tph`,
  `kpi.heat.offgas_nm3h`, `kpi.heat.cu_to_matte_tph`, `kpi.heat.matte_grade_pct`;
- advisor: `kpi.advisor.{validity,reason,policy}`, `kpi.advisor.<setpoint>` (e.g.
  `kpi.advisor.escrap_feed_sp`), `kpi.advisor.<stream>_absorbable_tph`,
  `kpi.advisor.<stream>_heat_demand_gj_t`;
- CO2: `kpi.co2.tph`, `kpi.co2.<source>_tph`, `kpi.co2.<window>_t`, `kpi.co2.per_t_input`,
  `kpi.co2.per_t_cu`, `kpi.co2.<window>_per_t_input`, `kpi.co2.<window>_per_t_cu`.

Quality follows the inputs: a Bad or missing input makes the KPIs that need it Bad (with the
input named in `reason`); an Uncertain or stale one makes them Uncertain.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from edge_agent.config import AgentConfig, HeatBalanceConfig, SensibleHeatConfig
from edge_agent.contracts.samples import Quality, Sample, Value, now_ns
from edge_agent.contracts.status import StatusRegistry
from edge_agent.kpi.advisor import Advice, AdvisorSettings, Limits, advise, hold_reasons
from edge_agent.kpi.advisor_status import AdvisorHealth
from edge_agent.kpi.co2 import FuelFactor, co2_rate, fuel_factor
from edge_agent.kpi.heat_balance import (
    NM3_PER_KMOL,
    O2_IN_AIR,
    Balance,
    BalanceError,
    Concentrate,
    FurnaceModel,
    OperatingPoint,
    Organics,
    RecycledMaterial,
    SensibleHeat,
    cooling_loss_mw,
    solve,
    solve_at_oxygen,
)
from edge_agent.kpi.recycled_ratio import RatioTracker, Stream, ratio_pct, target_pct
from edge_agent.kpi.state import load_json, save_json
from edge_agent.kpi.units import UnitError, tonnes_factor, tph_factor
from edge_agent.kpi.windows import NS, WINDOWS, Calendar, WindowSet
from edge_agent.pipeline import SampleBus
from edge_agent.supervisor import Service
from edge_agent.tagstore import TagStore

log = structlog.get_logger(__name__)

STATE_FILE = "kpi_windows.json"


# ------------------------------------------------------------------------ config -> model


def _sensible(c: SensibleHeatConfig) -> SensibleHeat:
    return SensibleHeat(c.at_ref, c.ref_c, c.per_k)


def furnace_model(hb: HeatBalanceConfig) -> FurnaceModel:
    """The heat balance's configuration as the model's dataclasses."""
    conc = hb.concentrate
    recycled = {
        r.name: RecycledMaterial(
            cu_metal=r.cu_metal,
            fe_metal=r.fe_metal,
            al_metal=r.al_metal,
            sio2=r.sio2,
            organics=r.organics,
            moisture=r.moisture,
            organic_matter=Organics(
                r.organic_matter.c,
                r.organic_matter.h,
                r.organic_matter.o,
                r.organic_matter.lhv_mj_per_kg,
            ),
        )
        for r in hb.recycled
    }
    defaults = FurnaceModel(Concentrate(0, 0, 0, 0, 0), {}, Organics(0, 0))
    gas = dict(defaults.gas_heat)
    gas.update({k: _sensible(v) for k, v in hb.gas_heat.items()})
    return FurnaceModel(
        concentrate=Concentrate(conc.cu, conc.fe, conc.s, conc.sio2, conc.other),
        recycled=recycled,
        fuel=Organics(hb.fuel.c, hb.fuel.h, hb.fuel.o, hb.fuel.lhv_mj_per_kg),
        slag_fe_sio2=hb.slag_fe_sio2,
        slag_cu=hb.slag_cu,
        fe3o4_share=hb.fe3o4_share,
        flux_sio2=hb.flux_sio2,
        dust_fraction=hb.dust_fraction,
        excess_o2=hb.excess_o2,
        matte_heat=_sensible(hb.matte_heat),
        slag_heat=_sensible(hb.slag_heat),
        dust_heat=_sensible(hb.dust_heat),
        gas_heat=gas,
    )


def heat_balance_tags(hb: HeatBalanceConfig) -> list[str]:
    """Every tag the balance reads."""
    tags = list(hb.input_tags().values()) + [r.rate_tag for r in hb.recycled]
    for c in hb.cooling_circuit:
        tags += [c.flow_tag, c.t_in_tag, c.t_out_tag]
    return tags


def _fraction(value: float, unit: str) -> float:
    return value / 100.0 if unit.strip() == "%" else value


def operating_point(
    hb: HeatBalanceConfig, values: dict[str, float], units: dict[str, str]
) -> OperatingPoint:
    """The balance's operating point from tag values in their tags' own units."""

    def v(tag: str) -> float:
        return float(values[tag])

    def u(tag: str) -> str:
        return units.get(tag, "")

    circuits = [(v(c.flow_tag), v(c.t_in_tag), v(c.t_out_tag)) for c in hb.cooling_circuit]
    return OperatingPoint(
        conc_tph=v(hb.conc_feed_tag) * tph_factor(u(hb.conc_feed_tag) or "t/h"),
        recycled_tph={
            r.name: v(r.rate_tag) * tph_factor(u(r.rate_tag) or "t/h") for r in hb.recycled
        },
        fuel_kgph=v(hb.fuel_flow_tag) * 1000 * tph_factor(u(hb.fuel_flow_tag) or "kg/h"),
        o2_nm3h=v(hb.o2_flow_tag),
        o2_purity=_fraction(v(hb.o2_purity_tag), u(hb.o2_purity_tag)),
        air_nm3h=v(hb.air_flow_tag),
        matte_grade=_fraction(v(hb.matte_grade_tag), u(hb.matte_grade_tag)),
        matte_temp_c=v(hb.matte_temp_tag),
        slag_temp_c=v(hb.slag_temp_tag),
        offgas_temp_c=v(hb.offgas_temp_tag),
        q_loss_mw=cooling_loss_mw(
            circuits, hb.shell_loss_mw, hb.water_density_kg_m3, hb.water_cp_kj_kg_k
        ),
    )


def at_basis(hb: HeatBalanceConfig, op: OperatingPoint) -> OperatingPoint:
    """The operating point with the products at the configured temperature basis."""
    if hb.temperature_basis == "measured":
        return op
    return replace(
        op,
        matte_temp_c=hb.matte_target_c,
        slag_temp_c=hb.slag_target_c,
        offgas_temp_c=hb.offgas_target_c,
    )


def live_balance(
    model: FurnaceModel, hb: HeatBalanceConfig, op: OperatingPoint
) -> tuple[OperatingPoint, Balance]:
    """The balance at `op`; with `grade_basis = "oxygen"` the grade is the one the blown
    oxygen and air produce, and the returned operating point carries it."""
    if hb.grade_basis == "assay":
        return op, solve(model, op)
    o2 = (op.o2_purity * op.o2_nm3h + O2_IN_AIR * op.air_nm3h) / NM3_PER_KMOL
    n2 = ((1 - op.o2_purity) * op.o2_nm3h + (1 - O2_IN_AIR) * op.air_nm3h) / NM3_PER_KMOL
    balance = solve_at_oxygen(model, op, o2, n2)
    return replace(op, matte_grade=balance.matte_grade), balance


def advisor_settings(cfg: AgentConfig) -> AdvisorSettings:
    adv = cfg.kpi.advisor
    assert adv is not None
    return AdvisorSettings(
        policy=adv.policy,
        reserve_mw=adv.reserve_mw,
        deficit_order=tuple(adv.deficit_order),
        feed_limits={f.stream: Limits(f.min, f.max, f.max_step) for f in adv.feed},
        fuel_limits=Limits(adv.fuel.min, adv.fuel.max, adv.fuel.max_step) if adv.fuel else None,
        oxygen_limits=(
            Limits(adv.oxygen.min, adv.oxygen.max, adv.oxygen.max_step) if adv.oxygen else None
        ),
        oxygen_capacity_nm3h=adv.oxygen.capacity_nm3h if adv.oxygen else float("inf"),
        derivative_step_tph=adv.derivative_step_tph,
    )


def setpoint_tags(cfg: AgentConfig) -> dict[str, str]:
    """Recommendation name ("fuel", "oxygen", stream) -> the DCS setpoint tag it is for."""
    adv = cfg.kpi.advisor
    if adv is None:
        return {}
    out = {f.stream: f.setpoint_tag for f in adv.feed}
    if adv.fuel:
        out["fuel"] = adv.fuel.setpoint_tag
    if adv.oxygen:
        out["oxygen"] = adv.oxygen.setpoint_tag
    return out


def advisor_tag(setpoint_tag: str) -> str:
    """`fsf.escrap_feed_sp` -> `kpi.advisor.escrap_feed_sp`."""
    return "kpi.advisor." + setpoint_tag.split(".", 1)[1].replace(".", "_")


# ---------------------------------------------------------------------------------- engine


@dataclass
class _Judged:
    """Worst quality over a set of inputs, and why."""

    quality: Quality = Quality.GOOD
    reasons: list[str] = field(default_factory=list)

    def see(self, tag: str, sample: Sample | None, max_age_s: float, now: int) -> None:
        if sample is None or sample.quality is Quality.BAD or sample.value is None:
            self.quality = Quality.BAD
            # The input's own reason says why: `node_offline` is a dead unit agent (docs/fleet.md)
            why = f" ({sample.reason})" if sample is not None and sample.reason else ""
            self.reasons.append(f"{tag} bad{why}" if sample else f"{tag} missing")
        elif sample.quality is Quality.UNCERTAIN:
            if self.quality is Quality.GOOD:
                self.quality = Quality.UNCERTAIN
            self.reasons.append(f"{tag} uncertain")
        elif (now - sample.ts_ns) / NS > max_age_s:
            if self.quality is Quality.GOOD:
                self.quality = Quality.UNCERTAIN
            self.reasons.append(f"{tag} stale")

    @property
    def reason(self) -> str | None:
        return ", ".join(self.reasons) if self.reasons else None


class KpiEngine:
    """Holds the KPIs' state between runs; `compute` is synchronous and runs in a thread."""

    def __init__(self, cfg: AgentConfig, store: TagStore, bus: SampleBus) -> None:
        self.cfg = cfg
        self.store = store
        self.bus = bus
        tags = cfg.tags()
        self.units = {t: d.unit for t, d in tags.items()}
        self.max_age = {t: d.max_age_s for t, d in tags.items()}
        self.state_path = Path(cfg.agent.state_dir) / STATE_FILE
        now = now_ns()
        rr = cfg.kpi.recycled_ratio
        zone = ZoneInfo(cfg.agent.timezone)
        self.calendar = Calendar(zone)
        if rr is not None:
            shifts = tuple(datetime.strptime(s, "%H:%M").time() for s in rr.shifts)
            self.calendar = Calendar(zone, shifts, rr.fiscal_year_start_month)
        self._check_units()
        self.ratio: RatioTracker | None = None
        self.streams: list[Stream] = []
        if rr is not None and rr.enabled:
            self.streams = [Stream(s.name, s.role, s.cu_fraction) for s in rr.stream]
            self.ratio = RatioTracker(self.streams, self.calendar, rr.max_gap_s, now)
        hb = cfg.kpi.heat_balance
        self.model = furnace_model(hb) if hb is not None and hb.enabled else None
        co2 = cfg.kpi.co2
        self.co2_factors: list[FuelFactor] = []
        self.co2_windows: WindowSet | None = None
        if co2 is not None and co2.enabled:
            self.co2_factors = [
                fuel_factor(f.name, self.units.get(f.tag, ""), f.t_co2_per_t, f.kg_co2_per_nm3)
                for f in co2.fuel
            ]
            self.co2_windows = WindowSet(self.calendar, now)
        self._last_tick: int | None = None
        self._feed_history: deque[tuple[int, float]] = deque()
        self._last_save = 0.0
        self._restored = False
        self._temp_history: deque[tuple[int, float]] = deque()
        self._last_calibration: int | None = None
        self.unexplained_mw = 0.0  # learnt by on-site calibration, see _calibrate
        self._lock = threading.Lock()  # compute and save run in worker threads

    def _check_units(self) -> None:
        """Fail at start, naming the key, if a mass or flow tag has a unit we cannot convert."""
        checks: list[tuple[str, str, Callable[[str], float], str]] = []
        rr, hb = self.cfg.kpi.recycled_ratio, self.cfg.kpi.heat_balance
        for i, st in enumerate(rr.stream if rr else []):
            checks.append(
                (f"kpi.recycled_ratio.stream.{i}.rate_tag", st.rate_tag, tph_factor, "t/h")
            )
            if st.total_tag:
                checks.append(
                    (f"kpi.recycled_ratio.stream.{i}.total_tag", st.total_tag, tonnes_factor, "t")
                )
        if hb is not None:
            checks.append(("kpi.heat_balance.conc_feed_tag", hb.conc_feed_tag, tph_factor, "t/h"))
            checks.append(("kpi.heat_balance.fuel_flow_tag", hb.fuel_flow_tag, tph_factor, "kg/h"))
            for i, r in enumerate(hb.recycled):
                checks.append(
                    (f"kpi.heat_balance.recycled.{i}.rate_tag", r.rate_tag, tph_factor, "t/h")
                )
        for key, tag, convert, default in checks:
            try:
                convert(self.units.get(tag) or default)
            except UnitError as exc:
                raise UnitError(f"{key}: tag {tag}: {exc}") from None

    # -- state -------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "ratio": self.ratio.to_json() if self.ratio else None,
            "co2": self.co2_windows.to_json() if self.co2_windows else None,
            "last_tick": self._last_tick,
            "unexplained_mw": self.unexplained_mw,
        }

    def restore(self, data: dict[str, Any], now: int) -> None:
        if self.ratio and data.get("ratio"):
            self.ratio.restore(data["ratio"], now)
        if self.co2_windows and data.get("co2"):
            self.co2_windows.restore(data["co2"], now)
        if isinstance(data.get("unexplained_mw"), (int, float)):
            self.unexplained_mw = float(data["unexplained_mw"])
        if data.get("last_tick") is not None:
            self._last_tick = int(data["last_tick"])

    # -- computing ---------------------------------------------------------------------------

    def compute(self, snap: dict[str, Sample], now: int) -> list[Sample]:
        """All KPI samples for this instant. Blocking maths: call from a worker thread."""
        with self._lock:
            return self._compute(snap, now)

    def save(self) -> None:
        """Persist the window state (blocking; waits for a computation in progress)."""
        with self._lock:
            data = self.state()
        save_json(self.state_path, data)

    def _compute(self, snap: dict[str, Sample], now: int) -> list[Sample]:
        out: list[Sample] = []
        input_tph: float | None = None
        if self.ratio is not None:
            input_tph = self._ratio(snap, now, out)
        balance: Balance | None = None
        if self.model is not None:
            balance = self._heat(snap, now, out)
        if self.co2_windows is not None:
            self._co2(snap, now, out, input_tph, balance)
        self._last_tick = now
        return out

    def _emit(
        self,
        out: list[Sample],
        tag: str,
        value: Value | None,
        now: int,
        judged: _Judged | None = None,
        reason: str | None = None,
    ) -> None:
        quality = judged.quality if judged else Quality.GOOD
        why = reason if reason is not None else (judged.reason if judged else None)
        if value is None or quality is Quality.BAD:
            out.append(Sample(tag, None, Quality.BAD, now, now, why or "no value"))
        else:
            out.append(Sample(tag, value, quality, now, now, why))

    def _ratio(self, snap: dict[str, Sample], now: int, out: list[Sample]) -> float | None:
        rr = self.cfg.kpi.recycled_ratio
        assert rr is not None
        assert self.ratio is not None
        judged = _Judged()
        rates: dict[str, float] = {}
        for s in rr.stream:
            sample = snap.get(s.rate_tag)
            if s.role != "excluded":
                judged.see(s.rate_tag, sample, self.max_age.get(s.rate_tag, 30), now)
            if (
                sample is not None
                and sample.value is not None
                and sample.quality is not Quality.BAD
            ):
                rates[s.name] = float(sample.value) * tph_factor(
                    self.units.get(s.rate_tag) or "t/h"
                )
            if s.total_tag is None:
                continue
            tot = snap.get(s.total_tag)
            if tot is not None and tot.good and tot.value is not None:
                factor = tonnes_factor(self.units.get(s.total_tag) or "t")
                event = self.ratio.ingest(s.name, float(tot.value) * factor, tot.ts_ns)
                if event == "reset":
                    log.warning("totaliser_reset", stream=s.name, tag=s.total_tag)
                elif event == "gap":
                    log.warning("totaliser_gap", stream=s.name, tag=s.total_tag)
        self.ratio.roll(now)
        for w in self.ratio.windows.closed:
            log.info(
                "ratio_window_closed",
                window=w.kind,
                start_ns=w.start_ns,
                ratio_pct=ratio_pct(w.sums, self.streams, "mass"),
            )
        self.ratio.windows.closed.clear()

        self._emit(
            out, "kpi.recycled_ratio.now", ratio_pct(rates, self.streams, "mass"), now, judged
        )
        basis = "dry mass; " + "; ".join(
            f"{role}: " + ", ".join(s.name for s in rr.stream if s.role == role)
            for role in ("primary", "recycled", "excluded")
        )
        out.append(Sample("kpi.recycled_ratio.basis", basis, Quality.GOOD, now, now))
        fiscal: float | None = None
        for kind in WINDOWS:
            for basis_name, prefix in (
                ("mass", "kpi.recycled_ratio."),
                ("cu", "kpi.recycled_ratio.cu."),
            ):
                if basis_name == "cu" and not rr.cu_basis:
                    continue
                value, coverage = self.ratio.window(kind, now, basis_name)  # type: ignore[arg-type]
                j = _Judged()
                if coverage < rr.min_coverage:
                    j.quality = Quality.UNCERTAIN
                    j.reasons.append(f"coverage {coverage:.2f} < {rr.min_coverage:.2f}")
                self._emit(out, prefix + kind, value, now, j)
                if basis_name == "mass":
                    w = self.ratio.windows.current[kind]
                    out.append(
                        Sample(
                            f"kpi.recycled_ratio.{kind}_coverage", coverage, Quality.GOOD, now, now
                        )
                    )
                    out.append(
                        Sample(f"kpi.recycled_ratio.{kind}_gaps", w.gaps, Quality.GOOD, now, now)
                    )
                    out.append(
                        Sample(
                            f"kpi.recycled_ratio.{kind}_resets", w.resets, Quality.GOOD, now, now
                        )
                    )
                    if kind == "fiscal_year":
                        fiscal = value
        target = target_pct(rr.targets, datetime.fromtimestamp(now / NS, self.calendar.tz))
        out.append(Sample("kpi.recycled_ratio.target", target, Quality.GOOD, now, now))
        self._emit(out, "kpi.recycled_ratio.gap", None if fiscal is None else target - fiscal, now)
        if judged.quality is Quality.BAD:
            return None
        return sum(rates.get(s.name, 0.0) for s in self.streams if s.role != "excluded")

    def _heat(self, snap: dict[str, Sample], now: int, out: list[Sample]) -> Balance | None:
        hb = self.cfg.kpi.heat_balance
        assert hb is not None
        assert self.model is not None
        judged = _Judged()
        values: dict[str, float] = {}
        for tag in heat_balance_tags(hb):
            sample = snap.get(tag)
            judged.see(tag, sample, self.max_age.get(tag, 30), now)
            if (
                sample is not None
                and sample.value is not None
                and sample.quality is not Quality.BAD
            ):
                values[tag] = float(sample.value)
        balance: Balance | None = None
        op: OperatingPoint | None = None
        if judged.quality is not Quality.BAD:
            try:
                measured, _ = live_balance(self.model, hb, operating_point(hb, values, self.units))
                op, balance = live_balance(self.model, hb, at_basis(hb, measured))
                self._calibrate(snap, now, judged, solve(self.model, measured).margin_mw)
            except BalanceError as exc:
                judged.quality = Quality.BAD
                judged.reasons.append(str(exc))
                log.warning("heat_balance_infeasible", error=str(exc))
        for tag, value in balance_values(balance).items():
            self._emit(out, tag, value, now, judged)
        calibrated = None if balance is None else balance.margin_mw - self.unexplained_mw
        self._emit(out, "kpi.heat.unexplained_mw", self.unexplained_mw, now)
        self._emit(out, "kpi.heat_margin_calibrated_mw", calibrated, now, judged)
        if self.cfg.kpi.advisor is not None and self.cfg.kpi.advisor.enabled:
            self._advise(snap, now, out, op, judged)
        return balance

    def _calibrate(
        self, snap: dict[str, Sample], now: int, judged: _Judged, closing_mw: float
    ) -> None:
        """Learn what the balance at the measured temperatures leaves unexplained (steady only)."""
        hb = self.cfg.kpi.heat_balance
        assert hb is not None
        temp = snap.get(hb.matte_temp_tag)
        if temp is not None and temp.good and isinstance(temp.value, (int, float)):
            self._temp_history.append((now, float(temp.value)))
        window = int(hb.calibration_window_s * NS)
        while self._temp_history and self._temp_history[0][0] < now - window:
            self._temp_history.popleft()
        last, self._last_calibration = self._last_calibration, now
        if hb.calibration_tau_s <= 0 or judged.quality is not Quality.GOOD or last is None:
            return
        temps = [t for _, t in self._temp_history]
        running = snap.get(self.cfg.kpi.advisor.running_tag) if self.cfg.kpi.advisor else None
        if running is not None and not (running.good and running.value):
            return
        covered = bool(self._temp_history) and now - self._temp_history[0][0] >= 0.9 * window
        if not covered or max(temps) - min(temps) > hb.calibration_band_k:
            return
        alpha = 1.0 - math.exp(-(now - last) / NS / hb.calibration_tau_s)
        self.unexplained_mw += alpha * (closing_mw - self.unexplained_mw)

    def _advise(
        self,
        snap: dict[str, Sample],
        now: int,
        out: list[Sample],
        op: OperatingPoint | None,
        judged: _Judged,
    ) -> None:
        adv = self.cfg.kpi.advisor
        hb = self.cfg.kpi.heat_balance
        assert adv is not None
        assert hb is not None
        assert self.model is not None
        conc = snap.get(hb.conc_feed_tag)
        if conc is not None and conc.good and conc.value is not None:
            self._feed_history.append((conc.ts_ns, float(conc.value)))
        horizon = now - int(adv.steady_window_s * 2 * NS)
        while self._feed_history and self._feed_history[0][0] < horizon:
            self._feed_history.popleft()
        inputs = {t: snap.get(t) for t in heat_balance_tags(hb)}
        reasons = hold_reasons(
            inputs,
            self.max_age,
            now,
            snap.get(adv.running_tag),
            list(self._feed_history),
            adv.steady_window_s,
            adv.steady_tolerance,
        )
        sp_tags = setpoint_tags(self.cfg)
        if op is None:
            why = "; ".join(reasons) or (judged.reason or "no balance")
            out.append(Sample("kpi.advisor.validity", "hold", Quality.GOOD, now, now, why))
            out.append(Sample("kpi.advisor.reason", why, Quality.GOOD, now, now))
            for tag in sp_tags.values():  # hold: keep the present setpoint where it reads Good
                sp = snap.get(tag)
                if sp is not None and sp.good and isinstance(sp.value, (int, float)):
                    held = float(sp.value)
                    out.append(Sample(advisor_tag(tag), held, Quality.UNCERTAIN, now, now, why))
                else:
                    out.append(Sample(advisor_tag(tag), None, Quality.BAD, now, now, why))
            return
        current = current_setpoints(self.cfg, snap, op)
        advice = advise(
            self.model, op, advisor_settings(self.cfg), current, reasons, self.unexplained_mw
        )
        out.extend(advice_samples(advice, sp_tags, now))

    def _co2(
        self,
        snap: dict[str, Sample],
        now: int,
        out: list[Sample],
        input_tph: float | None,
        balance: Balance | None,
    ) -> None:
        co2 = self.cfg.kpi.co2
        assert co2 is not None
        assert self.co2_windows is not None
        judged = _Judged()
        flows: dict[str, float] = {}
        for f in co2.fuel:
            sample = snap.get(f.tag)
            judged.see(f.tag, sample, self.max_age.get(f.tag, 30), now)
            flows[f.name] = float(sample.value) if sample and sample.value is not None else 0.0
        kiln: list[float | None] = [None, None]
        if co2.kiln_feed_tag and co2.kiln_residue_tag:
            for i, tag in enumerate((co2.kiln_feed_tag, co2.kiln_residue_tag)):
                sample = snap.get(tag)
                judged.see(tag, sample, self.max_age.get(tag, 30), now)
                if sample is not None and sample.value is not None:
                    kiln[i] = float(sample.value) * tph_factor(self.units.get(tag) or "t/h")
        rate = co2_rate(
            flows, self.co2_factors, kiln[0], kiln[1], co2.burnoff_carbon, co2.kiln_feed_moisture
        )
        bad = judged.quality is Quality.BAD
        self._emit(out, "kpi.co2.tph", None if bad else rate.total_tph, now, judged)
        for name, tph in rate.by_source_tph.items():
            self._emit(out, f"kpi.co2.{name}_tph", None if bad else tph, now, judged)
        cu_tph = balance.cu_to_matte_tph if balance is not None else None
        self._emit(
            out,
            "kpi.co2.per_t_input",
            None if bad or not input_tph else rate.total_tph / input_tph,
            now,
            judged,
        )
        self._emit(
            out,
            "kpi.co2.per_t_cu",
            None if bad or not cu_tph else rate.total_tph / cu_tph,
            now,
            judged,
        )
        # integrate over the time since the previous computation (skipped after a long pause)
        last = self._last_tick
        if last is not None and not bad and 0 < now - last <= 5 * self.cfg.kpi.interval_s * NS:
            hours = (now - last) / NS / 3600
            self.co2_windows.add("co2", last, now, rate.total_tph * hours)
            if input_tph:
                self.co2_windows.add("input", last, now, input_tph * hours)
            if cu_tph:
                self.co2_windows.add("cu", last, now, cu_tph * hours)
        self.co2_windows.roll(now)
        self.co2_windows.closed.clear()
        for kind in WINDOWS:
            w = self.co2_windows.current[kind]
            cov = w.coverage("co2", now)
            j = _Judged()
            if cov < 0.9:
                j.quality = Quality.UNCERTAIN
                j.reasons.append(f"coverage {cov:.2f}")
            total = w.sums.get("co2", 0.0)
            self._emit(out, f"kpi.co2.{kind}_t", total, now, j)
            inp, cu = w.sums.get("input", 0.0), w.sums.get("cu", 0.0)
            self._emit(out, f"kpi.co2.{kind}_per_t_input", total / inp if inp > 0 else None, now, j)
            self._emit(out, f"kpi.co2.{kind}_per_t_cu", total / cu if cu > 0 else None, now, j)

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
                now = now_ns()
                snap = self.store.snapshot()
                samples = await asyncio.to_thread(self.compute, snap, now)
                await self.bus.publish(samples)
                if started - self._last_save >= 30.0:
                    await asyncio.to_thread(self.save)
                    self._last_save = started
                elapsed = time.monotonic() - started
                await asyncio.sleep(max(0.0, self.cfg.kpi.interval_s - elapsed))
        finally:
            await asyncio.shield(asyncio.to_thread(self.save))


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


def current_setpoints(
    cfg: AgentConfig, snap: dict[str, Sample], op: OperatingPoint
) -> dict[str, float]:
    """Present setpoints: the setpoint tag where it reads Good, else the setpoint's own
    `measured_tag` (the process value, in the setpoint's unit) where it reads Good, else the value
    the heat balance measured for that input."""
    adv = cfg.kpi.advisor
    hb = cfg.kpi.heat_balance
    assert adv is not None
    assert hb is not None
    measured = {"fuel": op.fuel_kgph, "oxygen": op.o2_nm3h, **op.recycled_tph}
    limits = {f.stream: f for f in adv.feed} | {"fuel": adv.fuel, "oxygen": adv.oxygen}
    out: dict[str, float] = {}
    for name, tag in setpoint_tags(cfg).items():
        spec = limits.get(name)
        pv_tag = spec.measured_tag if spec is not None else None
        for source in (tag, pv_tag):
            sample = snap.get(source) if source is not None else None
            if sample is not None and sample.good and isinstance(sample.value, (int, float)):
                out[name] = float(sample.value)
                break
        else:
            if name in measured:
                out[name] = measured[name]
    return out


def advice_samples(advice: Advice, sp_tags: dict[str, str], now: int) -> list[Sample]:
    valid = advice.validity == "valid"
    out = [
        Sample("kpi.advisor.validity", advice.validity, Quality.GOOD, now, now),
        Sample("kpi.advisor.reason", advice.reason, Quality.GOOD, now, now),
        Sample("kpi.advisor.policy", advice.policy, Quality.GOOD, now, now),
    ]
    quality = Quality.GOOD if valid else Quality.UNCERTAIN
    why = None if valid else f"hold: {advice.reason}"
    for rec in advice.recommendations:
        tag = sp_tags.get(rec.name)
        if tag is not None:
            out.append(
                Sample(
                    advisor_tag(tag),
                    rec.value,
                    quality,
                    now,
                    now,
                    why or f"{advice.policy}: {rec.reason}",
                )
            )
    for name, q in advice.heat_demand_gj_t.items():
        out.append(Sample(f"kpi.advisor.{name}_heat_demand_gj_t", q, quality, now, now, why))
        room = advice.absorbable_tph[name]
        if room is None:
            out.append(
                Sample(
                    f"kpi.advisor.{name}_absorbable_tph",
                    None,
                    Quality.BAD,
                    now,
                    now,
                    "stream releases heat: not heat-limited",
                )
            )
        else:
            out.append(Sample(f"kpi.advisor.{name}_absorbable_tph", room, quality, now, now, why))
    return out


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
