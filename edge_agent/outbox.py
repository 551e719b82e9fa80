"""The durable outbox: every accepted sample is on disk before any sink sees it.

Layout: one SQLite database (WAL) in `agent.state_dir`, one row per appended batch holding a
compact payload (the rows `(tag, value, quality, acq_ns, source_ns, reason[, raw])`, see
`encode`), and one cursor row per sink holding the id of the last batch that sink confirmed. A
batch is forgotten when every sink has confirmed it, or when the size cap drops it (oldest
first, counted and logged).

Threading: all SQLite work runs in one dedicated worker thread with one connection, so the event
loop never blocks on disk and SQLite never sees two threads. Appends that arrive while a commit is
in progress are committed together in the next transaction (group commit): at high rates the cost
of an fsync is shared by every batch waiting for it.

Durability bound (tested by tests/test_outbox_sigkill.py): when `append()` returns, the batch is
committed; SIGKILL loses at most the batches whose `append()` had not yet returned (the group being
committed plus those queued behind it). With `synchronous = "full"` (the default) a committed batch
also survives power loss; with "normal" it survives process death but the last commits can roll
back on power loss.

Full disk: SQLite's "database or disk is full" (and any other write error) raises an alarm instead
of an exception. The batch is kept in a bounded memory buffer, `append()` returns so acquisition
goes on, and every later append and the maintenance tick retry the buffered batches first, in
order. If the buffer overflows, its oldest samples are dropped and counted. Delivery of what is
already on disk continues throughout.

On-disk format: `PRAGMA user_version` carries the schema version; `_MIGRATIONS` upgrades older
files in place, in one transaction, and a file newer than this code is refused with a clear error.
"""

from __future__ import annotations

import asyncio
import io
import json
import pickle
import queue
import sqlite3
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import structlog

from drivers.conditions import Condition
from edge_agent.contracts.samples import Quality, Sample, now_ns
from edge_agent.logs import emitter

log = structlog.get_logger("edge_agent.outbox")

T = TypeVar("T")

SCHEMA_VERSION = 3
# Confirmed cursor positions reach the disk at least this often (with the next commit if sooner):
# half of the crash-replay bound in docs/delivery.md, the sinks' prompt confirmation the other.
CURSOR_PERSIST_S = 0.25
CAP_CLEARED_BELOW = 0.9  # the cap condition ends once the sinks have freed a tenth of it
_ROW_OVERHEAD_BYTES = 48  # rough per-row cost beside the payload, so tiny batches count too

# Version 1 was the first layout (batches and cursors). Version 2 records the sample count and
# byte size of every batch (so that the cap and the drop counters need no decoding) and adds the
# quarantine table for points a sink refuses for good. Version 3 adds the payload encoding of each
# row: rows written before it stay JSON (0) and are read as such, new rows are pickled (1).
_SCHEMA_V1 = """
CREATE TABLE batch (id INTEGER PRIMARY KEY AUTOINCREMENT, created_ns INTEGER NOT NULL,
                    payload BLOB NOT NULL);
CREATE TABLE cursor (sink TEXT PRIMARY KEY, acked INTEGER NOT NULL);
"""
_MIGRATIONS: dict[int, str] = {
    # to version 2
    2: """
ALTER TABLE batch ADD COLUMN samples INTEGER NOT NULL DEFAULT 0;
ALTER TABLE batch ADD COLUMN nbytes INTEGER NOT NULL DEFAULT 0;
UPDATE batch SET samples = json_array_length(payload), nbytes = length(payload);
CREATE TABLE quarantine (id INTEGER PRIMARY KEY AUTOINCREMENT, sink TEXT NOT NULL,
                         created_ns INTEGER NOT NULL, reason TEXT NOT NULL, item TEXT NOT NULL);
""",
    # to version 3
    3: """
ALTER TABLE batch ADD COLUMN encoding INTEGER NOT NULL DEFAULT 0;
""",
}
ENCODING_JSON = 0
ENCODING_PICKLE = 1

