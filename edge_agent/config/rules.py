"""Cross-field rules: what no single table can check on its own.

They run twice: as AgentConfig's validator (so no invalid AgentConfig can exist), and on the raw
TOML data when field validation failed (pydantic skips model validators then, but an operator
wants every problem of the file in one go). Each violation carries the exact key path.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pydantic import TypeAdapter, ValidationError

from edge_agent.config.alarms import AlarmConfig, alarm_rules
from edge_agent.config.control import ControlSection
from edge_agent.config.kpi import KpiSection, KpiSectionBase
from edge_agent.config.sources import TAG_MODELS, ModbusTag, OpcUaTag, TagBase

Loc = tuple[str | int, ...]
# The `kpi.*` tag families each KPI section produces (alarms may watch KPIs).
KPI_TAG_PREFIXES = {
    "recycled_ratio": "kpi.recycled_ratio.",
    "heat_balance": "kpi.heat",
    "advisor": "kpi.advisor.",
    "co2": "kpi.co2.",
}


@dataclass(frozen=True)
class RuleViolation:
    """One broken cross-field rule. `loc` indexes the raw data (list positions, not names)."""

    loc: Loc
    message: str
    value: Any


class RuleViolations(ValueError):
    """Raised by AgentConfig's validator; carries the violations with their locations."""

    def __init__(self, violations: list[RuleViolation]) -> None:
        self.violations = violations
        super().__init__("; ".join(f"{'.'.join(map(str, v.loc))}: {v.message}" for v in violations))


@dataclass(frozen=True)
class TagView:
    loc: Loc
    id: Any
    tag: TagBase | None  # None: the entry itself is invalid (its errors are reported already)


@dataclass(frozen=True)
class SourceView:
    loc: Loc
    name: Any
    modbus: bool
    tags: list[TagView]
    # Modbus: tags of sources on one endpoint (or serial port) share its devices' registers.
    endpoint: Any = None


def raw_rule_violations(data: Any) -> list[RuleViolation]:
    """The cross-field rules over raw (possibly partly invalid) data: what can be checked is."""
    if not isinstance(data, dict):
        return []
    raw_sources = data.get("source")
    sources: list[SourceView] = []
    for i, src in enumerate(raw_sources if isinstance(raw_sources, list) else []):
        if not isinstance(src, dict):
            continue
        model = TAG_MODELS.get(src.get("protocol"), OpcUaTag)
        raw_tags = src.get("tag")
        tags = [
            TagView(("source", i, "tag", j), t.get("id"), _valid_or_none(model, t))
            for j, t in enumerate(raw_tags if isinstance(raw_tags, list) else [])
            if isinstance(t, dict)
        ]
        sources.append(
            SourceView(
                ("source", i),
                src.get("name"),
                model is ModbusTag,
                tags,
                src.get("endpoint") or src.get("serial_port"),  # a serial bus: its port
            )
        )
    kpi_sections: dict[str, KpiSectionBase] = {}
    raw_kpi = data.get("kpi")
    for name, raw in raw_kpi.items() if isinstance(raw_kpi, dict) else []:
        field = KpiSection.model_fields.get(name)
        if field is None or field.annotation is None or not isinstance(raw, dict):
            continue
        with contextlib.suppress(ValidationError):
            section = TypeAdapter(field.annotation).validate_python(raw)
            if isinstance(section, KpiSectionBase):
                kpi_sections[name] = section
    control: ControlSection | None = None
    with contextlib.suppress(ValidationError):
        control = ControlSection.model_validate(data.get("control", {}))
    return check_rules(sources, kpi_sections, control, _valid_alarms(data.get("alarm")))


def _valid_alarms(raw: Any) -> list[tuple[int, AlarmConfig]]:
    alarms: list[tuple[int, AlarmConfig]] = []
    for i, entry in enumerate(raw if isinstance(raw, list) else []):
        with contextlib.suppress(ValidationError):
            alarms.append((i, AlarmConfig.model_validate(entry)))
    return alarms


def _valid_or_none(model: type[TagBase], raw: dict[str, Any]) -> TagBase | None:
    try:
        return model.model_validate(raw)
    except ValidationError:
        return None


def check_rules(
    sources: list[SourceView],
    kpi_sections: dict[str, KpiSectionBase],
    control: ControlSection | None = None,
    alarms: Sequence[tuple[int, AlarmConfig]] = (),
) -> list[RuleViolation]:
    known = {view.id for src in sources for view in src.tags}
    found = _duplicates(sources)
    for src in sources:
        for view in src.tags:
            found.extend(_tag_rules(view, known))
    found.extend(_overlapping_registers(sources))
    for section_name, section in kpi_sections.items():
        for path, tag_id in section.referenced_tags():
            if tag_id not in known:
                loc = ("kpi", section_name, *path.split("."))
                found.append(RuleViolation(loc, "unknown tag", tag_id))
    if control is not None:
        tags = {v.id: v.tag for src in sources for v in src.tags if v.tag is not None}
        found.extend(_control_rules(control, tags))
    kpi_prefixes = [KPI_TAG_PREFIXES[name] for name in kpi_sections if name in KPI_TAG_PREFIXES]
    found.extend(RuleViolation(*v) for v in alarm_rules(alarms, known, kpi_prefixes))
    return found


