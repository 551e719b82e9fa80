"""Process KPIs: recycled-feed ratio, furnace heat balance and setpoint advisor, CO2."""

from edge_agent.kpi.engine import build_services

__all__ = ["build_services"]
