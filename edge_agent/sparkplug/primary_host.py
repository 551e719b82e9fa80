"""Primary host application awareness: the retained JSON STATE message of one host.

An edge node configured with a primary host publishes births only while that host says it is
online, and leaves the server when the host says it went offline there. Each STATE carries the
host's connect time; a message older than the last one accepted belongs to an earlier host
session (a late will, say) and is ignored, as the specification requires.
"""

from __future__ import annotations

import json
from enum import Enum


class HostEvent(Enum):
    ONLINE = "online"
    OFFLINE = "offline"
    IGNORED = "ignored"  # older than the last accepted STATE, or unreadable


class PrimaryHost:
    def __init__(self, host_id: str) -> None:
        self.host_id = host_id
        self.online = False
        self.last_timestamp_ms: int | None = None
        self.last_problem: str | None = None

    def update(self, payload: bytes) -> HostEvent:
        parsed = parse_state(payload)
        if isinstance(parsed, str):
            self.last_problem = parsed
            return HostEvent.IGNORED
        online, timestamp_ms = parsed
        if self.last_timestamp_ms is not None and timestamp_ms < self.last_timestamp_ms:
            self.last_problem = (
                f"STATE timestamp {timestamp_ms} is older than the last accepted "
                f"{self.last_timestamp_ms}"
            )
            return HostEvent.IGNORED
        self.last_timestamp_ms = timestamp_ms
        self.online = online
        self.last_problem = None
        return HostEvent.ONLINE if online else HostEvent.OFFLINE


def parse_state(payload: bytes) -> tuple[bool, int] | str:
    """(online, timestamp ms) from a Sparkplug 3.0 STATE payload, or what is wrong with it."""
    try:
        doc = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return f"STATE payload is not JSON: {payload[:60]!r}"
    if not isinstance(doc, dict):
        return f"STATE payload is not a JSON object: {payload[:60]!r}"
    online, timestamp = doc.get("online"), doc.get("timestamp")
    if not isinstance(online, bool):
        return f"STATE 'online' must be true or false, got {online!r}"
    if isinstance(timestamp, bool) or not isinstance(timestamp, int | float):
        return f"STATE 'timestamp' must be a number (ms since epoch), got {timestamp!r}"
    return online, int(timestamp)


def state_payload(online: bool, timestamp_ms: int) -> bytes:
    """What a host publishes (used by the tests' host and by `edge-agent` diagnostics)."""
    return json.dumps({"online": online, "timestamp": timestamp_ms}).encode()
