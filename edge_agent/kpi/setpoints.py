"""The DCS setpoints the advisor advises on: their tags, their limits and their present values.

Shared by the live advisor step, the catalogue of KPI tags, the web view and `edge-agent balance`.
"""

from __future__ import annotations

from edge_agent.config import AgentConfig
from edge_agent.contracts.samples import Sample
from edge_agent.kpi.advisor import AdvisorSettings, Limits
from edge_agent.kpi.furnace import OperatingPoint


def advisor_settings(cfg: AgentConfig) -> AdvisorSettings:
    """The `[kpi.advisor]` section as the advisor's settings (call only when it is configured)."""
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


def current_setpoints(
    cfg: AgentConfig, snap: dict[str, Sample], op: OperatingPoint
) -> dict[str, float]:
    """Present setpoints: the setpoint tag where it reads Good, else the setpoint's own
    `measured_tag` (the process value, in the setpoint's unit) where it reads Good, else the value
    the heat balance measured for that input."""
    adv = cfg.kpi.advisor
    assert adv is not None
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
