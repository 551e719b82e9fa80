"""Edge agent for a hybrid copper smelter: acquisition, process KPIs, durable delivery, control."""

from edge_agent.samples import Quality, Sample

__all__ = ["Quality", "Sample"]
__version__ = "0.1.0"
