"""Setpoint advisor: how much more recycled feed the furnace can take, or what heat it needs.

It works on the heat balance alone. The surplus over the configured reserve is first used to
cut burner fuel, then offered to the recycled feeds; a deficit is covered first by more oxygen
(up to the oxygen plant's capacity), then by fuel, and only what those cannot cover comes off
the recycled feed. Each stream's heat demand q_k is the model's own finite difference for that
stream's composition under the stated policy:

- `hold_matte_grade`: the grade stays at its measured value, the oxygen demand follows the feed;
- `hold_oxygen`: oxygen and air stay as they are and the grade floats.

The advisor advises: its output is a set of recommendations with validity and reason. Writing
them to the DCS is the control path's business (guarded, opt-in).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from edge_agent.contracts.samples import Sample
from edge_agent.kpi.furnace import Balance, FurnaceModel, OperatingPoint
from edge_agent.kpi.heat_balance import solve, solve_at_oxygen
from edge_agent.kpi.thermochemistry import NM3_PER_KMOL, O2_IN_AIR

Policy = Literal["hold_matte_grade", "hold_oxygen"]
Validity = Literal["valid", "hold"]


@dataclass(frozen=True)
class Limits:
    """A setpoint's allowed range and its largest change per recommendation."""

    min: float
    max: float
    max_step: float

    def apply(self, current: float, target: float) -> float:
        step = max(-self.max_step, min(self.max_step, target - current))
        return max(self.min, min(self.max, current + step))


@dataclass(frozen=True)
class AdvisorSettings:
    policy: Policy = "hold_matte_grade"
    reserve_mw: float = 3.0
    deficit_order: tuple[Literal["oxygen", "fuel"], ...] = ("oxygen", "fuel")
    feed_limits: dict[str, Limits] = field(default_factory=dict)  # stream -> limits
    fuel_limits: Limits | None = None  # kg/h
    oxygen_limits: Limits | None = None  # Nm³/h technical oxygen
    oxygen_capacity_nm3h: float = float("inf")
    derivative_step_tph: float = 1.0


@dataclass(frozen=True)
class Recommendation:
    """One setpoint: `value` is what to set now (ramp-limited, clamped), `target` where it heads."""

    name: str  # "fuel", "oxygen" or a recycled stream name
    current: float
    target: float
    value: float
    unit: str
    reason: str


@dataclass(frozen=True)
class Advice:
    policy: Policy
    validity: Validity
    reason: str
    margin_mw: float
    reserve_mw: float
    heat_demand_gj_t: dict[str, float]  # q_k per recycled stream
    absorbable_tph: dict[str, float | None]  # None: the stream releases heat, not heat-limited
    recommendations: list[Recommendation]
    fuel_mw_per_kgph: float
    oxygen_mw_per_nm3h: float

    def summary(self) -> str:
        return f"[{self.policy}] {self.validity}: {self.reason}"


def margin_function(
    model: FurnaceModel, op: OperatingPoint, policy: Policy
) -> tuple[Balance, Callable[[OperatingPoint], float]]:
    """The balance at `op` and the margin as a function of the operating point, under `policy`."""
    base = solve(model, op)
    if policy == "hold_matte_grade":
        return base, lambda p: solve(model, p).margin_mw
    o2 = base.o2_demand_nm3h / NM3_PER_KMOL
    n2 = base.n2_nm3h / NM3_PER_KMOL

    def at_blast(p: OperatingPoint) -> float:
        # the blast is what the flows deliver; changes of the flows change it one for one
        d_o2 = (p.o2_purity * p.o2_nm3h - op.o2_purity * op.o2_nm3h) + O2_IN_AIR * (
            p.air_nm3h - op.air_nm3h
        )
        d_n2 = ((1 - p.o2_purity) * p.o2_nm3h - (1 - op.o2_purity) * op.o2_nm3h) + (
            1 - O2_IN_AIR
        ) * (p.air_nm3h - op.air_nm3h)
        return solve_at_oxygen(
            model, p, o2 + d_o2 / NM3_PER_KMOL, n2 + d_n2 / NM3_PER_KMOL
        ).margin_mw

    return base, at_blast


def _more_oxygen(op: OperatingPoint, policy: Policy, nm3h: float) -> OperatingPoint:
    """Raise the technical oxygen; holding the grade, air is trimmed so the total O2 stays."""
    if policy == "hold_matte_grade":
        air = max(0.0, op.air_nm3h - nm3h * op.o2_purity / O2_IN_AIR)
        return replace(op, o2_nm3h=op.o2_nm3h + nm3h, air_nm3h=air)
    return replace(op, o2_nm3h=op.o2_nm3h + nm3h)


