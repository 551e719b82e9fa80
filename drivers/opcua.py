"""OPC UA driver (asyncua): batched polling or subscriptions, sessions resolved afresh, writes.

Polling reads every tag with Read requests of at most the server's MaxNodesPerRead nodes (asyncua
does no chunking of its own, and a server refuses a whole request that is too large). Large tag
sets can be sharded over several sessions (`sessions`), which are read concurrently: one session
is one TCP connection whose encoding and decoding becomes the limit above a few thousand tags
per second.

Node ids are resolved against the namespace table of each new session, never cached across
sessions: after a server restart the namespace indices may have moved, which is how other
collectors end up stuck on BadNodeIdUnknown until someone restarts them.

The library's own reconnect is left off: the acquisition layer supervises reconnects and builds
a new client each time, so a client that ended up in a bad state is simply thrown away.

Values and status codes become samples in `drivers/opcua_values.py`; certificates, trust and
identity are `drivers/opcua_security.py`'s; nodes and ranges, `opcua_nodes.py`/`opcua_ranges.py`.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from itertools import repeat
from typing import Any

import structlog
from asyncua import ua
from asyncua.client.client import Client
from asyncua.client.ua_client import UaClientState
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.uaerrors import UaError, UaStatusCodeError

from drivers.base import DriverConnectionError, WriteRefused
from drivers.opcua_nodes import node_id, relative_path
from drivers.opcua_ranges import Range, read_eu_ranges
from drivers.opcua_security import configure_security, explain
from drivers.opcua_values import check_writable, coerce, datetime_ns, quality_of, to_sample
from edge_agent.contracts.opcua import (
    NodeIdRef,
    NodeRefError,
    OpcUaPoint,
    OpcUaSettings,
    SubscriptionGroup,
    parse_node_ref,
)
from edge_agent.contracts.samples import Quality, Sample, Value, now_ns

# Also importable from here, as before the values and security moved to modules of their own.
__all__ = ["OpcUaDriver", "datetime_ns", "quality_of", "to_sample"]

log = structlog.get_logger(__name__)

# When the server states no limit (0), stay well inside common message size limits.
DEFAULT_BATCH = 1000


def _ns0(identifier: int) -> ua.NodeId:
    return ua.NodeId(identifier, 0)  # type: ignore[arg-type]


_LIMITS = "Server_ServerCapabilities_OperationLimits_"
_LIMIT_NODES = [
    _ns0(getattr(ObjectIds, _LIMITS + name))
    for name in (
        "MaxNodesPerRead",
        "MaxMonitoredItemsPerCall",
        "MaxNodesPerTranslateBrowsePathsToNodeIds",
    )
]
# Service results that mean the session or the connection is gone, not that a node is bad.
_CONNECTION_STATUS = (
    "BadSession", "BadSecureChannel", "BadConnection", "BadServer", "BadShutdown",
    "BadCommunication", "BadTimeout", "BadNotConnected", "BadTcp", "BadRequestTimeout",
)  # fmt: skip


def _is_connection_status(exc: UaStatusCodeError) -> bool:
    return ua.StatusCode(exc.code).name.startswith(_CONNECTION_STATUS)


class _Session:
    """One client session and the shard of tags it serves."""

    def __init__(self, driver: OpcUaDriver, client: Client, tags: Sequence[OpcUaPoint]) -> None:
        self.driver = driver
        self.client = client
        self.tags = list(tags)
        self.node_ids: list[ua.NodeId | None] = [None] * len(self.tags)
        self.failed: dict[int, str] = {}  # tag index -> reason it cannot be read this session
        # Each read: the ids of the tags it reads, in order, and the request itself.
        self.batches: list[tuple[tuple[str, ...], ua.ReadParameters]] = []
        self.pending: list[Sample] = []
        self.lost: str | None = None
        self.max_read = DEFAULT_BATCH
        self.max_monitored = DEFAULT_BATCH
        self.max_translate = DEFAULT_BATCH
        self.monitored_calls = 0  # CreateMonitoredItems requests made (batches)
        self.eu_ranges: dict[str, Range] = {}  # tag id -> the node's EURange, where it has one

    # ------------------------------------------------------------------------------- setup

    async def prepare(self) -> None:
        await self._read_limits()
        await self._resolve()
        ranges = await read_eu_ranges(self.client, self.node_ids, self.max_translate, self.max_read)
        self.eu_ranges = {t.id: r for t, r in zip(self.tags, ranges, strict=True) if r is not None}
        readable = [i for i in range(len(self.tags)) if i not in self.failed]
        ts = ua.TimestampsToReturn.Server if self.driver.server_ts else ua.TimestampsToReturn.Source
        for start in range(0, len(readable), self.max_read):
            indices = readable[start : start + self.max_read]
            params = ua.ReadParameters()
            params.TimestampsToReturn = ts
            for i in indices:
                rv = ua.ReadValueId()
                rv.NodeId = self.node_ids[i]
                rv.AttributeId = AttributeIds.Value
                params.NodesToRead.append(rv)
            self.batches.append((tuple(self.tags[i].id for i in indices), params))

    async def _read_limits(self) -> None:
        results = await self.client.uaclient.read_attributes(_LIMIT_NODES, AttributeIds.Value)
        limits = []
        for dv in results:
            ok = dv.StatusCode is None or dv.StatusCode.is_good()
            value = dv.Value.Value if ok and dv.Value is not None else 0
            limits.append(int(value) if value else DEFAULT_BATCH)
        self.max_read, self.max_monitored, self.max_translate = limits
        configured = self.driver.source.max_nodes_per_read
        if configured:
            self.max_read = min(self.max_read, configured)

    async def _resolve(self) -> None:
        namespaces = await self.client.get_namespace_array()
        paths: list[tuple[int, ua.RelativePath]] = []
        for i, tag in enumerate(self.tags):
            ref = self.driver.refs[tag.id]
            try:
                if isinstance(ref, NodeIdRef):
                    self.node_ids[i] = node_id(ref, namespaces)
                else:
                    paths.append((i, relative_path(ref, namespaces)))
            except NodeRefError as exc:
                self.failed[i] = "BadNamespaceUnknown"
                self.driver.log.warning("opcua_node_unresolved", tag=tag.id, error=str(exc))
        root = _ns0(ObjectIds.RootFolder)
        for start in range(0, len(paths), self.max_translate):
            chunk = paths[start : start + self.max_translate]
            results = await self.client.translate_browsepaths(root, [p for _, p in chunk])
            for (i, _), result in zip(chunk, results, strict=True):
                if result.StatusCode.is_good() and result.Targets:
                    self.node_ids[i] = result.Targets[0].TargetId
                else:
                    self.failed[i] = (
                        result.StatusCode.name if not result.StatusCode.is_good() else "BadNoMatch"
                    )
                    self.driver.log.warning(
                        "opcua_browse_path_unresolved", tag=self.tags[i].id, status=self.failed[i]
                    )

    async def subscribe(self, groups: dict[str, SubscriptionGroup]) -> None:
        """One subscription per group; monitored items created MaxMonitoredItemsPerCall at once."""
        by_group: dict[str, list[int]] = {}
        for i, tag in enumerate(self.tags):
            if i not in self.failed:
                by_group.setdefault(tag.group, []).append(i)
        for name, indices in by_group.items():
            group = groups[name]
            sub = await self.client.create_subscription(group.publishing_interval_ms, self)
            for start in range(0, len(indices), self.max_monitored):
                chunk = indices[start : start + self.max_monitored]
                results = await sub.create_monitored_items([self._item(i, group) for i in chunk])
                self.monitored_calls += 1
                for i, result in zip(chunk, results, strict=True):
                    if isinstance(result, ua.StatusCode):
                        self.failed[i] = result.name
                        self.driver.log.warning(
                            "opcua_monitored_item_failed", tag=self.tags[i].id, status=result.name
                        )

    def _item(self, i: int, group: SubscriptionGroup) -> ua.MonitoredItemCreateRequest:
        rv = ua.ReadValueId()
        rv.NodeId = self.node_ids[i]
        rv.AttributeId = AttributeIds.Value
        params = ua.MonitoringParameters()
        params.ClientHandle = i
        params.SamplingInterval = group.sampling_interval_ms
        params.QueueSize = group.queue_size
        params.DiscardOldest = True
        if group.deadband != "none":
            flt = ua.DataChangeFilter()
            flt.Trigger = ua.DataChangeTrigger.StatusValue
            flt.DeadbandType = 1 if group.deadband == "absolute" else 2
            flt.DeadbandValue = group.deadband_value
            params.Filter = flt
        item = ua.MonitoredItemCreateRequest()
        item.ItemToMonitor = rv
        item.MonitoringMode = ua.MonitoringMode.Reporting
        item.RequestedParameters = params
        return item

    # ----------------------------------------------------------------- subscription handler

    def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
        item = data.monitored_item
        i = item.ClientHandle
        if 0 <= i < len(self.tags):
            self.pending.append(
                to_sample(self.tags[i].id, item.Value, now_ns(), self.driver.server_ts)
            )

    def status_change_notification(self, status: ua.StatusChangeNotification) -> None:
        code = ua.StatusCode(status.Status) if isinstance(status.Status, int) else status.Status  # type: ignore[arg-type]
        if not code.is_good():
            self.lost = code.name

    # -------------------------------------------------------------------------------- reads

    def _failed_samples(self, acq: int) -> list[Sample]:
        return [
            Sample(self.tags[i].id, None, Quality.BAD, acq, None, r) for i, r in self.failed.items()
        ]

    def check_connected(self) -> None:
        if self.lost is not None or self.client.uaclient.state is not UaClientState.CONNECTED:
            why = self.lost or "transport closed"
            raise DriverConnectionError(
                f"OPC UA session to {self.driver.source.endpoint} is lost ({why})"
            )

    async def poll(self) -> list[Sample]:
        samples: list[Sample] = []
        server_ts = self.driver.server_ts
        for ids, params in self.batches:
            try:
                results = await self.client.uaclient.read(params)
            except UaStatusCodeError as exc:
                if _is_connection_status(exc):
                    raise DriverConnectionError(f"OPC UA read: {exc}") from exc
                reason = ua.StatusCode(exc.code).name
                acq = now_ns()
                samples.extend(Sample(i, None, Quality.BAD, acq, None, reason) for i in ids)
                continue
            except (TimeoutError, UaError, OSError, ConnectionError) as exc:
                raise DriverConnectionError(
                    f"OPC UA read from {self.driver.source.endpoint}: {exc!r}"
                ) from exc
            if len(results) != len(ids):
                raise ValueError(f"OPC UA read: {len(results)} results for {len(ids)} nodes")
            samples.extend(map(to_sample, ids, results, repeat(now_ns()), repeat(server_ts)))
        if self.failed:
            samples.extend(self._failed_samples(now_ns()))
        return samples

    def drain(self) -> list[Sample]:
        self.check_connected()
        samples, self.pending = self.pending, []
        if self.failed:
            samples.extend(self._failed_samples(now_ns()))
        return samples


class OpcUaDriver:
    """Reads, subscribes to and writes the tags of one OPC UA source (`OpcUaSettings`)."""

    def __init__(self, source: OpcUaSettings) -> None:
        self.source = source
        self.server_ts = source.timestamps == "server"
        self.refs = {t.id: parse_node_ref(t.node) for t in source.tag}
        self.log = log.bind(source=source.name)
        self._sessions: list[_Session] = []
        self._session_of: dict[str, tuple[_Session, int]] = {}
        self._variant_types: dict[str, ua.VariantType] = {}
        groups = {g.name: g for g in source.groups}
        interval_ms = source.poll_interval_s * 1000
        groups.setdefault(
            "default",
            SubscriptionGroup(
                name="default",
                sampling_interval_ms=interval_ms,
                publishing_interval_ms=interval_ms,
                queue_size=1,
                deadband="none",
                deadband_value=0.0,
            ),
        )
        self._groups = groups

    def value_ranges(self) -> dict[str, Range]:
        """The EURange the server publishes per tag (read on connect): instrument spans."""
        return {tag: r for session in self._sessions for tag, r in session.eu_ranges.items()}

    async def connect(self) -> None:
        await self.close()
        shards = _shard(self.source.tag, self.source.sessions)
        try:
            for shard in shards:
                client = await self._open_client()
                session = _Session(self, client, shard)
                self._sessions.append(session)
                await session.prepare()
                if self.source.mode == "subscribe":
                    await session.subscribe(self._groups)
        except DriverConnectionError:
            await self.close()
            raise
        except (TimeoutError, UaError, OSError, ConnectionError) as exc:
            await self.close()
            raise DriverConnectionError(
                f"OPC UA session setup on {self.source.endpoint}: {exc!r}"
            ) from exc
        for session in self._sessions:
            for i, tag in enumerate(session.tags):
                self._session_of[tag.id] = (session, i)

    async def read(self) -> list[Sample]:
        if self.source.mode == "subscribe":
            return [s for session in self._sessions for s in session.drain()]
        if len(self._sessions) == 1:
            return await self._sessions[0].poll()
        parts = await asyncio.gather(*(s.poll() for s in self._sessions))
        return [s for part in parts for s in part]

    async def write(self, tag_id: str, value: Value) -> None:
        located = self._session_of.get(tag_id)
        if located is None:
            raise WriteRefused(f"source {self.source.name} has no connected tag {tag_id!r}")
        session, i = located
        tag = session.tags[i]
        check_writable(tag, value)
        node_id = session.node_ids[i]
        if node_id is None:
            raise WriteRefused(
                f"tag {tag_id}: node {tag.node} is not resolved ({session.failed.get(i)})"
            )
        try:
            vtype = self._variant_types.get(tag_id)
            if vtype is None:
                (dv,) = await session.client.uaclient.read_attributes([node_id], AttributeIds.Value)
                if dv.Value is None:
                    raise WriteRefused(f"tag {tag_id}: node has no value to take the type from")
                vtype = dv.Value.VariantType
                self._variant_types[tag_id] = vtype
            dv = ua.DataValue(ua.Variant(coerce(value, vtype), vtype))
            (status,) = await session.client.uaclient.write_attributes(
                [node_id], [dv], AttributeIds.Value
            )
        except (TimeoutError, UaError, OSError, ConnectionError) as exc:
            raise DriverConnectionError(f"OPC UA write of {tag_id}: {exc!r}") from exc
        if not status.is_good():
            raise WriteRefused(f"tag {tag_id}: server refused the write ({status.name})")

    async def close(self) -> None:
        sessions, self._sessions = self._sessions, []
        self._session_of.clear()
        for session in sessions:
            try:
                await asyncio.wait_for(session.client.disconnect(), timeout=self.source.timeout_s)
            except Exception as exc:  # a dead session cannot be closed politely; drop it
                self.log.debug("opcua_close_failed", error=repr(exc))

    # ---------------------------------------------------------------------------- connection

    async def open_client(self) -> Client:
        """A client connected with this source's security and identity (drivers/opcua_events)."""
        return await self._open_client()

    async def _open_client(self) -> Client:
        src = self.source
        # The library's watchdog reads the server state every interval with that as timeout:
        # shorter than a request may take on a busy server, it would report false losses.
        watchdog_s = max(1.0, src.timeout_s)
        client = Client(src.endpoint, timeout=src.timeout_s, watchdog_intervall=watchdog_s)
        client.name = client.description = f"edge-agent {src.name}"
        client.session_timeout = 60_000
        try:
            await configure_security(client, src)
            await client.connect()
        except (TimeoutError, OSError) as exc:
            raise DriverConnectionError(
                f"cannot reach OPC UA server {src.endpoint} ({exc!r}): "
                "check that it runs and that the endpoint is right"
            ) from exc
        except UaStatusCodeError as exc:
            raise explain(src, exc) from exc
        except UaError as exc:
            raise DriverConnectionError(f"OPC UA connect to {src.endpoint} failed: {exc}") from exc
        return client


def _shard(tags: Sequence[OpcUaPoint], sessions: int) -> list[list[OpcUaPoint]]:
    """Contiguous, equal shards (contiguous keeps each session's reads on neighbouring nodes)."""
    sessions = max(1, min(sessions, len(tags)))
    size = math.ceil(len(tags) / sessions) if tags else 0
    return [list(tags[i : i + size]) for i in range(0, len(tags), size)] if tags else [[]]
