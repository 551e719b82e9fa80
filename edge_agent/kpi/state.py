"""Persisting KPI window state in the agent's state directory, so a restart keeps the windows.

Written atomically (temporary file, fsync, rename) so a crash mid-write leaves the old file.
Both functions block: the engine calls them through `asyncio.to_thread`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import structlog

from edge_agent.state_files import write_atomic

log = structlog.get_logger(__name__)


def save_json(path: Path, data: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(data, separators=(",", ":")))


def load_json(path: Path) -> dict[str, Any] | None:
    """The saved state, or None when there is none or it cannot be read (then start afresh)."""
    try:
        with path.open(encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("kpi_state_unreadable", path=str(path), error=str(exc))
        return None
    return data if isinstance(data, dict) else None


def forget_totaliser_readings(path: Path) -> None:
    """Keep the saved windows but drop the last totaliser readings they were counted from.

    For a plant whose totalisers started again from their initial values (the demo's
    simulators on every start): the next reading is a new baseline rather than a counter that
    went backwards (`totaliser_reset`) and cost the windows their coverage.
    """
    data = load_json(path)
    if data is None:
        return
    sections = [s for s in data.values() if isinstance(s, dict) and "totalisers" in s]
    for section in sections:
        del section["totalisers"]
    if sections:
        save_json(path, data)
