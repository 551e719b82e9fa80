"""The `[[alarm]]` tables and the `[alarms]` settings (edge_agent/alarms, docs/alarms.md).

Each `[[alarm]]` defines one alarm on a tag or KPI. What depends on the kind (a limit where one
is compared, a reference for a deviation, a state for a discrete alarm) and what depends on other
tables (the tags exist, ids are unique, a high-high lies above its high) are checked by
`alarm_rules`, a cross-field rule, so that each problem names its exact key path.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from pydantic import Field, model_validator

from edge_agent.contracts.section import Section

AlarmKind = Literal[
    "high",
    "high_high",
    "low",
    "low_low",
    "deviation",
    "rate_of_change",
    "bad_quality",
    "stale",
    "discrete",
]
PriorityName = Literal["urgent", "high", "medium", "low"]
PRIORITY_LEVELS: dict[str, int] = {"urgent": 1, "high": 2, "medium": 3, "low": 4}

# One MQTT topic level and one Sparkplug metric name: no '/', '+', '#', no spaces.
ALARM_ID = r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$"
_LIMITED = {"high", "high_high", "low", "low_low", "deviation", "rate_of_change", "stale"}
_POSITIVE = {"deviation", "rate_of_change", "stale"}
Violation = tuple[tuple[str | int, ...], str, Any]


class Suppress(Section):
    """Suppressed by design while the latest Good sample of `tag` equals / is below / above."""

    tag: str
    equals: bool | int | str | None = None
    below: float | None = None
    above: float | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Suppress:
        given = [k for k in ("equals", "below", "above") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of equals, below, above (got {given or 'none'})")
        return self


class AlarmConfig(Section):
    id: str = Field(pattern=ALARM_ID)
    tag: str
    kind: AlarmKind
    priority: PriorityName | int = "medium"
    message: str = Field(min_length=1, max_length=200)
    limit: float | None = None
    deadband: float = Field(0.0, ge=0)
    on_delay_s: float = Field(0.0, ge=0, le=86_400)
    off_delay_s: float = Field(0.0, ge=0, le=86_400)
    reference: str | None = None
    state: bool | int | str | None = None
    suppress_when: list[Suppress] = []
    enabled: bool = True

    @property
    def priority_level(self) -> int:
        return self.priority if isinstance(self.priority, int) else PRIORITY_LEVELS[self.priority]


class AlarmCommands(Section):
    """Operator actions over MQTT (`{root}/{site}/_alarms/{id}/{action}`), need `[mqtt]`."""

    enabled: bool = True
    # Who may act: the `operator` field of a command must be one of these (empty: anyone who can
    # publish to the topic, which the broker's ACL then decides alone).
    operators: list[str] = []
    max_age_s: float = Field(10.0, gt=0)
    max_clock_skew_s: float = Field(2.0, ge=0)
    max_payload_bytes: int = Field(1024, ge=64, le=65536)
    min_interval_s: float = Field(1.0, ge=0, description="per-alarm rate limit between actions")
    max_shelve_s: float = Field(8 * 3600.0, gt=0, description="a shelf expires within a shift")


class AlarmsSection(Section):
    """`[alarms]`: how the alarm engine runs (the alarms themselves are `[[alarm]]` tables)."""

    tick_s: float = Field(1.0, gt=0, le=60, description="clock for delays, stale, shelf expiry")
    state_file: str = Field("alarms.json", pattern=r"^[A-Za-z0-9_.-]+$")
    commands: AlarmCommands = AlarmCommands()


def alarm_rules(
    alarms: Sequence[tuple[int, AlarmConfig]], known_tags: set[Any], kpi_prefixes: Iterable[str]
) -> list[Violation]:
    """Cross-field rules of `[[alarm]]`. `alarms` pairs each valid entry with its index in the
    file; `kpi_prefixes` are the `kpi.` tag families the enabled KPI sections produce."""
    prefixes = tuple(kpi_prefixes)

    def known(tag: str) -> bool:
        return tag in known_tags or (tag.startswith("kpi.") and tag.startswith(prefixes))

    found: list[Violation] = []
    seen: set[str] = set()
    for i, alarm in alarms:
        loc = ("alarm", i)
        if alarm.id in seen:
            found.append(((*loc, "id"), "duplicate alarm id", alarm.id))
        seen.add(alarm.id)
        if not known(alarm.tag):
            found.append(((*loc, "tag"), "unknown tag", alarm.tag))
        for j, sup in enumerate(alarm.suppress_when):
            if not known(sup.tag):
                found.append(((*loc, "suppress_when", j, "tag"), "unknown tag", sup.tag))
        found.extend(_kind_rules(loc, alarm, known))
    found.extend(_limit_order(alarms))
    return found


def _kind_rules(loc: tuple[str | int, ...], a: AlarmConfig, known: Any) -> list[Violation]:
    found: list[Violation] = []
    if a.kind in _LIMITED:
        if a.limit is None:
            found.append(((*loc, "limit"), f"a {a.kind} alarm needs a limit", None))
        elif not math.isfinite(a.limit):
            found.append(((*loc, "limit"), "must be a finite number", a.limit))
        elif a.kind in _POSITIVE and a.limit <= 0:
            found.append(((*loc, "limit"), f"a {a.kind} limit must be above 0", a.limit))
    elif a.limit is not None:
        found.append(((*loc, "limit"), f"a {a.kind} alarm has no limit", a.limit))
    if a.kind == "deviation":
        if a.reference is None:
            found.append(((*loc, "reference"), "a deviation alarm needs a reference tag", None))
        elif not known(a.reference):
            found.append(((*loc, "reference"), "unknown tag", a.reference))
    elif a.reference is not None:
        found.append(((*loc, "reference"), "only a deviation alarm has a reference", a.reference))
    if a.kind == "discrete" and a.state is None:
        found.append(((*loc, "state"), "a discrete alarm needs a state", None))
    elif a.kind != "discrete" and a.state is not None:
        found.append(((*loc, "state"), "only a discrete alarm has a state", a.state))
    if not 1 <= a.priority_level <= 4:
        message = "priority is urgent, high, medium, low or 1..4"
        found.append(((*loc, "priority"), message, a.priority))
    if a.kind in _POSITIVE and a.limit is not None and 0 < a.limit <= a.deadband:
        found.append(((*loc, "deadband"), "must be smaller than the limit", a.deadband))
    return found


def _limit_order(alarms: Sequence[tuple[int, AlarmConfig]]) -> list[Violation]:
    """On one tag, a high-high lies above the high, a low-low below the low."""
    by_tag: dict[tuple[str, str], tuple[int, AlarmConfig]] = {}
    for i, a in alarms:
        if a.limit is not None and a.enabled:
            by_tag.setdefault((a.tag, a.kind), (i, a))
    found: list[Violation] = []
    for (tag, kind), (_i, a) in by_tag.items():
        outer = {"high": "high_high", "low": "low_low"}.get(kind)
        pair = by_tag.get((tag, outer)) if outer else None
        if pair is None or a.limit is None or pair[1].limit is None:
            continue
        j, inner, limit = pair[0], a.limit, pair[1].limit
        if (limit <= inner) if kind == "high" else (limit >= inner):
            side = "above" if kind == "high" else "below"
            message = f"must lie {side} the {kind} limit {inner:g} of alarm {a.id!r}"
            found.append((("alarm", j, "limit"), message, limit))
    return found
