"""Small state files in `agent.state_dir` (KPI windows, the Sparkplug bdSeq, alarm states),
written atomically, and the append-only audit files (control writes, alarm actions).

`write_atomic` writes a temporary file beside the target, fsyncs it, renames it over the target
and fsyncs the directory: after a crash or power loss the file holds either the old content or
the new, never a torn mix, and a completed write is not rolled back. It blocks; callers on the
event loop use `asyncio.to_thread`.

`append_line` adds one line to an append-only file and fsyncs it; a line torn by a crash is left
as it is and the next one starts on a fresh line, so readers skip exactly the torn one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, text: str, encoding: str = "utf-8") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding=encoding) as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be fsynced
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def append_line(path: Path, line: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        prefix = b"\n" if _torn_tail(fd) else b""
        os.write(fd, prefix + line.encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)


def _torn_tail(fd: int) -> bool:
    """True when a crash left the file without a final newline: start a fresh line."""
    size = os.fstat(fd).st_size
    return size > 0 and os.pread(fd, 1, size - 1) != b"\n"
