"""The record of every attempted write: a structlog event, an MQTT message and a line on disk.

The JSONL file in the state directory is the authoritative record: appended, flushed and fsynced
(in a worker thread) before the attempt's outcome is reported, never rewritten, and reopened in
append mode after a restart. The MQTT message is a convenience for SCADA and historians; if the
broker is away the message is lost, the file line is not.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import structlog

from edge_agent.contracts.samples import Value, iso_utc
from edge_agent.state_files import append_line

log = structlog.get_logger("edge_agent.control")

Result = Literal["written", "refused", "failed"]
AUDIT_FILE = "control-audit.jsonl"


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One attempt. `reason` is a `Refusal` value, or a failure reason for `failed` attempts;
    `detail` says it in words with the numbers involved."""

    ts: str
    ts_ns: int
    origin: str
    tag: str
    request_id: str | None
    previous: Value | None
    requested: Any
    written: float | None
    result: Result
    reason: str | None
    detail: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), default=_jsonable)

    @classmethod
    def make(cls, ts_ns: int, **fields: Any) -> AuditRecord:
        return cls(ts=iso_utc(ts_ns), ts_ns=ts_ns, **fields)


def _jsonable(value: object) -> str:
    # Requested values come from outside and may be anything the JSON parser produced.
    return repr(value)


Publisher = Callable[[bytes], Awaitable[None]]


class AuditLog:
    """Append-only audit of control attempts. One writer per file (the executor)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._publisher: Publisher | None = None
        self._listeners: list[Callable[[AuditRecord], None]] = []
        # Set while appending fails: the guard then refuses every write (agent_unhealthy).
        self.broken: str | None = None

    def health(self) -> str | None:
        return self.broken

    def add_listener(self, listener: Callable[[AuditRecord], None]) -> None:
        """Called with each record once it is on disk (counters for the health board)."""
        self._listeners.append(listener)

    def set_publisher(self, publisher: Publisher | None) -> None:
        """The command service hands over its MQTT connection while it is connected."""
        self._publisher = publisher

    async def record(self, rec: AuditRecord) -> None:
        """Log, append to disk (durably) and publish one attempt, in that order."""
        event = log.warning if rec.result != "written" else log.info
        event(
            "control_write",
            origin=rec.origin,
            tag=rec.tag,
            request_id=rec.request_id,
            previous=rec.previous,
            requested=rec.requested if _plain(rec.requested) else repr(rec.requested),
            written=rec.written,
            result=rec.result,
            reason=rec.reason,
            detail=rec.detail,
        )
        line = rec.to_json()
        try:
            await asyncio.to_thread(self._append, line)
        except OSError as exc:
            # The write (if any) has happened; what must not happen is another unrecorded one.
            self.broken = f"the audit file {self.path} cannot be written: {exc}"
            log.error("control_audit_failed", tag=rec.tag, error=str(exc), path=str(self.path))
        else:
            self.broken = None
        for listener in self._listeners:
            listener(rec)
        publisher = self._publisher
        if publisher is not None:
            try:
                await publisher(line.encode())
            except Exception as exc:  # the file line is the record; MQTT is best effort
                log.warning("control_audit_publish_failed", tag=rec.tag, error=str(exc))

    def _append(self, line: str) -> None:
        with self._lock:
            append_line(self.path, line)

    def read(self) -> list[dict[str, Any]]:
        """Every complete line so far (for tests and `tail`-like tools); skips a torn last line."""
        if not self.path.exists():
            return []
        out: list[dict[str, Any]] = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out


def _plain(value: object) -> bool:
    return value is None or isinstance(value, bool | int | float | str)
