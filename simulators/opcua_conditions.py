"""The furnace's own alarms as OPC UA Alarms & Conditions (Part 9), as a DCS would raise them.

A few limit conditions (`CONDITIONS`) watch the values the server publishes (faults included, so
`--fault spike:fsf.matte_temp=1150` raises MatteTempLow). Each is an ExclusiveLevelAlarmType
object under FSF/Alarms, the ConditionId its node id (`nsu=urn:smelter:sim;s=FSF/Alarms/<name>`),
and every change of state is an event emitted by the Server object: activated, cleared,
acknowledged, each with a new EventId. A condition is retained while active or unacknowledged,
so ConditionRefresh (bound by asyncua) replays exactly those.

Acknowledge (AcknowledgeableConditionType's method, called on the condition) checks what a real
server checks: a known condition (BadNodeIdUnknown), the EventId of its latest event
(BadEventIdUnknown), not acknowledged already (BadConditionBranchAlreadyAcked).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from asyncua import ua as _ua
from asyncua.server.event_generator import EventGenerator
from asyncua.server.server import Server

ua: Any = _ua  # see opcua_server.py: asyncua's literal subclasses, typed dynamically here


@dataclass(frozen=True)
class ConditionSpec:
    name: str
    tag: str
    below: float
    severity: int  # 1..1000; the agent maps 801+ urgent, 601+ high, 401+ medium, else low
    message: str
    unit: str


CONDITIONS = (
    ConditionSpec("MatteTempLowLow", "fsf.matte_temp", 1150.0, 900,
                  "Matte temperature low-low: tap hole freezing", "°C"),
    ConditionSpec("MatteTempLow", "fsf.matte_temp", 1200.0, 700,
                  "Matte temperature low: freeze-up risk at the tap hole", "°C"),
    ConditionSpec("ShaftCoolingFlowLow", "fsf.cw_shaft_flow", 80.0, 500,
                  "Shaft cooling water flow low", "m³/h"),
)  # fmt: skip


@dataclass
class _Condition:
    spec: ConditionSpec
    node_id: Any
    generator: EventGenerator
    active: bool = False
    acked: bool = True
    event_id: bytes = b""
    history: list[str] = field(default_factory=list)  # transitions, for tests and the demo

    @property
    def event(self) -> Any:
        return self.generator.event


class PlantConditions:
    """The conditions of one server; `update` after each publication, `acknowledge` as method."""

    def __init__(self, conditions: list[_Condition]) -> None:
        self.conditions = {c.spec.name: c for c in conditions}
        self._by_node = {c.node_id: c for c in conditions}

    @classmethod
    async def install(
        cls, server: Server, ns: int, fsf: Any, nodes: dict[str, Any]
    ) -> PlantConditions:
        """Add the condition objects, their event generators and the Acknowledge method."""
        folder = await fsf.add_folder(ua.NodeId("FSF/Alarms", ns), ua.QualifiedName("Alarms", ns))
        made = []
        for spec in CONDITIONS:
            node = await folder.add_object(
                ua.NodeId(f"FSF/Alarms/{spec.name}", ns), ua.QualifiedName(spec.name, ns),
                objecttype=ua.ObjectIds.ExclusiveLevelAlarmType,
            )  # fmt: skip
            generator = await server.get_event_generator(ua.ObjectIds.ExclusiveLevelAlarmType)
            ev = generator.event
            ev.NodeId, ev.SourceNode, ev.SourceName = node.nodeid, nodes[spec.tag], spec.tag
            ev.ConditionName, ev.Severity = spec.name, spec.severity
            ev.LowLimit = spec.below
            setattr(ev, "EnabledState/Id", True)
            ev.EnabledState = ua.LocalizedText("Enabled")
            made.append(_Condition(spec, node.nodeid, generator))
        conditions = cls(made)
        method = server.get_node(ua.ObjectIds.AcknowledgeableConditionType_Acknowledge)
        server.link_method(method, conditions.acknowledge)
        return conditions

    async def update(self, values: dict[str, Any]) -> None:
        for c in self.conditions.values():
            value = values.get(c.spec.tag)
            if not isinstance(value, int | float) or value != value:  # NaN: no judgement
                continue
            active = value < c.spec.below
            if active != c.active:
                c.active = active
                c.acked = not active and c.acked
                await self._emit(c, "activated" if active else "cleared", f"{value:.1f}")

    async def acknowledge(self, object_id: Any, event_id: Any, comment: Any) -> Any:
        c = self._by_node.get(object_id)
        if c is None:
            return ua.StatusCode(ua.StatusCodes.BadNodeIdUnknown)
        if getattr(event_id, "Value", event_id) != c.event_id:
            return ua.StatusCode(ua.StatusCodes.BadEventIdUnknown)
        if c.acked:
            return ua.StatusCode(ua.StatusCodes.BadConditionBranchAlreadyAcked)
        c.acked = True
        c.event.Comment = getattr(comment, "Value", comment)
        await self._emit(c, "acknowledged", None)
        return []

    async def _emit(self, c: _Condition, transition: str, value: str | None) -> None:
        ev = c.event
        now = datetime.now(UTC)
        setattr(ev, "ActiveState/Id", c.active)
        ev.ActiveState = ua.LocalizedText("Active" if c.active else "Inactive")
        setattr(ev, "AckedState/Id", c.acked)
        ev.AckedState = ua.LocalizedText("Acknowledged" if c.acked else "Unacknowledged")
        ev.Retain = c.active or not c.acked
        if transition == "activated":
            setattr(ev, "ActiveState/TransitionTime", now)
        message = c.spec.message if value is None else f"{c.spec.message} ({value} {c.spec.unit})"
        await c.generator.trigger(time_attr=now, message=message)
        c.event_id = ev.EventId.Value if hasattr(ev.EventId, "Value") else ev.EventId
        c.history.append(transition)
