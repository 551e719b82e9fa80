"""`/api/alarms`: the alarm summary an operator reads (ISA-18.2's alarm list), from the engine.

Three lists: `active` (annunciated and needing attention: active unacknowledged, active
acknowledged, returned unacknowledged), `removed` (shelved with expiry and reason, suppressed by
design, out of service) and `history` (the engine's latest events, newest first: since the agent
started, at most `alarms.engine.HISTORY`; `edge-agent alarms report` reads the full record from
InfluxDB). Active alarms are sorted the way an operator works them: unacknowledged first, then by
priority, then newest first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edge_agent.alarms.machine import AlarmStatus
from edge_agent.alarms.model import State
from edge_agent.contracts.samples import iso_utc

if TYPE_CHECKING:
    from edge_agent.alarms.engine import AlarmEngine

ANNUNCIATED = (State.ACTIVE_UNACK, State.ACTIVE_ACK, State.RETURNED_UNACK)
REMOVED = (State.SHELVED, State.SUPPRESSED, State.OUT_OF_SERVICE)
HISTORY_SHOWN = 200


def alarm_json(st: AlarmStatus) -> dict[str, Any]:
    d = st.defn
    body: dict[str, Any] = {
        "id": d.id,
        "state": st.state.value,
        "active": st.active,
        "acknowledged": st.acknowledged,
        "priority": d.priority.label,
        "priority_level": int(d.priority),
        "message": d.message,
        "tag": d.tag,
        "kind": d.kind.value,
        "value": st.value,
        "unit": d.unit,
        "source": d.source,
        "active_since_ms": st.active_since_ns // 1_000_000 if st.active_since_ns else None,
    }
    if st.shelved_until_ns is not None:
        body["shelved_until"] = iso_utc(st.shelved_until_ns)
        body["shelved_until_ms"] = st.shelved_until_ns // 1_000_000
        body["shelve_reason"] = st.shelve_reason
    return body


def alarms_document(engine: AlarmEngine | None) -> dict[str, Any]:
    if engine is None:
        return {"configured": False, "active": [], "removed": [], "history": [], "counts": {}}
    statuses = list(engine.alarms.statuses())
    active = [st for st in statuses if st.state in ANNUNCIATED]
    active.sort(key=lambda st: (st.acknowledged, st.defn.priority, -(st.active_since_ns or 0)))
    removed = sorted((st for st in statuses if st.state in REMOVED), key=lambda st: st.defn.id)
    history = list(engine.history)[-HISTORY_SHOWN:]
    counts = {state.value: n for state, n in engine.alarms.counts().items()}
    return {
        "configured": True,
        "counts": counts,
        "total": len(statuses),
        "active": [alarm_json(st) for st in active],
        "removed": [alarm_json(st) for st in removed],
        "history": [{**e.as_dict(), "ts_ms": e.ts_ns // 1_000_000} for e in reversed(history)],
        "commands": engine.commands is not None,
    }
