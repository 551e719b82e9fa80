"""What a DCMD goes to: the guarded control path's entry point, or a refusal when none is wired."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol


class DcmdOutcome(Protocol):
    @property
    def result(self) -> str: ...  # "written" | "refused" | "failed"
    @property
    def reason(self) -> str | None: ...
    @property
    def detail(self) -> str: ...


# The guarded control path's entry point (edge_agent.control.ControlPath.command):
# (tag, value, command timestamp ns, request id) -> outcome.
DcmdHandler = Callable[[str, object, int | None, str | None], Awaitable[DcmdOutcome]]


@dataclass(frozen=True, slots=True)
class Refused:
    result: str
    reason: str | None
    detail: str


async def refuse_all(
    tag: str, value: object, ts_ns: int | None, request_id: str | None
) -> DcmdOutcome:
    """Used when no control path is wired in: every DCMD is refused, and says why."""
    return Refused("refused", "control_unavailable", "this agent runs no control path")


class ControlEntry(Protocol):
    """What the control path offers the edge node (edge_agent.control.ControlPath)."""

    async def command(
        self, tag: str, value: object, ts_ns: int | None, request_id: str | None
    ) -> DcmdOutcome: ...
