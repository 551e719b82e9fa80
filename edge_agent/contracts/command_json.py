"""What every command over MQTT (setpoints, alarm actions) must pass before it is read at all.

A command is one JSON object with each key once and a timestamp the sender vouches for; the
parsers of `edge_agent.control` and `edge_agent.alarms` share these two checks.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any


class DuplicateKeyError(ValueError):
    """A JSON object names one key twice: the payload is ambiguous, whichever copy wins."""


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """`json.loads` keeps the last of repeated keys; `{"value": 1e9, "value": 31600}` would
    pass a reviewer's eye with one value and reach the guard with the other. Refuse it."""
    body = dict(pairs)
    if len(body) != len(pairs):
        keys = [k for k, _ in pairs]
        repeated = sorted({k for k in keys if keys.count(k) > 1})
        raise DuplicateKeyError(f"duplicate key {', '.join(map(repr, repeated))}")
    return body


def loads(payload: bytes) -> Any:
    """Strict JSON: UTF-8, each key of each object once. Raises ValueError (or RecursionError)."""
    return json.loads(payload.decode("utf-8"), object_pairs_hook=unique_keys)


def timestamp_ns(ts: Any) -> int | None:
    """RFC 3339 with a zone, or epoch milliseconds; None for anything else."""
    if isinstance(ts, bool):
        return None
    if isinstance(ts, int | float):
        try:
            return int(ts * 1_000_000)
        except (OverflowError, ValueError):
            return None
    if isinstance(ts, str) and len(ts) <= 40:
        try:
            when = datetime.fromisoformat(ts)
        except ValueError:
            return None
        if when.tzinfo is None:
            return None
        return int(when.timestamp()) * 1_000_000_000 + when.microsecond * 1000
    return None
