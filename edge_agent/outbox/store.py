"""The outbox's queue: SQLite, group commit, size cap, full-disk alarm (the package says how)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import structlog

from drivers.conditions import Condition
from edge_agent.contracts.samples import Sample, now_ns
from edge_agent.logs import emitter
from edge_agent.outbox import quarantine
from edge_agent.outbox.cursor import Cursor
from edge_agent.outbox.format import (
    ENCODING,
    Batch,
    OutboxError,
    decode,
    encode,
    open_database,
)
from edge_agent.outbox.recent import RecentBatches
from edge_agent.outbox.state import OutboxState
from edge_agent.outbox.worker import WorkerThread, consume

log = structlog.get_logger("edge_agent.outbox")

T = TypeVar("T")

# Confirmed cursor positions reach the disk at least this often (with the next commit if sooner):
# half of the crash-replay bound in docs/delivery.md, the sinks' prompt confirmation the other.
CURSOR_PERSIST_S = 0.25
CAP_CLEARED_BELOW = 0.9  # the cap condition ends once the sinks have freed a tenth of it
_ROW_OVERHEAD_BYTES = 48  # rough per-row cost beside the payload, so tiny batches count too


@dataclass(frozen=True, slots=True)
class _Spilled:
    """A batch accepted but not yet committed (normally for microseconds; longer under a disk
    alarm)."""

    samples: list[Sample]
    payload: bytes
    created_ns: int


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and "full" in str(exc).lower()


class Outbox:
    """SQLite-backed queue with one cursor per sink; implements `pipeline.SampleWriter`.

    Use `await Outbox.open(path, sinks=[...])`; sinks then take `outbox.cursor(name)`.
    Cursors of sinks that are no longer configured are removed at open, so a retired sink
    does not pin data until the cap drops it.
    """

    def __init__(
        self,
        path: Path,
        sinks: Sequence[str],
        *,
        max_bytes: int = 1 << 30,
        memory_buffer_samples: int = 200_000,
        synchronous: Literal["full", "normal"] = "full",
    ) -> None:
        self.path = path
        self.sinks = list(dict.fromkeys(sinks))
        self.max_bytes = max_bytes
        self.memory_buffer_samples = memory_buffer_samples
        self.synchronous = synchronous
        self.state = OutboxState(max_bytes=max_bytes)
        self._worker = WorkerThread("outbox-sqlite")
        self._db: sqlite3.Connection | None = None
        self._pending: list[tuple[list[Sample], asyncio.Future[None]]] = []
        self._pending_lock = threading.Lock()
        self._spill: deque[_Spilled] = deque()
        self._recent = RecentBatches()
        self._cursors_dirty = False
        self._new_data: dict[str, asyncio.Event] = {}
        self._cursors: dict[str, Cursor] = {}
        # One warning when the cap first drops data, a summary a minute while it goes on, one
        # line when the sinks have caught up (worker thread only).
        self.cap_reached = Condition("outbox_cap_dropped_oldest", emitter(log))

    # ------------------------------------------------------------------------------ lifecycle

    @classmethod
    async def open(cls, path: Path, sinks: Sequence[str], **options: Any) -> Outbox:
        outbox = cls(path, sinks, **options)
        await outbox.start()
        return outbox

    async def start(self) -> None:
        self._worker.start()
        try:
            await self._call(self._open_db)
        except BaseException:
            await self._worker.stop()
            raise
        for sink in self.sinks:
            self._new_data[sink] = asyncio.Event()
            self._new_data[sink].set()
            self._cursors[sink] = Cursor(_CursorSide(self, sink))
        log.info(
            "outbox_opened",
            path=str(self.path),
            batches=self.state.batches,
            bytes=self.state.bytes,
            sinks=self.sinks,
        )

    async def close(self) -> None:
        """Commit what is pending, then stop the worker. Safe to call twice."""
        if not self._worker.running:
            return
        await self.flush()
        await self._call(self._close_db)
        await self._worker.stop()

    def cursor(self, sink: str) -> Cursor:
        try:
            return self._cursors[sink]
        except KeyError:
            raise KeyError(f"outbox has no cursor for sink {sink!r}; known: {self.sinks}") from None

    # ------------------------------------------------------------------------------ write side

    async def append(self, samples: Sequence[Sample]) -> None:
        """Commit one batch; returns once it is on disk (or, under a disk alarm, in memory)."""
        if not samples:
            return
        assert self._worker.running, "Outbox.start() first"
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with self._pending_lock:
            first = not self._pending
            self._pending.append((list(samples), fut))
        if first:
            self._call(self._flush).add_done_callback(consume)
        await asyncio.shield(fut)

    async def flush(self) -> None:
        """Retry batches held in memory under a disk alarm; persist cursor positions."""
        await self._call(self._flush)

    async def quarantine(self, sink: str, items: Sequence[tuple[str, str]]) -> None:
        """Keep points a sink refuses for good, with the reason, for an engineer to inspect."""
        await self._call(lambda: quarantine.keep(self._require_db(), sink, items, now_ns()))
        self.state.quarantined += len(items)

    async def quarantined(self, sink: str) -> list[tuple[str, str]]:
        """(reason, item) of every quarantined point of `sink`, oldest first."""
        return await self._call(lambda: quarantine.kept(self._require_db(), sink))

    async def run_maintenance(self, interval_s: float = CURSOR_PERSIST_S) -> None:
        """Service body: retries a disk alarm's memory buffer so delivery resumes on its own."""
        while True:
            await asyncio.sleep(interval_s)
            if self._spill or self._cursors_dirty:
                await self.flush()

    # ------------------------------------------------------------------------------- plumbing

    def _call(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        return self._worker.call(fn)

    def _notify(self) -> None:
        for event in self._new_data.values():
            event.set()

    # ------------------------------------------------------------------- worker-thread methods

    def _open_db(self) -> None:
        self._db = open_database(self.path, self.synchronous)
        self._load_state()

    def _load_state(self) -> None:
        db = self._require_db()
        batches, samples, nbytes = db.execute(
            "SELECT count(*), coalesce(sum(samples), 0), coalesce(sum(nbytes), 0) FROM batch"
        ).fetchone()
        head = db.execute("SELECT coalesce(max(id), 0) FROM batch").fetchone()[0]
        seq = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'batch'").fetchone()
        self.state.batches, self.state.samples = batches, samples
        self.state.bytes = nbytes + batches * _ROW_OVERHEAD_BYTES
        self.state.head_id = max(head, seq[0] if seq else 0)
        self.state.quarantined = quarantine.count(db)
        known = dict(db.execute("SELECT sink, acked FROM cursor").fetchall())
        start = db.execute("SELECT coalesce(min(id), 1) - 1 FROM batch").fetchone()[0]
        db.execute("BEGIN IMMEDIATE")
        for sink in self.sinks:
            if sink not in known:
                # A new sink starts with what is retained now, not with history already gone.
                db.execute("INSERT INTO cursor (sink, acked) VALUES (?, ?)", (sink, start))
                known[sink] = start
        for sink in set(known) - set(self.sinks):
            db.execute("DELETE FROM cursor WHERE sink = ?", (sink,))
            log.warning("outbox_cursor_removed", sink=sink, reason="sink no longer configured")
            del known[sink]
        db.execute("COMMIT")
        self.state.acked = known
        self._recent.floor = self.state.head_id
        self._purge()
        self._update_oldest()

    def _close_db(self) -> None:
        if self._db is not None:
            if self._cursors_dirty:
                self._commit_spill()
            self._db.close()
            self._db = None

    def _require_db(self) -> sqlite3.Connection:
        if self._db is None:
            raise OutboxError(f"outbox {self.path} is closed")
        return self._db

    def _flush(self) -> None:
        with self._pending_lock:
            pending, self._pending = self._pending, []
        try:
            self._flush_pending(pending)
        except BaseException as exc:  # the outbox is closed or broken: tell every waiting append
            for _, fut in pending:
                self._worker.resolve(fut, None, exc)
            raise

    def _flush_pending(self, pending: list[tuple[list[Sample], asyncio.Future[None]]]) -> None:
        created = now_ns()
        for samples, _ in pending:
            self._spill.append(_Spilled(samples, encode(samples), created))
            self.state.memory_buffered_samples += len(samples)
        if self._spill or self._cursors_dirty:
            self._commit_spill()
        self._bound_memory()
        for _, fut in pending:
            self._worker.resolve(fut, None, None)

    def _commit_spill(self) -> None:
        """One transaction: new batches, cursor positions confirmed since the last one, purge."""
        db = self._require_db()
        rows = list(self._spill)
        deleted = (0, 0, 0)
        try:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                "INSERT INTO batch (created_ns, payload, samples, nbytes, encoding) "
                "VALUES (?, ?, ?, ?, ?)",
                [(r.created_ns, r.payload, len(r.samples), len(r.payload), ENCODING) for r in rows],
            )
            head = db.execute("SELECT max(id) FROM batch").fetchone()[0] or 0
            if self._cursors_dirty:
                db.executemany(
                    "UPDATE cursor SET acked = ? WHERE sink = ?",
                    [(acked, sink) for sink, acked in self.state.acked.items()],
                )
                deleted = self._delete_confirmed(db)
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            self._raise_alarm(exc)
            return
        self._cursors_dirty = False
        self._forgotten(deleted)
        self._spill.clear()
        self.state.memory_buffered_samples = 0
        self.state.commits += 1
        if rows:
            self._committed(rows, head)
        self._update_oldest()

    def _committed(self, rows: list[_Spilled], head: int) -> None:
        added = sum(len(r.samples) for r in rows)
        self.state.batches += len(rows)
        self.state.samples += added
        self.state.appended_samples += added
        self.state.bytes += sum(len(r.payload) + _ROW_OVERHEAD_BYTES for r in rows)
        # Ids are consecutive: one writer, AUTOINCREMENT, one transaction.
        for batch_id, row in zip(range(head - len(rows) + 1, head + 1), rows, strict=True):
            self._recent.add(batch_id, row.samples)
        self.state.head_id = head
        if self.state.disk_alarm:
            self.state.disk_alarm = False
            self.state.disk_alarm_reason = ""
            log.warning("outbox_disk_alarm_cleared", path=str(self.path))
        if self.state.bytes > self.max_bytes:
            self._enforce_cap()
        self._worker.on_loop(self._notify)

    def _raise_alarm(self, exc: sqlite3.Error) -> None:
        if not self.state.disk_alarm:
            log.error(
                "outbox_disk_alarm",
                path=str(self.path),
                error=str(exc),
                disk_full=is_disk_full(exc),
                action="holding new batches in memory and retrying; acquisition continues",
            )
        self.state.disk_alarm = True
        self.state.disk_alarm_reason = str(exc)

    def _bound_memory(self) -> None:
        dropped = 0
        while self.state.memory_buffered_samples > self.memory_buffer_samples and self._spill:
            count = len(self._spill.popleft().samples)
            self.state.memory_buffered_samples -= count
            dropped += count
        if dropped:
            self.state.dropped_samples_memory += dropped
            log.error(
                "outbox_memory_buffer_overflow",
                dropped_samples=dropped,
                dropped_total=self.state.dropped_samples_memory,
                limit_samples=self.memory_buffer_samples,
            )

    def _enforce_cap(self) -> None:
        """Drop the oldest batches until the outbox is back under `max_bytes`."""
        db = self._require_db()
        excess = self.state.bytes - self.max_bytes
        rows = db.execute(
            "SELECT id, samples, nbytes FROM batch ORDER BY id LIMIT 100000"
        ).fetchall()
        freed = dropped = 0
        last = None
        for batch_id, count, nbytes in rows:
            if freed >= excess:
                break
            freed += nbytes + _ROW_OVERHEAD_BYTES
            dropped += count
            last = batch_id
        if last is None:
            return
        try:
            db.execute("DELETE FROM batch WHERE id <= ?", (last,))
        except sqlite3.Error as exc:
            self._raise_alarm(exc)
            return
        self._recent.forget(last)
        self.state.batches = db.execute("SELECT count(*) FROM batch").fetchone()[0]
        self.state.bytes -= freed
        self.state.samples -= dropped
        self.state.dropped_samples_cap += dropped
        self._update_oldest()
        self.cap_reached.occurred(count={"dropped_samples": dropped}, max_bytes=self.max_bytes)

    def _read(self, after: int, max_samples: int) -> list[Batch]:
        """The batches after id `after` (about `max_samples` samples, at least one)."""
        recent = self._recent.after(after, max_samples)
        if recent is not None:  # a sink that keeps up: no disk read, no decoding
            return recent
        batches: list[Batch] = []
        total = 0
        db = self._require_db()
        for batch_id, payload, count, encoding in db.execute(
            "SELECT id, payload, samples, encoding FROM batch WHERE id > ? ORDER BY id LIMIT 1000",
            (after,),
        ):
            if batches and total + count > max_samples:
                break
            batches.append(Batch(batch_id, decode(payload, encoding)))
            total += count
        return batches

    def _ack(self, sink: str, batch_id: int) -> None:
        """Move the cursor in memory; it reaches the disk with the next commit or tick."""
        if batch_id <= self.state.acked[sink]:
            return
        self.state.acked[sink] = batch_id
        self._cursors_dirty = True
        done = min(self.state.acked.values())
        self._recent.forget(done)

    def _update_oldest(self) -> None:
        row = (
            self._require_db()
            .execute("SELECT created_ns FROM batch ORDER BY id LIMIT 1")
            .fetchone()
        )
        self.state.oldest_created_ns = row[0] if row else 0

    def _purge(self) -> None:
        """Forget batches every sink has confirmed (at open; later inside `_commit_spill`)."""
        db = self._require_db()
        try:
            db.execute("BEGIN IMMEDIATE")
            deleted = self._delete_confirmed(db)
            db.execute("COMMIT")
        except sqlite3.Error as exc:  # a full disk can refuse even a delete; retried later
            if db.in_transaction:
                db.execute("ROLLBACK")
            log.warning("outbox_purge_failed", error=str(exc))
        else:
            self._forgotten(deleted)
        self._update_oldest()

    def _delete_confirmed(self, db: sqlite3.Connection) -> tuple[int, int, int]:
        """Inside a transaction: delete what every sink confirmed; (batches, samples, bytes)."""
        if not self.state.acked:
            return 0, 0, 0
        done = min(self.state.acked.values())
        count, samples, nbytes = db.execute(
            "SELECT count(*), coalesce(sum(samples), 0), coalesce(sum(nbytes), 0) "
            "FROM batch WHERE id <= ?",
            (done,),
        ).fetchone()
        if count:
            db.execute("DELETE FROM batch WHERE id <= ?", (done,))
        return count, samples, nbytes + count * _ROW_OVERHEAD_BYTES

    def _forgotten(self, deleted: tuple[int, int, int]) -> None:
        """After the commit that deleted confirmed batches: update the counters."""
        self.state.batches -= deleted[0]
        self.state.samples -= deleted[1]
        self.state.bytes -= deleted[2]
        if self.state.bytes <= self.max_bytes * CAP_CLEARED_BELOW:
            self.cap_reached.cleared(bytes=self.state.bytes, max_bytes=self.max_bytes)


class _CursorSide:
    """What a sink's cursor may do with the outbox: see its counters, read and confirm."""

    def __init__(self, outbox: Outbox, sink: str) -> None:
        self.outbox = outbox
        self.sink = sink
        self.state = outbox.state
        self.news = outbox._new_data[sink]

    def read(self, max_samples: int, after: int) -> asyncio.Future[list[Batch]]:
        return self.outbox._call(lambda: self.outbox._read(after, max_samples))

    def ack(self, batch_id: int) -> asyncio.Future[None]:
        return self.outbox._call(lambda: self.outbox._ack(self.sink, batch_id))