@dataclass(frozen=True)
class _Slopes:
    """The margin's sensitivities at the operating point, the model's own finite differences."""

    base: Balance
    q: dict[str, float]  # MW per t/h more of each recycled stream (> 0: the stream takes heat)
    fuel: float  # MW per kg/h more fuel
    oxygen: float  # MW per Nm³/h more technical oxygen


def _slopes(model: FurnaceModel, op: OperatingPoint, policy: Policy, h: float) -> _Slopes:
    base, margin_at = margin_function(model, op, policy)
    q: dict[str, float] = {}
    for name in model.recycled:
        m0 = op.recycled_tph.get(name, 0.0)
        q[name] = -(margin_at(op.with_stream(name, m0 + h)) - base.margin_mw) / h
    d_fuel = (margin_at(replace(op, fuel_kgph=op.fuel_kgph + 100.0)) - base.margin_mw) / 100.0
    d_o2 = (margin_at(_more_oxygen(op, policy, 500.0)) - base.margin_mw) / 500.0
    return _Slopes(base, q, d_fuel, d_o2)


def advise(
    model: FurnaceModel,
    op: OperatingPoint,
    settings: AdvisorSettings,
    current_setpoints: dict[str, float],
    hold_reasons: Sequence[str] = (),
    unexplained_mw: float = 0.0,
) -> Advice:
    """Recommendations for the furnace at `op`.

    `current_setpoints` holds the present setpoints by name ("fuel" kg/h, "oxygen" Nm³/h and
    each recycled stream t/h); missing ones default to the operating point's values.
    `unexplained_mw` is what on-site calibration found the model not to explain; it comes off
    the margin (the derivatives are the model's own either way).
    """
    slopes = _slopes(model, op, settings.policy, settings.derivative_step_tph)
    margin = slopes.base.margin_mw - unexplained_mw
    surplus = margin - settings.reserve_mw
    current = {
        "fuel": op.fuel_kgph,
        "oxygen": op.o2_nm3h,
        **{n: op.recycled_tph.get(n, 0.0) for n in settings.feed_limits},
        **current_setpoints,
    }
    if surplus >= 0:
        targets, notes = _spend_surplus(settings, slopes, current, surplus)
    else:
        targets, notes = _cover_deficit(settings, slopes, current, -surplus)
    state = "surplus" if surplus >= 0 else "deficit"
    head = (
        f"margin {margin:.1f} MW vs reserve {settings.reserve_mw:.1f} MW: {state} "
        f"{abs(surplus):.1f} MW"
    )
    validity: Validity = "hold" if hold_reasons else "valid"
    reason = (
        "; ".join(hold_reasons)
        if hold_reasons
        else head + (": " + ", ".join(notes) if notes else "")
    )
    hold = reason if validity == "hold" else None
    return Advice(
        policy=settings.policy,
        validity=validity,
        reason=reason,
        margin_mw=margin,
        reserve_mw=settings.reserve_mw,
        heat_demand_gj_t={n: qk * 3.6 for n, qk in slopes.q.items()},
        absorbable_tph={n: (surplus / qk if qk > 0 else None) for n, qk in slopes.q.items()},
        recommendations=_recommendations(settings, current, targets, head, hold),
        fuel_mw_per_kgph=slopes.fuel,
        oxygen_mw_per_nm3h=slopes.oxygen,
    )


def _spend_surplus(
    settings: AdvisorSettings, slopes: _Slopes, current: dict[str, float], surplus: float
) -> tuple[dict[str, float], list[str]]:
    """Targets for a surplus: first cut burner fuel, then offer the rest to the recycled feeds."""
    targets, notes, remaining = dict(current), [], surplus
    d_fuel = slopes.fuel
    if settings.fuel_limits is not None and current["fuel"] > 0 and d_fuel > 0:
        cut = min(current["fuel"] - settings.fuel_limits.min, remaining / d_fuel)
        cut = max(cut, 0.0)
        targets["fuel"] = current["fuel"] - cut
        remaining -= cut * d_fuel
        if cut > 0:
            notes.append(f"cut fuel {cut:.0f} kg/h")
    for name, limits in settings.feed_limits.items():
        if remaining <= 0:
            break
        qk = slopes.q.get(name, 0.0)
        room = limits.max - current[name]
        add = room if qk <= 0 else min(room, remaining / qk)
        targets[name] = current[name] + max(add, 0.0)
        if qk > 0:
            remaining -= max(add, 0.0) * qk
        notes.append(f"{name} +{max(add, 0.0):.1f} t/h")
    return targets, notes


