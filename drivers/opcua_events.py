"""OPC UA Alarms & Conditions (Part 9): a server's own conditions, subscribed to as events.

One session of its own per source (next to the data sessions of `drivers/opcua.py`, with the same
security and identity): an event monitored item on the notifier node (the Server object by
default) for AlarmConditionType and its subtypes, with a select clause of just the fields the
alarm model needs. After each (re)connect the driver calls ConditionRefresh: the server then sends
every condition it retains between a RefreshStart and a RefreshEnd event, which the driver hands
over as one `ConditionSnapshot`, so the consumer learns what is active now and what cleared while
we were away. Between refreshes each event is a `ConditionEvent`.

`acknowledge` calls AcknowledgeableConditionType's Acknowledge method on the condition (ObjectId
the ConditionId, arguments the EventId of the latest event and a comment), as Part 9 prescribes;
a server refusal (BadEventIdUnknown, BadConditionBranchAlreadyAcked, BadUserAccessDenied …)
becomes `WriteRefused` with the status name.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

import structlog
from asyncua import ua
from asyncua.client.client import Client
from asyncua.client.ua_client import UaClientState
from asyncua.common.events import get_filter_from_event_type
from asyncua.common.subscription import Subscription
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds as _O
from asyncua.ua.uaerrors import UaError, UaStatusCodeError

from drivers.base import DriverConnectionError, WriteRefused
from drivers.opcua import OpcUaDriver
from drivers.opcua_nodes import node_id
from drivers.opcua_values import datetime_ns
from edge_agent.contracts.opcua import NodeIdRef, OpcUaSettings, parse_node_ref

log = structlog.get_logger(__name__)


def _ns0(identifier: int) -> ua.NodeId:
    return ua.NodeId(identifier, 0)  # type: ignore[arg-type]


# (type that defines the field, browse path): the select clause, in this order.
_FIELDS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (_O.BaseEventType, ("EventId",)),
    (_O.BaseEventType, ("EventType",)),
    (_O.BaseEventType, ("SourceName",)),
    (_O.BaseEventType, ("Time",)),
    (_O.BaseEventType, ("Message",)),
    (_O.BaseEventType, ("Severity",)),
    (_O.ConditionType, ("ConditionName",)),
    (_O.ConditionType, ("Retain",)),
    (_O.ConditionType, ("EnabledState", "Id")),
    (_O.ConditionType, ("Comment",)),
    (_O.ConditionType, ("ClientUserId",)),
    (_O.AcknowledgeableConditionType, ("AckedState", "Id")),
    (_O.AlarmConditionType, ("ActiveState", "Id")),
)
_REFRESH_START = _ns0(_O.RefreshStartEventType)
_REFRESH_END = _ns0(_O.RefreshEndEventType)
_ACKNOWLEDGE = _ns0(_O.AcknowledgeableConditionType_Acknowledge)


@dataclass(frozen=True, slots=True)
class ConditionEvent:
    """One condition's state as a server event reported it.

    `condition_id` is the ConditionId as a node id string (`ns=2;s=…`), the key of a condition;
    `event_id` is what Acknowledge must quote. `active` is None for a condition that is not an
    alarm (no ActiveState), `retain` False when the server no longer finds it interesting
    (inactive and acknowledged).
    """

    condition_id: str
    condition_name: str
    source_name: str
    event_id: bytes
    severity: int
    message: str
    time_ns: int | None
    active: bool | None
    acknowledged: bool | None
    enabled: bool
    retain: bool
    comment: str | None = None
    client_user: str | None = None


@dataclass(frozen=True, slots=True)
class ConditionSnapshot:
    """Every condition the server retains, from one ConditionRefresh: those not in it are
    inactive and acknowledged (they cleared, or were never raised)."""

    conditions: tuple[ConditionEvent, ...]


ConditionUpdate = ConditionEvent | ConditionSnapshot


def _text(value: Any) -> str:
    if isinstance(value, ua.LocalizedText):
        return value.Text or ""
    return "" if value is None else str(value)


def _flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def condition_event(fields: dict[str, Any]) -> ConditionEvent | None:
    """The event's fields (select clause names) as a ConditionEvent; None when it is not one."""
    cid, event_id = fields.get("NodeId"), fields.get("EventId")
    if not isinstance(cid, ua.NodeId) or cid.is_null() or not isinstance(event_id, bytes):
        return None
    severity = fields.get("Severity")
    time = fields.get("Time")
    comment = _text(fields.get("Comment")) or None
    return ConditionEvent(
        condition_id=cid.to_string(),
        condition_name=_text(fields.get("ConditionName")) or cid.to_string(),
        source_name=_text(fields.get("SourceName")),
        event_id=event_id,
        severity=int(severity) if isinstance(severity, int) else 1,
        message=_text(fields.get("Message")),
        time_ns=datetime_ns(time) if time is not None else None,
        active=_flag(fields.get("ActiveState/Id")),
        acknowledged=_flag(fields.get("AckedState/Id")),
        enabled=fields.get("EnabledState/Id") is not False,
        retain=fields.get("Retain") is True,
        comment=comment,
        client_user=_text(fields.get("ClientUserId")) or None,
    )


