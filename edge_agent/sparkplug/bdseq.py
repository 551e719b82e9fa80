"""The birth/death sequence number, persisted so that it keeps counting across restarts.

Every MQTT CONNECT carries a will (NDEATH) with the next bdSeq (255 wraps to 0); the NBIRTH of that
connection repeats it. A host pairs an NDEATH with the NBIRTH of the same bdSeq, so a restarted
agent must not start again at a number a host may still hold for its previous session.
"""

from __future__ import annotations

from pathlib import Path

from edge_agent.state_files import write_atomic


class BdSeqStore:
    """One small text file under the agent's state_dir holding the last bdSeq used."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def last(self) -> int | None:
        try:
            text = self.path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return None
        try:
            value = int(text)
        except ValueError:
            return None  # a damaged file: start again at 0 rather than refuse to connect
        return value if 0 <= value <= 255 else None

    def next(self) -> int:
        """The bdSeq for the next CONNECT, recorded durably before it is used (blocking I/O)."""
        last = self.last()
        value = 0 if last is None else (last + 1) % 256
        write_atomic(self.path, f"{value}\n", encoding="ascii")
        return value