RECENT_CACHE_SAMPLES = 100_000  # decoded batches kept for sinks that keep up (~10 s at 10k/s)

_QUALITIES = (Quality.GOOD, Quality.UNCERTAIN, Quality.BAD)
_QUALITY_CODE = {q: i for i, q in enumerate(_QUALITIES)}


class OutboxError(Exception):
    """The outbox file cannot be used (newer schema, not a database). Names the file."""


@dataclass(frozen=True, slots=True)
class _Spilled:
    """A batch accepted but not yet committed (normally for microseconds; longer under a disk
    alarm)."""

    samples: list[Sample]
    payload: bytes
    created_ns: int


@dataclass(frozen=True, slots=True)
class Batch:
    """One appended batch as a sink reads it: `id` is what the sink acknowledges."""

    id: int
    samples: list[Sample]


@dataclass
class OutboxState:
    """Live counters for /metrics and /healthz (read on the loop, written by the worker)."""

    batches: int = 0
    samples: int = 0
    bytes: int = 0
    max_bytes: int = 0
    appended_samples: int = 0
    dropped_samples_cap: int = 0
    dropped_samples_memory: int = 0
    disk_alarm: bool = False
    disk_alarm_reason: str = ""
    memory_buffered_samples: int = 0
    quarantined: int = 0
    commits: int = 0
    head_id: int = 0
    oldest_created_ns: int = 0
    acked: dict[str, int] = field(default_factory=dict)


def encode(samples: Sequence[Sample]) -> bytes:
    """Pickle (protocol 5) of a list of plain tuples: str, float, int, bool and None only.

    Chosen over JSON because formatting floats as text costs about 2 µs per sample, most of the
    outbox's CPU at 10 000 samples/s; pickle keeps exact values (NaN and infinities included) at
    a third of that. `decode` refuses anything but those plain types, so a tampered file cannot
    make the agent run code.
    """
    rows = [
        (s.tag, s.value, _QUALITY_CODE[s.quality], s.acq_ns, s.source_ns, s.reason)
        if s.raw is None
        else (s.tag, s.value, _QUALITY_CODE[s.quality], s.acq_ns, s.source_ns, s.reason, s.raw)
        for s in samples
    ]
    return pickle.dumps(rows, protocol=5)


