"""The guard: decides whether one setpoint write may go to the plant, and what value it may carry.

Pure logic over the configuration, the latest samples (TagStore) and the guard's own memory of the
writes it let through; no I/O, so every refusal is unit-tested with fakes. Everything that can
write (the advisor follower, MQTT commands, Sparkplug DCMD) goes through `Guard.evaluate`.

Ramp limit: the sum of the absolute changes the agent made to one tag in any 60 s window never
exceeds `max_rate_per_min`. An advisor write that asks for more is clamped to what the window
still allows (the advisor re-plans every cycle, so the setpoint walks to its target at the ramp
rate); a SCADA command that asks for more is refused, because an operator who sent a value must
not find a different one written.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from edge_agent.config import ControlAllow, ControlSection
from edge_agent.contracts.samples import Value
from edge_agent.tagstore import TagStore

_NS = 1_000_000_000
RAMP_WINDOW_NS = 60 * _NS


class Origin(StrEnum):
    """Who asks for a write; each allowlist entry names the origins that may write it."""

    ADVISOR = "advisor"
    SCADA = "scada"


class Refusal(StrEnum):
    """Why a write was not made. The values are stable: they appear in audit lines and replies."""

    NOT_ALLOWLISTED = "not_allowlisted"
    ORIGIN_NOT_ALLOWED = "origin_not_allowed"
    WRONG_TYPE = "wrong_type"
    NON_FINITE = "non_finite"
    OUT_OF_BOUNDS = "out_of_bounds"
    COMMAND_TOO_OLD = "command_too_old"
    ADVISORY_MODE = "advisory_mode"
    AGENT_UNHEALTHY = "agent_unhealthy"
    PERMISSIVE_OFF = "permissive_off"
    PERMISSIVE_STALE = "permissive_stale"
    RECOMMENDATION_NOT_VALID = "recommendation_not_valid"
    RATE_LIMITED = "rate_limited"
    RAMP_LIMITED = "ramp_limited"
    # Refused by the command parser before a request exists (edge_agent/control/commands.py).
    RETAINED = "retained"
    MALFORMED = "malformed"
    OVERSIZED = "oversized"

    @property
    def message(self) -> str:
        return _MESSAGES[self]


_MESSAGES: dict[Refusal, str] = {
    Refusal.NOT_ALLOWLISTED: "the tag is not on the control allowlist ([[control.allow]])",
    Refusal.ORIGIN_NOT_ALLOWED: "this origin may not write this tag (control.allow origins)",
    Refusal.WRONG_TYPE: "the value must be a number (not a string, boolean or null)",
    Refusal.NON_FINITE: "the value must be a finite number (not NaN or infinity)",
    Refusal.OUT_OF_BOUNDS: "the value lies outside the allowlisted min/max",
    Refusal.COMMAND_TOO_OLD: "the command's timestamp is too old (or too far in the future)",
    Refusal.ADVISORY_MODE: "control.mode is 'advisory': the agent writes nothing",
    Refusal.AGENT_UNHEALTHY: "the agent is not healthy enough to write",
    Refusal.PERMISSIVE_OFF: "the DCS permissive is off: the operator has not allowed writes",
    Refusal.PERMISSIVE_STALE: "the DCS permissive is not Good and fresh",
    Refusal.RECOMMENDATION_NOT_VALID: "the advisor's recommendation is not valid",
    Refusal.RATE_LIMITED: "the tag was written too recently (control.allow min_interval_s)",
    Refusal.RAMP_LIMITED: "the change exceeds the tag's ramp limit (max_rate_per_min)",
    Refusal.RETAINED: "retained commands are never executed",
    Refusal.MALFORMED: "the command is not a well-formed set request",
    Refusal.OVERSIZED: "the command payload exceeds control.max_payload_bytes",
}


@dataclass(frozen=True, slots=True)
class WriteRequest:
    """One attempt to change one setpoint.

    `value` is whatever the sender sent (possibly a string or NaN): the guard checks it.
    `issued_ns` is the sender's own timestamp; commands without one are refused as too old.
    """

    origin: Origin
    tag: str
    value: object
    request_id: str | None = None
    issued_ns: int | None = None
    recommendation_valid: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    """The guard's answer. `value` is what may be written (clamped to the ramp for the advisor)."""

    request: WriteRequest
    refusal: Refusal | None
    detail: str
    value: float | None = None
    previous: Value | None = None

    @property
    def accepted(self) -> bool:
        return self.refusal is None


