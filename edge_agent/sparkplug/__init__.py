"""Sparkplug B 3.0 edge node: the agent as one edge node, one device per plant unit.

`node.EdgeNode` is the protocol state machine (no I/O); `service` runs it on an MQTT connection,
fed from the outbox; `sink` builds it for the runtime; `dcmd` is where device commands go. The
payload schema is ours (`sparkplug_b.proto`, from the specification).
"""

from edge_agent.sparkplug.sink import build_services

__all__ = ["build_services"]