def _cover_deficit(
    settings: AdvisorSettings, slopes: _Slopes, current: dict[str, float], need: float
) -> tuple[dict[str, float], list[str]]:
    """Targets for a deficit: oxygen and fuel in `deficit_order`, then less recycled feed."""
    targets, notes = dict(current), []
    d_fuel, d_o2 = slopes.fuel, slopes.oxygen
    for action in settings.deficit_order:
        if need <= 0:
            break
        if action == "oxygen" and settings.oxygen_limits is not None and d_o2 > 0:
            ceiling = min(settings.oxygen_capacity_nm3h, settings.oxygen_limits.max)
            add = max(0.0, min(need / d_o2, ceiling - current["oxygen"]))
            targets["oxygen"] = current["oxygen"] + add
            need -= add * d_o2
            notes.append(f"oxygen +{add:.0f} Nm³/h")
        elif action == "fuel" and settings.fuel_limits is not None and d_fuel > 0:
            add = max(0.0, min(need / d_fuel, settings.fuel_limits.max - current["fuel"]))
            targets["fuel"] = current["fuel"] + add
            need -= add * d_fuel
            notes.append(f"fuel +{add:.0f} kg/h")
    for name, limits in settings.feed_limits.items():
        qk = slopes.q.get(name, 0.0)
        if need <= 0 or qk <= 0:
            continue
        cut = min(current[name] - limits.min, need / qk)
        targets[name] = current[name] - max(cut, 0.0)
        need -= max(cut, 0.0) * qk
        notes.append(f"{name} -{max(cut, 0.0):.1f} t/h")
    return targets, notes


def _recommendations(
    settings: AdvisorSettings,
    current: dict[str, float],
    targets: dict[str, float],
    head: str,
    hold: str | None,
) -> list[Recommendation]:
    """One per limited setpoint: ramp-limited towards its target, or (on `hold`) the present."""
    oxygen = settings.oxygen_limits
    if oxygen is not None:
        oxygen = replace(oxygen, max=min(oxygen.max, settings.oxygen_capacity_nm3h))
    limits_by_name: dict[str, tuple[Limits | None, str]] = {
        "fuel": (settings.fuel_limits, "kg/h"),
        "oxygen": (oxygen, "Nm³/h"),
        **{n: (lim, "t/h") for n, lim in settings.feed_limits.items()},
    }
    recs: list[Recommendation] = []
    for name, (limits, unit) in limits_by_name.items():
        if limits is None:
            continue
        cur = current[name]
        if hold is not None:
            recs.append(Recommendation(name, cur, cur, cur, unit, hold))
        else:
            value = limits.apply(cur, targets[name])
            recs.append(Recommendation(name, cur, targets[name], value, unit, head))
    return recs


def hold_reasons(
    inputs: dict[str, Sample | None],
    max_age_s: dict[str, float],
    now_ns: int,
    running: Sample | None,
    feed_history: Sequence[tuple[int, float]],
    steady_window_s: float,
    steady_tolerance: float,
) -> list[str]:
    """Why the advisor must hold, or [] when its inputs allow a valid recommendation.

    Freshness is per tag (`max_age_s`): seconds for flows and temperatures, hours for assays.
    The feed is steady when the concentrate rate's spread over the last `steady_window_s` stays
    within `steady_tolerance` of its mean, judged only once that much history exists.
    """
    reasons: list[str] = []
    for tag, sample in inputs.items():
        if sample is None:
            reasons.append(f"{tag}: no value yet")
        elif sample.quality.value != "good":
            why = f" ({sample.reason})" if sample.reason else ""
            reasons.append(f"{tag}: {sample.quality.value}{why}")
        else:
            age = (now_ns - sample.ts_ns) / 1e9
            limit = max_age_s.get(tag, 30.0)
            if age > limit:
                reasons.append(f"{tag}: stale ({age:.0f} s old, limit {limit:.0f} s)")
    if running is None or not running.good or not bool(running.value):
        reasons.append("furnace not running")
    window_ns = int(steady_window_s * 1e9)
    recent = [v for ts, v in feed_history if now_ns - ts <= window_ns]
    span = (now_ns - feed_history[0][0]) if feed_history else 0
    if span < window_ns or not recent:
        reasons.append(
            f"feed steadiness not yet known ({span / 1e9:.0f} of {steady_window_s:.0f} s)"
        )
    else:
        mean = sum(recent) / len(recent)
        spread = (max(recent) - min(recent)) / mean if mean > 0 else float("inf")
        if spread > steady_tolerance:
            reasons.append(
                f"feed not steady (spread {100 * spread:.1f} % > {100 * steady_tolerance:.1f} %)"
            )
    return reasons