# Returns None when the agent is healthy, otherwise why it is not (for the refusal's detail).
HealthCheck = Callable[[], str | None]


class Guard:
    """Allowlist, bounds, ramp, rate limit, permissive, health and mode, in one place.

    Only the event loop calls it (like the TagStore), so it needs no lock; the executor still
    serialises writes so that the ramp and rate state are updated before the next request.
    """

    def __init__(
        self,
        section: ControlSection,
        store: TagStore,
        health: HealthCheck,
        max_age_s: Mapping[str, float] | None = None,
    ) -> None:
        self._section = section
        self._store = store
        self._health = health
        self._max_age_ns = {tag: int(s * _NS) for tag, s in (max_age_s or {}).items()}
        self._allow = {entry.tag: entry for entry in section.allow}
        self._last_write_ns: dict[str, int] = {}
        self._steps: dict[str, deque[tuple[int, float]]] = {}

    def evaluate(self, request: WriteRequest, now_ns: int, *, commit: bool = True) -> Decision:
        """Decide; when accepted and `commit`, remember the write for the ramp and rate limits."""
        decision = self._decide(request, now_ns)
        if decision.accepted and commit:
            assert decision.value is not None
            self._remember(request.tag, decision.value, decision.previous, now_ns)
        return decision

    # ----------------------------------------------------------------------------- the checks

    def _decide(self, req: WriteRequest, now_ns: int) -> Decision:
        """The checks in their order: the request itself (allowlist, origin, a valid
        recommendation, a finite number within bounds), its age, then the plant's state."""
        entry = self._allow.get(req.tag)
        if entry is None:
            why = f"tag {req.tag!r} is not allowlisted"
            return Decision(req, Refusal.NOT_ALLOWLISTED, why)
        checked = self._requested(req, entry)
        if not isinstance(checked, float):
            return Decision(req, *checked)
        too_old = self._age_problem(req, now_ns)
        if too_old is not None:
            return Decision(req, Refusal.COMMAND_TOO_OLD, too_old)
        previous = self._current(req.tag, now_ns)
        problem = self._plant_problem(req, entry, now_ns)
        if problem is not None:
            return Decision(req, *problem, None, previous)
        return self._ramp(req, entry, checked, previous, now_ns)

    def _requested(self, req: WriteRequest, entry: ControlAllow) -> float | tuple[Refusal, str]:
        """The value the request asks for, or why the request may not be written at all."""
        if req.origin.value not in entry.origins:
            return (
                Refusal.ORIGIN_NOT_ALLOWED,
                f"origin {req.origin.value!r} may not write {req.tag} (allowed: "
                f"{', '.join(entry.origins)})",
            )
        if req.origin is Origin.ADVISOR and not req.recommendation_valid:
            # First for the advisor: a recommendation on hold may carry no value at all.
            return (
                Refusal.RECOMMENDATION_NOT_VALID,
                f"the advisor's recommendation for {req.tag} is on hold or stale",
            )
        value = req.value
        if isinstance(value, bool) or not isinstance(value, int | float):
            return Refusal.WRONG_TYPE, f"value {value!r} ({type(value).__name__}) is not a number"
        try:
            requested = float(value)
        except OverflowError:  # an int beyond any float: finite, and out of every bound
            return (
                Refusal.OUT_OF_BOUNDS,
                f"value of {len(str(value))} digits for {req.tag}"
                f" is outside [{entry.min:g}, {entry.max:g}]",
            )
        if not math.isfinite(requested):
            return Refusal.NON_FINITE, f"value {value!r} is not finite"
        if not entry.min <= requested <= entry.max:
            return (
                Refusal.OUT_OF_BOUNDS,
                f"value {requested:g} is outside [{entry.min:g}, {entry.max:g}] for {req.tag}",
            )
        return requested

    def _plant_problem(
        self, req: WriteRequest, entry: ControlAllow, now_ns: int
    ) -> tuple[Refusal, str] | None:
        """Why the plant may not be written now: advisory mode, an unhealthy agent, the
        permissive, or the tag's minimum interval between writes."""
        if self._section.mode != "closed_loop":
            return Refusal.ADVISORY_MODE, "control.mode = 'advisory'"
        unhealthy = self._health()
        if unhealthy is not None:
            return Refusal.AGENT_UNHEALTHY, unhealthy
        permissive = self._permissive_problem(now_ns)
        if permissive is not None:
            return permissive
        last = self._last_write_ns.get(req.tag)
        if last is not None and now_ns - last < entry.min_interval_s * _NS:
            wait_s = (last + entry.min_interval_s * _NS - now_ns) / _NS
            return (
                Refusal.RATE_LIMITED,
                f"{req.tag} was written {(now_ns - last) / _NS:.1f} s ago; next write allowed "
                f"in {wait_s:.1f} s",
            )
        return None

    def _age_problem(self, req: WriteRequest, now_ns: int) -> str | None:
        if req.issued_ns is None:
            if req.origin is Origin.ADVISOR:
                return None
            return "the command carries no timestamp"
        age_s = (now_ns - req.issued_ns) / _NS
        if age_s > self._section.command_max_age_s:
            return f"command is {age_s:.1f} s old (limit {self._section.command_max_age_s:g} s)"
        if -age_s > self._section.max_clock_skew_s:
            return (
                f"command timestamp is {-age_s:.1f} s in the future (limit "
                f"{self._section.max_clock_skew_s:g} s): are the clocks synchronised?"
            )
        return None

    def _permissive_problem(self, now_ns: int) -> tuple[Refusal, str] | None:
        tag = self._section.permissive_tag
        sample = self._store.get(tag)
        if sample is None:
            return Refusal.PERMISSIVE_STALE, f"{tag} has not been read yet"
        if not sample.good:
            return Refusal.PERMISSIVE_STALE, f"{tag} is {sample.quality.value} ({sample.reason})"
        age_s = (now_ns - sample.acq_ns) / _NS
        if age_s > self._section.permissive_max_age_s:
            return (
                Refusal.PERMISSIVE_STALE,
                f"{tag} was last read {age_s:.1f} s ago (limit "
                f"{self._section.permissive_max_age_s:g} s)",
            )
        if sample.value is not True and not (
            isinstance(sample.value, int | float) and sample.value == 1
        ):
            return Refusal.PERMISSIVE_OFF, f"{tag} = {sample.value!r}"
        return None

    def _current(self, tag: str, now_ns: int) -> Value | None:
        """The setpoint's present value, when the store holds a Good, fresh one."""
        sample = self._store.get(tag)
        if sample is None or not sample.good or sample.value is None:
            return None
        if now_ns - sample.acq_ns > self._max_age_ns.get(tag, 30 * _NS):
            return None
        return sample.value

    def _ramp(
        self,
        req: WriteRequest,
        entry: ControlAllow,
        requested: float,
        previous: Value | None,
        now_ns: int,
    ) -> Decision:
        if isinstance(previous, bool) or not isinstance(previous, int | float):
            return Decision(
                req,
                Refusal.RAMP_LIMITED,
                f"the present value of {req.tag} is not known (not Good and fresh), so the "
                "size of the step cannot be bounded",
                None,
                previous,
            )
        budget = entry.max_rate_per_min - self._used(req.tag, now_ns)
        step = requested - float(previous)
        if abs(step) <= budget + 1e-9 * max(1.0, abs(requested)):
            return Decision(req, None, "", requested, previous)
        detail = (
            f"step {step:+g} from {float(previous):g} exceeds the {max(budget, 0.0):g} left of "
            f"{entry.max_rate_per_min:g}/min for {req.tag}"
        )
        if req.origin is Origin.ADVISOR and budget > 0:
            clamped = float(previous) + math.copysign(budget, step)
            return Decision(req, None, f"clamped to the ramp: {detail}", clamped, previous)
        return Decision(req, Refusal.RAMP_LIMITED, detail, None, previous)

    # -------------------------------------------------------------------------------- memory

    def _used(self, tag: str, now_ns: int) -> float:
        steps = self._steps.get(tag)
        if not steps:
            return 0.0
        while steps and now_ns - steps[0][0] >= RAMP_WINDOW_NS:
            steps.popleft()
        return sum(step for _, step in steps)

    def _remember(self, tag: str, value: float, previous: Value | None, now_ns: int) -> None:
        self._last_write_ns[tag] = now_ns
        assert isinstance(previous, int | float)
        self._steps.setdefault(tag, deque()).append((now_ns, abs(value - float(previous))))