class _PlainUnpickler(pickle.Unpickler):
    """Loads lists, tuples, str, numbers, bool and None; refuses every class or function."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"outbox payload names {module}.{name}: refused")


def decode(payload: bytes, encoding: int = ENCODING_PICKLE) -> list[Sample]:
    if encoding == ENCODING_JSON:
        rows = json.loads(payload)
    else:
        rows = _PlainUnpickler(io.BytesIO(payload)).load()
    # Rows are six fields, seven when the sample keeps an implausible raw value.
    return [
        Sample(r[0], r[1], _QUALITIES[r[2]], r[3], r[4], r[5], r[6] if len(r) > 6 else None)
        for r in rows
    ]


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
        self._loop: asyncio.AbstractEventLoop | None = None
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], asyncio.Future[Any]] | None] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None
        self._db: sqlite3.Connection | None = None
        self._pending: list[tuple[list[Sample], asyncio.Future[None]]] = []
        self._pending_lock = threading.Lock()
        self._spill: deque[_Spilled] = deque()
        # Recently committed batches, decoded, so that sinks keeping up never read SQLite:
        # every existing batch with an id above `_recent_floor` is in `_recent`.
        self._recent: OrderedDict[int, list[Sample]] = OrderedDict()
        self._recent_samples = 0
        self._recent_floor = 0
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
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._work, name="outbox-sqlite", daemon=True)
        self._thread.start()
        try:
            await self._call(self._open_db)
        except BaseException:
            self._jobs.put(None)
            await asyncio.to_thread(self._thread.join)
            self._thread = None
            raise
        for sink in self.sinks:
            self._new_data[sink] = asyncio.Event()
            self._new_data[sink].set()
            self._cursors[sink] = Cursor(self, sink)
        log.info(
            "outbox_opened",
            path=str(self.path),
            batches=self.state.batches,
            bytes=self.state.bytes,
            sinks=self.sinks,
        )

    async def close(self) -> None:
        """Commit what is pending, then stop the worker. Safe to call twice."""
        if self._thread is None:
            return
        await self.flush()
        await self._call(self._close_db)
        self._jobs.put(None)
        await asyncio.to_thread(self._thread.join)
        self._thread = None

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
        assert self._loop is not None, "Outbox.start() first"
        fut: asyncio.Future[None] = self._loop.create_future()
        with self._pending_lock:
            first = not self._pending
            self._pending.append((list(samples), fut))
        if first:
            self._call(self._flush).add_done_callback(_consume)
        await asyncio.shield(fut)

    async def flush(self) -> None:
        """Retry batches held in memory under a disk alarm; persist cursor positions."""
        await self._call(self._flush)

    async def quarantine(self, sink: str, items: Sequence[tuple[str, str]]) -> None:
        """Keep points a sink refuses for good, with the reason, for an engineer to inspect."""
        await self._call(lambda: self._quarantine(sink, items))

    async def quarantined(self, sink: str) -> list[tuple[str, str]]:
        """(reason, item) of every quarantined point of `sink`, oldest first."""
        return await self._call(lambda: self._quarantined(sink))

    async def run_maintenance(self, interval_s: float = CURSOR_PERSIST_S) -> None:
        """Service body: retries a disk alarm's memory buffer so delivery resumes on its own."""
        while True:
            await asyncio.sleep(interval_s)
            if self._spill or self._cursors_dirty:
                await self.flush()

    # ------------------------------------------------------------------------------- plumbing

    def _call(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        assert self._loop is not None, "outbox is not running"
        assert self._thread is not None, "outbox is not running"
        fut: asyncio.Future[T] = self._loop.create_future()
        self._jobs.put((fn, fut))
        return fut

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            fn, fut = job
            try:
                result = fn()
            except BaseException as exc:  # handed to the awaiting coroutine
                self._resolve(fut, None, exc)
            else:
                self._resolve(fut, result, None)

    def _resolve(self, fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
        def settle() -> None:
            if fut.done():
                return
            if exc is not None:
                fut.set_exception(exc)
            else:
                fut.set_result(result)

        assert self._loop is not None
        self._loop.call_soon_threadsafe(settle)

    def _notify(self) -> None:
        for event in self._new_data.values():
            event.set()

    # ------------------------------------------------------------------- worker-thread methods

    def _open_db(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self.synchronous.upper()}")
            db.execute("PRAGMA journal_size_limit=67108864")
            version = db.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            db.close()
            raise OutboxError(f"outbox {self.path}: not a usable SQLite file ({exc})") from exc
        if version > SCHEMA_VERSION:
            db.close()
            raise OutboxError(
                f"outbox {self.path} has schema version {version}, newer than this agent's "
                f"{SCHEMA_VERSION}: upgrade the agent or move the file aside"
            )
        self._migrate(db, version)
        self._db = db
        self._load_state()

    def _migrate(self, db: sqlite3.Connection, version: int) -> None:
        if version == SCHEMA_VERSION:
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            if version == 0:
                for statement in _statements(_SCHEMA_V1):
                    db.execute(statement)
                version = 1
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in _statements(_MIGRATIONS[target]):
                    db.execute(statement)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        log.info("outbox_schema_migrated", path=str(self.path), to_version=SCHEMA_VERSION)

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
        self.state.quarantined = db.execute("SELECT count(*) FROM quarantine").fetchone()[0]
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
        self._recent_floor = self.state.head_id
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
                self._resolve(fut, None, exc)
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
            self._resolve(fut, None, None)

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
                [
                    (r.created_ns, r.payload, len(r.samples), len(r.payload), ENCODING_PICKLE)
                    for r in rows
                ],
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
            self._recent[batch_id] = row.samples
            self._recent_samples += len(row.samples)
        while self._recent_samples > RECENT_CACHE_SAMPLES and len(self._recent) > 1:
            batch_id, samples = self._recent.popitem(last=False)
            self._recent_samples -= len(samples)
            self._recent_floor = batch_id
        self.state.head_id = head
        if self.state.disk_alarm:
            self.state.disk_alarm = False
            self.state.disk_alarm_reason = ""
            log.warning("outbox_disk_alarm_cleared", path=str(self.path))
        if self.state.bytes > self.max_bytes:
            self._enforce_cap()
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._notify)

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
        self._forget_recent(last)
        self.state.batches = db.execute("SELECT count(*) FROM batch").fetchone()[0]
        self.state.bytes -= freed
        self.state.samples -= dropped
        self.state.dropped_samples_cap += dropped
        self._update_oldest()
        self.cap_reached.occurred(count={"dropped_samples": dropped}, max_bytes=self.max_bytes)

    def _forget_recent(self, upto: int) -> None:
        while self._recent and next(iter(self._recent)) <= upto:
            _, samples = self._recent.popitem(last=False)
            self._recent_samples -= len(samples)
        self._recent_floor = max(self._recent_floor, upto)

    def _read(self, sink: str, max_samples: int) -> list[Batch]:
        after = self.state.acked[sink]
        batches: list[Batch] = []
        total = 0
        if after >= self._recent_floor:  # a sink that keeps up: no disk read, no decoding
            for batch_id, samples in self._recent.items():
                if batch_id <= after:
                    continue
                if batches and total + len(samples) > max_samples:
                    break
                batches.append(Batch(batch_id, samples))
                total += len(samples)
            return batches
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
        self._forget_recent(done)

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

    def _quarantine(self, sink: str, items: Sequence[tuple[str, str]]) -> None:
        db = self._require_db()
        created = now_ns()
        db.execute("BEGIN IMMEDIATE")
        db.executemany(
            "INSERT INTO quarantine (sink, created_ns, reason, item) VALUES (?, ?, ?, ?)",
            [(sink, created, reason, item) for reason, item in items],
        )
        db.execute("COMMIT")
        self.state.quarantined += len(items)

    def _quarantined(self, sink: str) -> list[tuple[str, str]]:
        db = self._require_db()
        return db.execute(
            "SELECT reason, item FROM quarantine WHERE sink = ? ORDER BY id", (sink,)
        ).fetchall()


class Cursor:
    """A sink's view of the outbox: read the batches after its last confirmation, then ack."""

    def __init__(self, outbox: Outbox, sink: str) -> None:
        self._outbox = outbox
        self.sink = sink

    @property
    def acked(self) -> int:
        return self._outbox.state.acked[self.sink]

    @property
    def lag_batches(self) -> int:
        return max(0, self._outbox.state.head_id - self.acked)

    async def read(self, max_samples: int = 5000, idle_s: float | None = None) -> list[Batch]:
        """The oldest unconfirmed batches (at least one, about `max_samples` samples).

        Waits for data; after `idle_s` seconds without any, returns an empty list.
        """
        event = self._outbox._new_data[self.sink]
        loop = asyncio.get_running_loop()
        deadline = None if idle_s is None else loop.time() + idle_s
        while True:
            event.clear()
            if self._outbox.state.head_id > self.acked:
                batches = await self._outbox._call(
                    lambda: self._outbox._read(self.sink, max_samples)
                )
                if batches:
                    return batches
            try:
                remaining = None if deadline is None else max(0.0, deadline - loop.time())
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                return []

    async def ack(self, batch_id: int) -> None:
        """Confirm every batch up to and including `batch_id`; they are replayed no more."""
        await self._outbox._call(lambda: self._outbox._ack(self.sink, batch_id))


def _consume(fut: asyncio.Future[Any]) -> None:
    """Errors of a group flush reach the appends themselves; nothing else awaits the job."""
    if not fut.cancelled():
        fut.exception()


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
