"""The heat balance and the advisor as a what-if calculator (`edge-agent balance`).

Process engineers ask "what if the concentrate feed drops to 190 t/h?" or "how much copper scrap
could we take at 70 % enrichment?". `evaluate` runs the same model the agent runs live, at the
operating point in the config (`[kpi.heat_balance.operating_point]`), or at a snapshot of the
plant's values that the caller read, with any tag overridden.
"""

from __future__ import annotations

from typing import Any

from edge_agent.config import AgentConfig, HeatBalanceConfig
from edge_agent.config.loader import ConfigError
from edge_agent.contracts.samples import Quality, Sample
from edge_agent.kpi.advisor import Advice, AdvisorSettings, advise
from edge_agent.kpi.balance_inputs import (
    at_basis,
    furnace_model,
    heat_balance_tags,
    live_balance,
    operating_point,
)
from edge_agent.kpi.furnace import Balance, BalanceError
from edge_agent.kpi.setpoints import advisor_settings, setpoint_tags


def evaluate(
    cfg: AgentConfig, overrides: dict[str, float], snapshot: dict[str, Sample] | None = None
) -> dict[str, Any]:
    """The balance and the advice as a JSON-ready dict, keys named with their units.

    With a `snapshot` (tag -> sample, read from the plant), its usable values replace the
    configured operating point and the advisor holds where they are not Good.
    """
    hb = cfg.kpi.heat_balance
    if hb is None:
        raise ConfigError(["kpi.heat_balance is not configured: nothing to balance"])
    units = {t: d.unit for t, d in cfg.tags().items()}
    values, origin, hold = _inputs(cfg, hb, overrides, snapshot)
    model = furnace_model(hb)
    try:
        op, balance = live_balance(model, hb, at_basis(hb, operating_point(hb, values, units)))
    except BalanceError as exc:
        raise ConfigError([f"no steady state at this operating point: {exc}"]) from None
    result: dict[str, Any] = {
        "inputs": {
            t: {"value": values[t], "unit": units.get(t, ""), "from": origin.get(t, "config")}
            for t in heat_balance_tags(hb)
        },
        "temperature_basis": {
            "basis": hb.temperature_basis,
            "matte_c": op.matte_temp_c,
            "slag_c": op.slag_temp_c,
            "offgas_c": op.offgas_temp_c,
        },
        "balance": balance_dict(balance, op.enrichment),
    }
    if cfg.kpi.advisor is not None:
        settings: AdvisorSettings = advisor_settings(cfg)
        current = {"fuel": op.fuel_kgph, "oxygen": op.o2_nm3h, **op.recycled_tph}
        advice = advise(model, op, settings, current, hold)
        result["advisor"] = advice_dict(advice, setpoint_tags(cfg))
    return result


def _inputs(
    cfg: AgentConfig,
    hb: HeatBalanceConfig,
    overrides: dict[str, float],
    snapshot: dict[str, Sample] | None,
) -> tuple[dict[str, float], dict[str, str], list[str]]:
    """The balance's input values, where each came from ("config", "live", "--tag"), and why the
    advisor must hold. A tag with no value anywhere is an error naming it."""
    values: dict[str, float] = dict(hb.operating_point)
    origin = dict.fromkeys(values, "config")
    hold: list[str] = []
    if snapshot is not None:
        for tag in heat_balance_tags(hb):
            sample = snapshot.get(tag)
            if sample is None or sample.quality is Quality.BAD or sample.value is None:
                hold.append(f"{tag}: {sample.reason if sample else 'not read'}")
                continue
            values[tag] = float(sample.value)
            origin[tag] = "live"
            if sample.quality is not Quality.GOOD:
                hold.append(f"{tag}: {sample.quality.value}")
        if cfg.kpi.advisor is not None:
            running = snapshot.get(cfg.kpi.advisor.running_tag)
            if running is None or not running.good or not running.value:
                hold.append("furnace not running")
    for tag, value in overrides.items():
        values[tag] = value
        origin[tag] = "--tag"
    missing = [t for t in heat_balance_tags(hb) if t not in values]
    if missing:
        raise ConfigError(
            [
                f"kpi.heat_balance.operating_point: no value for {t} (add it or give --tag)"
                for t in missing
            ]
        )
    return values, origin, hold