class OpcUaConditionDriver:
    """The conditions of one OPC UA source: `connect`, then `read` until it raises, `close`."""

    def __init__(self, source: OpcUaSettings) -> None:
        self.source = source
        self.log = log.bind(source=source.name)
        notifier = parse_node_ref(source.conditions.notifier)
        assert isinstance(notifier, NodeIdRef)  # the settings refuse a browse path
        self._notifier = notifier
        self._client: Client | None = None
        self._subscription: Subscription | None = None
        self._queue: asyncio.Queue[ConditionUpdate] = asyncio.Queue()
        self._refreshing: list[ConditionEvent] | None = None
        self._lost: str | None = None

    async def connect(self) -> None:
        await self.close()
        self._queue = asyncio.Queue()
        self._refreshing, self._lost = None, None
        try:
            client = await OpcUaDriver(self.source).open_client()
            self._client = client
            namespaces = await client.get_namespace_array()
            notifier = client.get_node(node_id(self._notifier, namespaces))
            interval = self.source.conditions.publishing_interval_ms
            sub = await client.create_subscription(interval, self)
            self._subscription = sub
            types = [
                client.get_node(t) for t in (_O.AlarmConditionType, _REFRESH_START, _REFRESH_END)
            ]
            evfilter = await get_filter_from_event_type(types)
            evfilter.SelectClauses = [_select(t, path) for t, path in _FIELDS]
            evfilter.SelectClauses.append(_condition_id())
            await sub.subscribe_events(notifier, evfilter=evfilter, queuesize=10_000)
            await client.get_node(_O.ConditionType).call_method(
                _ns0(_O.ConditionType_ConditionRefresh),
                ua.Variant(sub.subscription_id, ua.VariantType.UInt32),
            )
        except DriverConnectionError:
            await self.close()
            raise
        except (TimeoutError, UaError, OSError, ConnectionError) as exc:
            await self.close()
            raise DriverConnectionError(
                f"OPC UA condition subscription on {self.source.endpoint}: {exc!r}"
            ) from exc
        self.log.info("opcua_conditions_subscribed", notifier=self.source.conditions.notifier)

    async def read(self, timeout_s: float = 1.0) -> list[ConditionUpdate]:
        """What arrived since the last read, waiting up to `timeout_s` for the first; raises
        DriverConnectionError when the session is gone."""
        self._check_connected()
        updates: list[ConditionUpdate] = []
        if self._queue.empty():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    updates.append(await self._queue.get())
        while not self._queue.empty():
            updates.append(self._queue.get_nowait())
        return updates

    async def acknowledge(self, condition_id: str, event_id: bytes, comment: str) -> None:
        client = self._client
        if client is None:
            raise DriverConnectionError(f"no session to {self.source.endpoint}")
        try:
            await client.get_node(ua.NodeId.from_string(condition_id)).call_method(
                _ACKNOWLEDGE,
                ua.Variant(event_id, ua.VariantType.ByteString),
                ua.Variant(ua.LocalizedText(comment), ua.VariantType.LocalizedText),
            )
        except UaStatusCodeError as exc:
            raise WriteRefused(
                f"server refused Acknowledge of {condition_id} ({ua.StatusCode(exc.code).name})"
            ) from exc
        except (TimeoutError, UaError, OSError, ConnectionError) as exc:
            raise DriverConnectionError(f"OPC UA Acknowledge of {condition_id}: {exc!r}") from exc

    async def close(self) -> None:
        client, self._client, self._subscription = self._client, None, None
        if client is not None:
            try:
                await asyncio.wait_for(client.disconnect(), timeout=self.source.timeout_s)
            except Exception as exc:  # a dead session cannot be closed politely; drop it
                self.log.debug("opcua_close_failed", error=repr(exc))

    def _check_connected(self) -> None:
        client = self._client
        if client is None or self._lost or client.uaclient.state is not UaClientState.CONNECTED:
            why = self._lost or "transport closed"
            raise DriverConnectionError(
                f"OPC UA condition session to {self.source.endpoint} is lost ({why})"
            )

    # ----------------------------------------------------------------- subscription handler

    def event_notification(self, event: Any) -> None:
        fields = {k: v.Value for k, v in event.get_event_props_as_fields_dict().items()}
        event_type = fields.get("EventType")
        if event_type == _REFRESH_START:
            self._refreshing = []
        elif event_type == _REFRESH_END:
            found, self._refreshing = self._refreshing or [], None
            self._queue.put_nowait(ConditionSnapshot(tuple(found)))
        elif (condition := condition_event(fields)) is None:
            self.log.debug("opcua_event_not_a_condition", event_type=str(event_type))
        elif self._refreshing is not None:
            self._refreshing.append(condition)
        else:
            self._queue.put_nowait(condition)

    def status_change_notification(self, status: ua.StatusChangeNotification) -> None:
        code = ua.StatusCode(status.Status) if isinstance(status.Status, int) else status.Status  # type: ignore[arg-type]
        if not code.is_good():
            self._lost = code.name


def _select(type_id: int, path: tuple[str, ...]) -> ua.SimpleAttributeOperand:
    op = ua.SimpleAttributeOperand()
    op.TypeDefinitionId = _ns0(type_id)
    op.BrowsePath = [ua.QualifiedName(name, 0) for name in path]
    op.AttributeId = AttributeIds.Value
    return op


def _condition_id() -> ua.SimpleAttributeOperand:
    """Part 9 5.5.2: the ConditionId is the NodeId attribute of the ConditionType, no path."""
    op = ua.SimpleAttributeOperand()
    op.TypeDefinitionId = _ns0(_O.ConditionType)
    op.AttributeId = AttributeIds.NodeId
    return op
