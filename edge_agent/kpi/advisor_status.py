"""The advisor on the status board: its current verdict, read from the TagStore."""

from __future__ import annotations

from edge_agent.contracts.status import ComponentStatus
from edge_agent.tagstore import TagStore


class AdvisorHealth:
    """The advisor's current verdict (`kpi.advisor.validity`, policy, reason) from the TagStore.

    Its recommendation is information, not the agent's health: always healthy, never watched
    (the KPI engine publishes into the same store, so a stuck engine shows as stale KPI tags).
    """

    def __init__(self, store: TagStore) -> None:
        self._store = store

    def status(self) -> ComponentStatus:
        validity = self._store.get("kpi.advisor.validity")
        policy = self._store.get("kpi.advisor.policy")
        reason = self._store.get("kpi.advisor.reason")
        state = str(validity.value) if validity is not None and validity.good else "unknown"
        detail = " ".join(
            str(s.value) for s in (policy, reason) if s is not None and s.value is not None
        )
        return ComponentStatus("advisor", "kpi", state, True, detail=detail, watched=False)
