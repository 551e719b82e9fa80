"""The acquisition worker link's frames: length-prefixed pickles of plain tuples, loaded strictly.

A worker process (`edge_agent/workers/`) hands the main process what its pollers read over its
stdout pipe, and the main process talks to it over its stdin. Each frame is a 4-byte big-endian
length and a pickle (protocol 5) of `(kind, body)`, where the body holds nothing but tuples,
lists, str, int, float, bool, bytes and None: `contracts/plain_pickle.py` (the outbox's loader
too) refuses every class and function, so a confused or hostile peer cannot make either side run
code, and a frame longer than `MAX_FRAME_BYTES` is refused before it is read.

Pickle rather than JSON: floats stay exact (NaN and infinities included) and encoding costs a
fraction of formatting text. Batches travel as columns (`BatchEncoder`), source statistics as
`stats_row`.

Frames, by kind:
- main → worker: `("start", (overrides, sources))`, the `--set` overrides (never on argv: they
  may carry secrets) and the names of the sources this worker reads;
- worker → main: `("tags", (id, tags))` a tag list, once, ahead of the first batch that uses
  it; `("samples", columns)` a published batch, `("record", columns)` history for the outbox
  only; `("stats", [stats_row, ...])` its sources' counters.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterable, Sequence
from itertools import repeat
from typing import Any

from edge_agent.contracts import plain_pickle
from edge_agent.contracts.samples import Quality, Sample
from edge_agent.contracts.status import SourceStats

MAX_FRAME_BYTES = 64 * 1024 * 1024
_HEADER = struct.Struct(">I")
_QUALITIES = (Quality.GOOD, Quality.UNCERTAIN, Quality.BAD)
_QUALITY_CODE = {q: i for i, q in enumerate(_QUALITIES)}

Frame = tuple[str, Any]
StatsRow = tuple[Any, ...]


class LinkError(Exception):
    """A frame that cannot be what the other side sent: the link is unusable from here on."""


def encode_frame(kind: str, body: object) -> bytes:
    payload = plain_pickle.dumps((kind, body))
    return _HEADER.pack(len(payload)) + payload


def decode_payload(payload: bytes) -> Frame:
    try:
        frame = plain_pickle.loads(payload, "worker link frame")
    except Exception as exc:  # truncated or garbled: pickle raises a handful of types
        raise LinkError(f"worker link frame cannot be read: {exc!r}") from exc
    if not (isinstance(frame, tuple) and len(frame) == 2 and isinstance(frame[0], str)):
        raise LinkError(f"worker link frame is not (kind, body): {type(frame).__name__}")
    return frame[0], frame[1]


async def read_frame(reader: asyncio.StreamReader) -> Frame | None:
    """The next frame, or None at a clean end of the stream (EOF between frames)."""
    try:
        header = await reader.readexactly(_HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise LinkError("worker link ended inside a frame header") from exc
        return None
    (size,) = _HEADER.unpack(header)
    if size > MAX_FRAME_BYTES:
        raise LinkError(f"worker link frame of {size} bytes exceeds {MAX_FRAME_BYTES}")
    try:
        payload = await reader.readexactly(size)
    except asyncio.IncompleteReadError as exc:
        raise LinkError(f"worker link ended inside a frame ({len(exc.partial)} of {size})") from exc
    return decode_payload(payload)


class BatchEncoder:
    """The worker's side: batches as columns, each source's tag list sent once.

    A batch frame is `(tags_id, values, qualities, acq_ns, source_ns, reasons, raws)`: `values`
    a list; each other column a list, or a 1-tuple `(v,)` when every sample has that same value
    (one read shares its acquisition time, quality Good, no source time, no reason, no raw
    value). A batch's tag list (the same every cycle of a source) goes ahead once in a
    `("tags", (tags_id, tags))` frame; the main process then reuses the same string objects
    batch after batch, so their hashes are computed once for every dictionary downstream.
    """

    def __init__(self) -> None:
        self._ids: dict[tuple[str, ...], int] = {}

    def encode(self, kind: str, samples: Sequence[Sample]) -> bytes:
        tags = tuple([s.tag for s in samples])
        ident = self._ids.get(tags)
        ahead = b""
        if ident is None:
            ident = self._ids[tags] = len(self._ids)
            ahead = encode_frame("tags", (ident, tags))
        columns = (
            ident,
            [s.value for s in samples],
            _same_or_all([_QUALITY_CODE[s.quality] for s in samples]),
            _same_or_all([s.acq_ns for s in samples]),
            _same_or_all([s.source_ns for s in samples]),
            _same_or_all([s.reason for s in samples]),
            _raws([s.raw for s in samples]),
        )
        return ahead + encode_frame(kind, columns)


class BatchDecoder:
    """The main process's side of one worker run: the tag lists it was sent, and the batches."""

    def __init__(self) -> None:
        self._tags: dict[int, tuple[str, ...]] = {}

    def learn(self, body: object, allowed: frozenset[str] | None = None) -> None:
        """A `tags` frame; with `allowed`, a tag outside it (not one of this worker's) is
        refused: the main process files a worker's batches under the worker's own tags."""
        if not (isinstance(body, tuple) and len(body) == 2 and isinstance(body[1], tuple)):
            raise LinkError(f"worker link tags frame is malformed: {body!r:.80}")
        ident, tags = body
        if not all(isinstance(t, str) for t in tags):
            raise LinkError(
                f"worker link tags frame holds a tag that is not a string: {tags!r:.80}"
            )
        if allowed is not None and not allowed.issuperset(tags):
            foreign = sorted(set(tags) - allowed)
            raise LinkError(
                f"worker link tags frame names tags of no source of it: {foreign!r:.80}"
            )
        self._tags[ident] = tags

    def decode(self, body: object) -> list[Sample]:
        """A `samples` or `record` frame."""
        if not (isinstance(body, tuple) and len(body) == 7):
            raise LinkError(f"worker link batch is not 7 columns: {body!r:.80}")
        ident, values, qualities, acq, source, reasons, raws = body
        tags = self._tags.get(ident)
        if tags is None:
            raise LinkError(f"worker link batch names tag list {ident!r}, never sent")
        n = len(tags)
        if not isinstance(values, list) or len(values) != n:
            raise LinkError(f"worker link batch has values for other tags than {n}")
        try:
            if isinstance(qualities, tuple):
                quality_column: Iterable[Quality] = repeat(_QUALITIES[qualities[0]], n)
            else:
                quality_column = [_QUALITIES[q] for q in _column(qualities, n)]
            if source == reasons == raws == (None,):  # a good read: the defaults, 10 % faster
                return list(map(Sample, tags, values, quality_column, _column(acq, n)))
            return list(map(Sample, tags, values, quality_column, _column(acq, n),
                            _column(source, n), _column(reasons, n), _column(raws, n)))  # fmt: skip
        except (IndexError, KeyError, TypeError) as exc:
            raise LinkError(f"worker link batch is malformed: {exc!r}") from exc