def _duplicates(sources: list[SourceView]) -> list[RuleViolation]:
    found: list[RuleViolation] = []
    source_names: set[Any] = set()
    tag_owner: dict[Any, Any] = {}
    for src in sources:
        if src.name in source_names:
            found.append(RuleViolation((*src.loc, "name"), "duplicate source name", src.name))
        source_names.add(src.name)
        for view in src.tags:
            if view.id in tag_owner:
                message = f"duplicate tag id (also in source {tag_owner[view.id]!r})"
                found.append(RuleViolation((*view.loc, "id"), message, view.id))
            else:
                tag_owner[view.id] = src.name
    return found


def _tag_rules(view: TagView, known: set[Any]) -> list[RuleViolation]:
    tag = view.tag
    if tag is None:
        return []
    found: list[RuleViolation] = []
    if tag.writable:
        found.extend(
            RuleViolation((*view.loc, bound), "a writable tag needs both min and max bounds", None)
            for bound in ("min", "max")
            if getattr(tag, bound) is None
        )
    if tag.quality_from is not None and tag.quality_from.tag not in known:
        loc = (*view.loc, "quality_from", "tag")
        found.append(RuleViolation(loc, "unknown tag", tag.quality_from.tag))
    return found


def _overlapping_registers(sources: list[SourceView]) -> list[RuleViolation]:
    """No two tags share a register of one device (endpoint and unit id), whichever sources
    they are in: two sources polling one device must not disagree about what a register is."""
    devices: dict[Any, list[SourceView]] = {}
    for src in sources:
        if src.modbus:
            devices.setdefault(_device_key(src.endpoint), []).append(src)
    found: list[RuleViolation] = []
    for group in devices.values():
        found.extend(_overlaps_on_one_endpoint(group))
    return found


def _overlaps_on_one_endpoint(sources: list[SourceView]) -> list[RuleViolation]:
    spans = sorted(
        (
            (t.unit_id, t.table, t.address, t.address + t.registers - 1, t, view.loc, src.name)
            for src in sources
            for view in src.tags
            if isinstance(t := view.tag, ModbusTag)
        ),
        key=lambda s: (s[0], s[1], s[2]),
    )
    found: list[RuleViolation] = []
    for a, b in itertools.pairwise(spans):
        if a[:2] == b[:2] and b[2] <= a[3] and not _shared_bit_register(a[4], b[4]):
            found.append(
                RuleViolation(
                    (*b[5], "address"),
                    f"overlaps tag {a[4].id!r} ({a[1]} {a[2]}..{a[3]}) on unit {a[0]}"
                    + (f" (source {a[6]!r}, same endpoint)" if a[6] != b[6] else ""),
                    b[2],
                )
            )
    return found


def _device_key(endpoint: Any) -> Any:
    """One key per Modbus endpoint however it is spelt (`tcp://Host:502` = `tcp://host`)."""
    if not isinstance(endpoint, str):
        return endpoint
    parts = urlsplit(endpoint.strip())
    try:
        port = parts.port
    except ValueError:
        return endpoint
    return (parts.scheme, (parts.hostname or "").lower(), port or 502, parts.path)


def _control_rules(control: ControlSection, tags: dict[Any, TagBase]) -> list[RuleViolation]:
    """Every allowlisted tag is a configured, writable tag, and its allowlist bounds lie within the
    tag's own bounds: the allowlist can only narrow what the tag definition permits."""
    found: list[RuleViolation] = []
    for i, entry in enumerate(control.allow):
        loc: Loc = ("control", "allow", i)
        tag = tags.get(entry.tag)
        if tag is None:
            found.append(RuleViolation((*loc, "tag"), "no source defines this tag", entry.tag))
            continue
        if not tag.writable or tag.min is None or tag.max is None:
            message = "the tag is not writable = true (with min and max) in its source"
            found.append(RuleViolation((*loc, "tag"), message, entry.tag))
            continue
        for bound, value in (("min", entry.min), ("max", entry.max)):
            if value < tag.min or value > tag.max:
                message = f"lies outside the tag's own bounds [{tag.min:g}, {tag.max:g}]"
                found.append(RuleViolation((*loc, bound), message, value))
    needs_permissive = control.mode == "closed_loop" or bool(control.allow)
    if needs_permissive and control.permissive_tag not in tags:
        loc = ("control", "permissive_tag")
        found.append(RuleViolation(loc, "unknown tag", control.permissive_tag))
    if control.heartbeat_on:
        loc = ("control", "heartbeat", "tag")
        hb = tags.get(control.heartbeat.tag)
        if hb is None:
            found.append(RuleViolation(loc, "unknown tag", control.heartbeat.tag))
        elif not hb.writable:
            found.append(RuleViolation(loc, "the tag is not writable = true", hb.id))
        elif any(entry.tag == hb.id for entry in control.allow):
            found.append(RuleViolation(loc, "must not also be allowlisted", hb.id))
    return found


def _shared_bit_register(a: ModbusTag, b: ModbusTag) -> bool:
    """Several `bit` tags may share one status register; nothing else may share."""
    return a.type == "bit" and b.type == "bit" and a.address == b.address and a.bit != b.bit
