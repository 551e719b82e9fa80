"""What one KPI computation hands from step to step, and the one signature every step has.

The engine builds a `Tick` from the TagStore's snapshot and runs each configured `Step` on it in
order. A step reads the snapshot, appends its `kpi.*` samples and may leave a result for the
steps after it (the recycled ratio leaves the input rate for CO2 per tonne; the heat balance
leaves its operating point for the advisor and its balance for CO2 per tonne of copper).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edge_agent.config import AgentConfig
from edge_agent.contracts.samples import Quality, Sample, Value
from edge_agent.kpi.furnace import Balance, OperatingPoint
from edge_agent.kpi.units import UnitError, tph_factor
from edge_agent.kpi.windows import NS

DEFAULT_MAX_AGE_S = 30.0


@dataclass
class Judged:
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
            self.doubt(f"{tag} uncertain")
        elif (now - sample.ts_ns) / NS > max_age_s:
            self.doubt(f"{tag} stale")

    def doubt(self, reason: str) -> None:
        """Uncertain (unless already Bad) because of `reason`."""
        if self.quality is Quality.GOOD:
            self.quality = Quality.UNCERTAIN
        self.reasons.append(reason)

    @property
    def reason(self) -> str | None:
        return ", ".join(self.reasons) if self.reasons else None


@dataclass(frozen=True)
class TagFacts:
    """What the configuration says about every tag a step reads: unit and maximum age."""

    units: dict[str, str]
    max_age_s: dict[str, float]

    @classmethod
    def of(cls, cfg: AgentConfig) -> TagFacts:
        tags = cfg.tags()
        return cls({t: d.unit for t, d in tags.items()}, {t: d.max_age_s for t, d in tags.items()})

    def unit(self, tag: str, default: str) -> str:
        """The tag's unit, `default` where it has none."""
        return self.units.get(tag) or default

    def check_unit(
        self, key: str, tag: str, default: str, convert: Callable[[str], float] = tph_factor
    ) -> None:
        """Fail at start, naming the key and the tag, if `convert` does not know the tag's unit."""
        try:
            convert(self.unit(tag, default))
        except UnitError as exc:
            raise UnitError(f"{key}: tag {tag}: {exc}") from None

    def judge(self, judged: Judged, tag: str, snap: dict[str, Sample], now: int) -> Sample | None:
        """The tag's sample, after `judged` has seen it."""
        sample = snap.get(tag)
        judged.see(tag, sample, self.max_age_s.get(tag, DEFAULT_MAX_AGE_S), now)
        return sample


@dataclass(frozen=True)
class HeatResult:
    """What the heat-balance step leaves for the advisor and CO2 steps."""

    op: OperatingPoint | None  # at the temperature basis; None when no balance closed
    balance: Balance | None
    judged: Judged
    unexplained_mw: float


@dataclass
class Tick:
    """One computation: the snapshot, the instant, the samples so far, the results so far."""

    snap: dict[str, Sample]
    now: int
    last: int | None  # the previous computation's instant (None on the first)
    out: list[Sample] = field(default_factory=list)
    input_tph: float | None = None  # recycled-ratio step: total dry input of the furnace
    heat: HeatResult | None = None

    def emit(
        self, tag: str, value: Value | None, judged: Judged | None = None, reason: str | None = None
    ) -> None:
        """A sample of `value` with the inputs' quality; Bad (value None) without a value."""
        quality = judged.quality if judged else Quality.GOOD
        why = reason if reason is not None else (judged.reason if judged else None)
        if value is None or quality is Quality.BAD:
            self.out.append(Sample(tag, None, Quality.BAD, self.now, self.now, why or "no value"))
        else:
            self.out.append(Sample(tag, value, quality, self.now, self.now, why))

    def good(self, tag: str, value: Value, reason: str | None = None) -> None:
        """A Good sample of a value that needs no input (a target, a text, a count)."""
        self.out.append(Sample(tag, value, Quality.GOOD, self.now, self.now, reason))


class Step(ABC):
    """One family of KPIs. `run` is blocking maths and runs in the engine's worker thread."""

    @abstractmethod
    def run(self, tick: Tick) -> None:
        """Read `tick.snap`, append to `tick.out`, leave results on `tick` for later steps."""

    def state(self) -> dict[str, Any]:
        """What must survive a restart, as JSON-ready top-level keys of the state file."""
        return {}

    def restore(self, data: dict[str, Any], now: int) -> None:  # noqa: B027 (optional hook)
        """Take back what `state` wrote (the whole file's document; read only your keys)."""
