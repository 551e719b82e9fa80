"""Points a sink refuses for good (e.g. a field type InfluxDB will never accept), kept in the
outbox file with the reason, for an engineer to inspect; they never block the batches behind."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence


def keep(db: sqlite3.Connection, sink: str, items: Sequence[tuple[str, str]], ts_ns: int) -> None:
    """Store (reason, item) pairs of `sink` in one transaction."""
    db.execute("BEGIN IMMEDIATE")
    db.executemany(
        "INSERT INTO quarantine (sink, created_ns, reason, item) VALUES (?, ?, ?, ?)",
        [(sink, ts_ns, reason, item) for reason, item in items],
    )
    db.execute("COMMIT")


def kept(db: sqlite3.Connection, sink: str) -> list[tuple[str, str]]:
    """(reason, item) of every quarantined point of `sink`, oldest first."""
    rows: list[tuple[str, str]] = db.execute(
        "SELECT reason, item FROM quarantine WHERE sink = ? ORDER BY id", (sink,)
    ).fetchall()
    return rows


def count(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT count(*) FROM quarantine").fetchone()[0])
