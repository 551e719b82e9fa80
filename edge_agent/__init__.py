"""Edge agent for a hybrid copper smelter: acquisition, process KPIs, durable delivery, control.

Kept empty of imports, so that importing a small part (`edge_agent.contracts`) costs nothing.
"""

__version__ = "0.1.0"
