"""Alarms with an ISA-18.2 life cycle on any tag or KPI (docs/alarms.md).

`model` is the vocabulary (definitions, priorities, states, events), `machine` one alarm's state
machine, `conditions` the raw limit checks, `evaluator` the tag-indexed set of all alarms.
"""

from edge_agent.alarms.evaluator import AlarmSet
from edge_agent.alarms.machine import AlarmStatus
from edge_agent.alarms.model import (
    ActionRefused,
    AlarmDefinition,
    AlarmEvent,
    Kind,
    Priority,
    State,
    Suppression,
    Transition,
)

__all__ = [
    "ActionRefused",
    "AlarmDefinition",
    "AlarmEvent",
    "AlarmSet",
    "AlarmStatus",
    "Kind",
    "Priority",
    "State",
    "Suppression",
    "Transition",
]
