"""The acquisition worker link's frames: length-prefixed pickles of plain tuples, loaded strictly.

A worker process (`edge_agent/workers/`) hands the main process what its pollers read over its
stdout pipe, and the main process talks to it over its stdin. Each frame is a 4-byte big-endian
length and a pickle (protocol 5) of `(kind, body)`, where the body holds nothing but tuples,
lists, str, int, float, bool, bytes and None: the loader refuses every class and function (the
outbox's restricted-unpickler idea), so a confused or hostile peer cannot make either side run
code, and a frame longer than `MAX_FRAME_BYTES` is refused before it is read.

Pickle rather than JSON: floats stay exact (NaN and infinities included) and encoding costs a
fraction of formatting text. Samples travel as rows `(tag, value, quality, acq_ns, source_ns,
reason, raw)`; source statistics as `stats_row`.

Frames, by kind:
- main → worker: `("start", (overrides, sources))`, the `--set` overrides (never on argv: they
  may carry secrets) and the names of the sources this worker reads;
- worker → main: `("samples", rows)` a published batch, `("record", rows)` history for the
  outbox only, `("stats", [stats_row, ...])` its sources' counters.
"""

from __future__ import annotations

import asyncio
import io
import pickle
import struct
from collections.abc import Sequence
from typing import Any

from edge_agent.contracts.samples import Quality, Sample
from edge_agent.contracts.status import SourceStats

MAX_FRAME_BYTES = 64 * 1024 * 1024
_HEADER = struct.Struct(">I")
_QUALITIES = {q.value: q for q in Quality}

Frame = tuple[str, Any]
StatsRow = tuple[Any, ...]


class LinkError(Exception):
    """A frame that cannot be what the other side sent: the link is unusable from here on."""


class _PlainUnpickler(pickle.Unpickler):
    """Loads lists, tuples, str, bytes, numbers, bool and None; refuses every class or function."""

    def find_class(self, module: str, name: str) -> Any:
        raise LinkError(f"worker link frame names {module}.{name}: refused")


def encode_frame(kind: str, body: object) -> bytes:
    payload = pickle.dumps((kind, body), protocol=5)
    return _HEADER.pack(len(payload)) + payload


def decode_payload(payload: bytes) -> Frame:
    try:
        frame = _PlainUnpickler(io.BytesIO(payload)).load()
    except LinkError:
        raise
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


def sample_rows(samples: Sequence[Sample]) -> list[tuple[Any, ...]]:
    return [
        (s.tag, s.value, s.quality.value, s.acq_ns, s.source_ns, s.reason, s.raw) for s in samples
    ]


def samples_from_rows(rows: object) -> list[Sample]:
    """The samples of a `samples` or `record` frame; a malformed row is a LinkError."""
    if not isinstance(rows, list):
        raise LinkError(f"worker link samples are not a list: {type(rows).__name__}")
    try:
        return [Sample(r[0], r[1], _QUALITIES[r[2]], r[3], r[4], r[5], r[6]) for r in rows]
    except (IndexError, KeyError, TypeError) as exc:
        raise LinkError(f"worker link sample row is malformed: {exc!r}") from exc


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