def _same_or_all(column: list[Any]) -> list[Any] | tuple[Any]:
    """`(v,)` when every entry equals the first (ints, str and None only: no 1 == 1.0 == True)."""
    if column and column.count(column[0]) == len(column):
        return (column[0],)
    return column


def _raws(column: list[Any]) -> list[Any] | tuple[Any]:
    """Raw values are any type, so only "all None" is folded (None equals nothing else)."""
    return (None,) if column.count(None) == len(column) else column


def _column(column: object, n: int) -> Iterable[Any]:
    if isinstance(column, tuple) and len(column) == 1:
        return repeat(column[0], n)
    if isinstance(column, list) and len(column) == n:
        return column
    raise LinkError(f"worker link batch column is neither one value nor {n}: {column!r:.80}")


def stats_row(st: SourceStats) -> StatsRow:
    """One source's counters as a plain tuple (the order `apply_stats_row` reads)."""
    counts, total = st.read_latency.snapshot()
    return (
        st.source,
        st.connected,
        st.reads,
        st.samples,
        st.overruns,
        st.connects,
        st.connection_losses,
        st.read_seconds_total,
        st.last_read_s,
        st.last_error,
        counts,
        total,
    )


def apply_stats_row(st: SourceStats, row: StatsRow, base: SourceStats | None = None) -> None:
    """Set `st` from a worker's row; with `base` (what earlier runs of the worker counted), the
    counters carry on from there, so they never go backwards when a worker is restarted."""
    try:
        _, connected, reads, samples, overruns, connects, losses, seconds, last, error = row[:10]
        counts, total = tuple(row[10]), float(row[11])
        st.connected = bool(connected)
        st.reads = (base.reads if base else 0) + int(reads)
        st.samples = (base.samples if base else 0) + int(samples)
        st.overruns = (base.overruns if base else 0) + int(overruns)
        st.connects = (base.connects if base else 0) + int(connects)
        st.connection_losses = (base.connection_losses if base else 0) + int(losses)
        st.read_seconds_total = (base.read_seconds_total if base else 0.0) + float(seconds)
        st.last_read_s = float(last)
        st.last_error = None if error is None else str(error)
        if base is not None:
            old, old_total = base.read_latency.snapshot()
            counts = tuple(a + b for a, b in zip(old, counts, strict=True))
            total += old_total
        st.read_latency.restore(counts, total)
    except (ValueError, TypeError) as exc:
        raise LinkError(f"worker link stats row is malformed: {exc!r}") from exc
