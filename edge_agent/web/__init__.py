"""The read-only browser view and JSON API, served on the health listener (docs/operations.md,
"Web view"): live tags, KPI trends against the target trajectory, the advisor's reasoning and
the delivery health, with every asset served by the agent itself."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge_agent.config import AgentConfig
from edge_agent.pipeline import SampleBus
from edge_agent.status_board import StatusBoard
from edge_agent.web.access import tls_context
from edge_agent.web.view import WebView

if TYPE_CHECKING:
    from edge_agent.alarms.engine import AlarmEngine

__all__ = ["WebView", "attach", "tls_context"]


def attach(
    cfg: AgentConfig, board: StatusBoard, bus: SampleBus, alarms: AlarmEngine | None = None
) -> WebView | None:
    """runtime's hook: the view, subscribed to the bus, unless `[web] enabled = false`."""
    if not cfg.web.enabled or not cfg.health.enabled:
        return None
    view = WebView(cfg, bus.store, board, alarms)
    view.subscribe(bus)
    return view
