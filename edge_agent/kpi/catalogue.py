"""The KPI engine's tags, known before it computes any: for the catalogue every sink is given.

Each `kpi.*` tag the engine can publish for a configuration, with its unit ("" for text and
counts) and the type of its values; `test_kpi_engine.py` checks that the engine publishes exactly
these, with these types.
"""

from __future__ import annotations

from edge_agent.config import AgentConfig
from edge_agent.contracts.catalogue import TagInfo, ValueType
from edge_agent.kpi.setpoints import advisor_tag, setpoint_tags
from edge_agent.kpi.steps.heat_balance import balance_values
from edge_agent.kpi.windows import WINDOWS

_TEXT = {
    "kpi.recycled_ratio.basis",
    "kpi.advisor.validity",
    "kpi.advisor.reason",
    "kpi.advisor.policy",
}
_COUNTS = ("_gaps", "_resets")


def kpi_tags(cfg: AgentConfig) -> list[TagInfo]:
    """Every `kpi.*` tag this configuration produces, with its unit and type."""
    return [TagInfo(tag, unit, _value_type(tag)) for tag, unit in _units(cfg).items()]


def _value_type(tag: str) -> ValueType:
    if tag in _TEXT:
        return "string"
    return "integer" if tag.endswith(_COUNTS) else "number"


def _units(cfg: AgentConfig) -> dict[str, str]:
    units: dict[str, str] = {}
    rr = cfg.kpi.recycled_ratio
    if rr is not None and rr.enabled:
        units.update({
            "kpi.recycled_ratio.now": "%", "kpi.recycled_ratio.basis": "",
            "kpi.recycled_ratio.target": "%", "kpi.recycled_ratio.gap": "pp",
        })  # fmt: skip
        for w in WINDOWS:
            units[f"kpi.recycled_ratio.{w}"] = "%"
            units[f"kpi.recycled_ratio.{w}_coverage"] = ""
            units[f"kpi.recycled_ratio.{w}_gaps"] = ""
            units[f"kpi.recycled_ratio.{w}_resets"] = ""
            if rr.cu_basis:
                units[f"kpi.recycled_ratio.cu.{w}"] = "%"
    hb = cfg.kpi.heat_balance
    if hb is not None and hb.enabled:
        by_suffix = {"mw": "MW", "nm3h": "Nm³/h", "tph": "t/h", "pct": "%"}
        heat = [*balance_values(None), "kpi.heat.unexplained_mw", "kpi.heat_margin_calibrated_mw"]
        units.update({tag: by_suffix[tag.rsplit("_", 1)[1]] for tag in heat})
    adv = cfg.kpi.advisor
    if adv is not None and adv.enabled and hb is not None:
        units.update(dict.fromkeys(("kpi.advisor.validity", "kpi.advisor.reason"), ""))
        units["kpi.advisor.policy"] = ""
        tags = cfg.tags()
        for tag in setpoint_tags(cfg).values():
            units[advisor_tag(tag)] = tags[tag].unit if tag in tags else ""
        for r in hb.recycled:
            units[f"kpi.advisor.{r.name}_heat_demand_gj_t"] = "GJ/t"
            units[f"kpi.advisor.{r.name}_absorbable_tph"] = "t/h"
    co2 = cfg.kpi.co2
    if co2 is not None and co2.enabled:
        units["kpi.co2.tph"] = "t/h"
        units.update(dict.fromkeys(("kpi.co2.per_t_input", "kpi.co2.per_t_cu"), "t/t"))
        for f in co2.fuel:
            units[f"kpi.co2.{f.name}_tph"] = "t/h"
        if co2.kiln_feed_tag:
            units["kpi.co2.kiln_burnoff_tph"] = "t/h"
        for w in WINDOWS:
            units[f"kpi.co2.{w}_t"] = "t"
            units[f"kpi.co2.{w}_per_t_input"] = "t/t"
            units[f"kpi.co2.{w}_per_t_cu"] = "t/t"
    return units
