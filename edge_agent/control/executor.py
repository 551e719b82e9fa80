"""Carries out what the guard accepts: write through the owning source's driver, read the value
back, and audit the attempt whatever happened.

The write goes through acquisition's connection to the source (no second session to the DCS).
Writes are serialised: the guard's ramp and rate memory is updated before the next request is
judged, and two origins never race on one setpoint. Read-back watches the TagStore for a sample of
the tag acquired after the write: it confirms the value arrived where the plant keeps it and that
acquisition sees it, and it never steals samples from the acquisition loop (as a second read on a
subscription-mode driver would).
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Protocol

from drivers.base import DriverError, WriteRefused
from edge_agent.contracts.samples import Value, now_ns
from edge_agent.control.audit import AuditLog, AuditRecord, Result
from edge_agent.control.guard import Decision, Guard, WriteRequest
from edge_agent.tagstore import TagStore

_READBACK_POLL_S = 0.05


class TagWriter(Protocol):
    """Routes a write to the driver of the source that owns the tag (acquisition's `Acquisition`
    does, through the live connection; it raises `WriteRefused` while disconnected)."""

    async def write(self, tag_id: str, value: Value) -> None: ...


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one request: `written`, `refused` (by the guard) or `failed` (accepted,
    but the device refused it, the connection failed, or the read-back disagrees)."""

    request: WriteRequest
    result: Result
    reason: str | None
    detail: str
    previous: Value | None = None
    written: float | None = None

    def reply(self) -> dict[str, object]:
        """The JSON body of a command's result message."""
        return {
            "request_id": self.request.request_id,
            "tag": self.request.tag,
            "result": self.result,
            "reason": self.reason,
            "detail": self.detail,
            "previous": self.previous,
            "requested": self.request.value if _json_number(self.request.value) else None,
            "written": self.written,
        }


class Executor:
    """The single door to the plant for setpoint writes."""

    def __init__(
        self,
        guard: Guard,
        store: TagStore,
        audit: AuditLog,
        writer: TagWriter,
        *,
        write_timeout_s: float,
        readback_timeout_s: float,
    ) -> None:
        self.guard = guard
        self._store = store
        self._audit = audit
        self._writer = writer
        self._write_timeout_s = write_timeout_s
        self._readback_timeout_s = readback_timeout_s
        self._lock = asyncio.Lock()

    async def submit(self, request: WriteRequest) -> Outcome:
        async with self._lock:
            decision = self.guard.evaluate(request, now_ns())
            if decision.accepted:
                try:
                    outcome = await self._carry_out(decision)
                except asyncio.CancelledError:
                    # The agent is stopping mid-write: the attempt is still recorded (the file
                    # append runs in a thread and completes even if we are cancelled again).
                    stopped = Outcome(
                        request,
                        "failed",
                        "cancelled",
                        "the agent stopped during the write; read the setpoint in the DCS",
                        decision.previous,
                        decision.value,
                    )
                    await asyncio.shield(self.record(stopped))
                    raise
            else:
                assert decision.refusal is not None
                outcome = Outcome(
                    request, "refused", decision.refusal.value, decision.detail, decision.previous
                )
            await self.record(outcome)
            return outcome

    async def record(self, outcome: Outcome) -> None:
        """Audit one outcome (also used for commands refused before they became requests)."""
        req = outcome.request
        await self._audit.record(
            AuditRecord.make(
                now_ns(),
                origin=req.origin.value,
                tag=req.tag,
                request_id=req.request_id,
                previous=outcome.previous,
                requested=req.value,
                written=outcome.written,
                result=outcome.result,
                reason=outcome.reason,
                detail=outcome.detail,
            )
        )

    async def _carry_out(self, decision: Decision) -> Outcome:
        req, value = decision.request, decision.value
        assert value is not None

        def failed(reason: str, detail: str) -> Outcome:
            return Outcome(req, "failed", reason, detail, decision.previous, value)

        started_ns = now_ns()
        try:
            await asyncio.wait_for(self._writer.write(req.tag, value), self._write_timeout_s)
        except TimeoutError:
            return failed("write_timeout", f"no answer within {self._write_timeout_s:g} s")
        except WriteRefused as exc:
            return failed("write_refused", f"the device refused the write: {exc}")
        except DriverError as exc:
            return failed("write_error", str(exc))
        problem = await self._read_back(req.tag, value, decision.previous, started_ns)
        if problem is not None:
            return failed(*problem)
        return Outcome(req, "written", None, decision.detail, decision.previous, value)

    async def _read_back(
        self, tag: str, value: float, previous: Value | None, started_ns: int
    ) -> tuple[str, str] | None:
        """None when the store shows the written value in a sample acquired after the write."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._readback_timeout_s
        while True:
            sample = self._store.get(tag)
            if sample is not None and sample.acq_ns >= started_ns:
                if sample.good and _same(sample.value, value):
                    return None
                if loop.time() >= deadline:
                    return (
                        "readback_mismatch",
                        f"read back {sample.value!r} ({sample.quality.value}) after writing "
                        f"{value:g}",
                    )
            elif loop.time() >= deadline:
                if _same(previous, value):
                    return None  # nothing was to change, and no change notification will come
                return (
                    "readback_timeout",
                    f"no new reading of {tag} within {self._readback_timeout_s:g} s",
                )
            await asyncio.sleep(_READBACK_POLL_S)


def _same(read: Value | None, written: float) -> bool:
    if isinstance(read, bool) or not isinstance(read, int | float):
        return False
    # float32 devices round what they store; six significant digits is what they keep.
    return math.isclose(float(read), written, rel_tol=1e-6, abs_tol=1e-6)


def _json_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
