"""The durable outbox: every accepted sample is on disk before any sink sees it.

Layout: one SQLite database (WAL) in `agent.state_dir`, one row per appended batch holding a
compact payload (the rows `(tag, value, quality, acq_ns, source_ns, reason[, raw])`, just
`(tag, value)` for a Good sample at the batch's acquisition time, see `format.encode`), and one
cursor row per sink holding the id of the last batch that sink confirmed. A batch is forgotten
when every sink has confirmed it, or when the size cap drops it (oldest first, counted and
logged). Points a sink refuses for good go to `outbox/quarantine.py`.

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

On-disk format (`outbox/format.py`): `PRAGMA user_version` carries the schema version; older
files are upgraded in place, in one transaction, and a file newer than this code is refused with a
clear error. The queue itself is `outbox/store.py`, a sink's view of it `outbox/cursor.py`, the
SQLite thread `outbox/worker.py`.
"""

from edge_agent.outbox.cursor import Cursor
from edge_agent.outbox.format import SCHEMA_VERSION, Batch, OutboxError, decode, encode
from edge_agent.outbox.state import OutboxState
from edge_agent.outbox.store import CURSOR_PERSIST_S, Outbox

__all__ = [
    "CURSOR_PERSIST_S",
    "SCHEMA_VERSION",
    "Batch",
    "Cursor",
    "Outbox",
    "OutboxError",
    "OutboxState",
    "decode",
    "encode",
]
