"""The outbox file's format: the SQLite schema and its migrations, and the batch payload encodings.

`PRAGMA user_version` carries the schema version; `_MIGRATIONS` upgrades older files in place, in
one transaction, and a file newer than this code is refused with a clear error. Payloads are
pickled plain tuples (`encode`), loaded by `contracts/plain_pickle.py`, which refuses anything
that names a class or function; rows written before schema 4 hold one full tuple per sample,
before schema 3 JSON, and both are still read.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import structlog

from edge_agent.contracts import plain_pickle
from edge_agent.contracts.samples import Quality, Sample

log = structlog.get_logger("edge_agent.outbox")

SCHEMA_VERSION = 4
# Version 1 was the first layout (batches and cursors). Version 2 records the sample count and
# byte size of every batch (so that the cap and the drop counters need no decoding) and adds the
# quarantine table for points a sink refuses for good. Version 3 adds the payload encoding of each
# row: rows written before it stay JSON (0) and are read as such, new rows are pickled (1).
# Version 4 adds an encoding (2, `encode`) that an older agent could not read, nothing else: the
# version tells that agent to refuse the file rather than fail on its rows.
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
    # to version 4: no table changes (see above)
    4: "",
}
ENCODING_JSON = 0
ENCODING_PICKLE_ROWS = 1  # schema 3: one full row per sample
ENCODING_PICKLE_SHARED = 2  # the batch's acquisition time once, short rows where it is shared
ENCODING = ENCODING_PICKLE_SHARED  # what `encode` writes

_QUALITIES = (Quality.GOOD, Quality.UNCERTAIN, Quality.BAD)
_QUALITY_CODE = {q: i for i, q in enumerate(_QUALITIES)}
_GOOD = Quality.GOOD


class OutboxError(Exception):
    """The outbox file cannot be used (newer schema, not a database). Names the file."""


@dataclass(frozen=True, slots=True)
class Batch:
    """One appended batch as a sink reads it: `id` is what the sink acknowledges."""

    id: int
    samples: list[Sample]


def encode(samples: Sequence[Sample]) -> bytes:
    """Pickle (protocol 5) of `(acq_ns, rows)`, plain tuples of str, float, int, bool and None.

    `acq_ns` is the first sample's acquisition time. A Good sample of that time with no source
    time, reason or raw value (every sample of a healthy Modbus read) is the row `(tag, value)`;
    any other sample the full `(tag, value, quality, acq_ns, source_ns, reason[, raw])`.
    Chosen over JSON because formatting floats as text costs about 2 µs per sample; pickle keeps
    exact values (NaN and infinities included). The short rows and a pickler without its memo
    (`_dumps`) cut the cost of the full rows by more than half. Where the first sample has a
    reason (a read that failed: every sample Bad with the same reason), the memo is kept: it
    writes the shared reason once; either way the payload is an ordinary pickle of the same values.
    `decode` refuses anything but plain types, so a tampered file cannot make the agent run code.
    """
    acq = samples[0].acq_ns if samples else 0
    good, code = _GOOD, _QUALITY_CODE
    rows = [
        (s.tag, s.value)
        if s.acq_ns == acq
        and s.quality is good
        and s.source_ns is None
        and s.reason is None
        and s.raw is None
        else (s.tag, s.value, code[s.quality], s.acq_ns, s.source_ns, s.reason)
        if s.raw is None
        else (s.tag, s.value, code[s.quality], s.acq_ns, s.source_ns, s.reason, s.raw)
        for s in samples
    ]
    if rows and len(rows[0]) > 2 and rows[0][5] is not None:  # a failed read: one shared reason
        return plain_pickle.dumps((acq, rows))
    return plain_pickle.dumps((acq, rows), shared=False)


def decode(payload: bytes, encoding: int = ENCODING) -> list[Sample]:
    if encoding == ENCODING_JSON:
        return _samples(json.loads(payload))
    loaded = plain_pickle.loads(payload, "outbox payload")
    if encoding == ENCODING_PICKLE_ROWS:
        return _samples(loaded)
    acq, rows = loaded
    good, qualities = _GOOD, _QUALITIES
    return [
        Sample(r[0], r[1], good, acq)
        if len(r) == 2
        else Sample(r[0], r[1], qualities[r[2]], r[3], r[4], r[5], r[6] if len(r) > 6 else None)
        for r in rows
    ]


def _samples(rows: list[Any]) -> list[Sample]:
    return [_sample(r) for r in rows]


def _sample(r: Sequence[Any]) -> Sample:
    """A full row: six fields, seven when the sample keeps an implausible raw value."""
    return Sample(r[0], r[1], _QUALITIES[r[2]], r[3], r[4], r[5], r[6] if len(r) > 6 else None)


def open_database(path: Path, synchronous: Literal["full", "normal"]) -> sqlite3.Connection:
    """The outbox file at `path` (created if missing), migrated to `SCHEMA_VERSION`; one
    connection, for the calling thread only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=True)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous.upper()}")
        db.execute("PRAGMA journal_size_limit=67108864")
        version = db.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        db.close()
        raise OutboxError(f"outbox {path}: not a usable SQLite file ({exc})") from exc
    if version > SCHEMA_VERSION:
        db.close()
        raise OutboxError(
            f"outbox {path} has schema version {version}, newer than this agent's "
            f"{SCHEMA_VERSION}: upgrade the agent or move the file aside"
        )
    _migrate(path, db, version)
    return db


def _migrate(path: Path, db: sqlite3.Connection, version: int) -> None:
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
    log.info("outbox_schema_migrated", path=str(path), to_version=SCHEMA_VERSION)


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