def balance_dict(b: Balance, enrichment: float) -> dict[str, float]:
    return {
        "reaction_heat_mw": b.reaction_mw,
        "heat_out_matte_mw": b.matte_heat_mw,
        "heat_out_slag_mw": b.slag_heat_mw,
        "heat_out_offgas_mw": b.offgas_heat_mw,
        "heat_out_dust_mw": b.dust_heat_mw,
        "heat_loss_mw": b.loss_mw,
        "heat_margin_mw": b.margin_mw,
        "oxygen_demand_nm3h": b.o2_demand_nm3h,
        "oxygen_enrichment_pct": 100 * enrichment,
        "flux_demand_tph": b.flux_tph,
        "matte_tph": b.matte_tph,
        "matte_grade_pct": 100 * b.matte_grade,
        "cu_to_matte_tph": b.cu_to_matte_tph,
        "slag_tph": b.slag_tph,
        "offgas_nm3h": b.offgas_nm3h,
        "so2_nm3h": b.so2_nm3h,
        "dust_tph": b.dust_tph,
        "largest_element_imbalance": b.largest_imbalance(),
    }


def advice_dict(a: Advice, sp_tags: dict[str, str]) -> dict[str, Any]:
    return {
        "policy": a.policy,
        "validity": a.validity,
        "reason": a.reason,
        "reserve_mw": a.reserve_mw,
        "fuel_heat_mw_per_kgph": a.fuel_mw_per_kgph,
        "oxygen_heat_mw_per_nm3h": a.oxygen_mw_per_nm3h,
        "streams": {
            n: {"heat_demand_gj_per_t": q, "absorbable_tph": a.absorbable_tph[n]}
            for n, q in a.heat_demand_gj_t.items()
        },
        "recommendations": [
            {
                "setpoint": r.name,
                "tag": sp_tags.get(r.name),
                "current": r.current,
                "target": r.target,
                "recommended": r.value,
                "unit": r.unit,
            }
            for r in a.recommendations
        ],
    }


_LABELS = {
    "reaction_heat_mw": ("reaction heat", "MW"),
    "heat_out_matte_mw": ("heat out with matte", "MW"),
    "heat_out_slag_mw": ("heat out with slag", "MW"),
    "heat_out_offgas_mw": ("heat out with off-gas", "MW"),
    "heat_out_dust_mw": ("heat out with dust", "MW"),
    "heat_loss_mw": ("heat loss (cooling water + shell)", "MW"),
    "heat_margin_mw": ("heat margin", "MW"),
    "oxygen_demand_nm3h": ("oxygen demand", "Nm³/h"),
    "oxygen_enrichment_pct": ("oxygen enrichment", "%"),
    "flux_demand_tph": ("flux demand", "t/h"),
    "matte_tph": ("matte", "t/h"),
    "matte_grade_pct": ("matte grade", "% Cu"),
    "cu_to_matte_tph": ("copper to matte", "t/h"),
    "slag_tph": ("slag", "t/h"),
    "offgas_nm3h": ("off-gas", "Nm³/h"),
    "so2_nm3h": ("SO2", "Nm³/h"),
    "dust_tph": ("dust (returns as reverts)", "t/h"),
    "largest_element_imbalance": ("largest element imbalance", "fraction"),
}


def render(result: dict[str, Any]) -> str:
    t = result["temperature_basis"]
    lines = [
        "Heat balance of the flash smelting furnace (25 °C reference)",
        f"  products at {t['basis']} temperatures: matte {t['matte_c']:.0f} °C, "
        f"slag {t['slag_c']:.0f} °C, off-gas {t['offgas_c']:.0f} °C",
        "",
    ]
    for key, value in result["balance"].items():
        label, unit = _LABELS[key]
        text = f"{value:.1e}" if key == "largest_element_imbalance" else f"{value:,.1f}"
        lines.append(f"  {label:<36} {text:>12}  {unit}")
    adv = result.get("advisor")
    if adv:
        lines += ["", f"Advisor (policy {adv['policy']}): {adv['validity']}", f"  {adv['reason']}"]
        for name, s in adv["streams"].items():
            room = s["absorbable_tph"]
            room_text = "not heat-limited" if room is None else f"{room:+.1f} t/h absorbable"
            lines.append(
                f"  {name:<12} heat demand {s['heat_demand_gj_per_t']:+.2f} GJ/t, {room_text}"
            )
        for r in adv["recommendations"]:
            lines.append(
                f"  {r['tag'] or r['setpoint']:<20} {r['current']:>10,.1f} -> "
                f"{r['recommended']:>10,.1f}  {r['unit']}  (target {r['target']:,.1f})"
            )
    return "\n".join(lines)
