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
"""

from __future__ import annotations

import asyncio
import calendar
import hashlib
import math
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog
from asyncua import ua
from asyncua.client.client import Client
from asyncua.client.ua_client import UaClientState
from asyncua.crypto import security_policies
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.uaerrors import UaError, UaStatusCodeError
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from drivers.base import DriverAccessDenied, DriverConnectionError, WriteRefused
from drivers.opcua_nodes import node_id, relative_path
from drivers.opcua_ranges import Range, read_eu_ranges
from edge_agent.contracts.opcua import (
    NodeIdRef,
    NodeRefError,
    OpcUaPoint,
    OpcUaSettings,
    SubscriptionGroup,
    parse_node_ref,
)
from edge_agent.contracts.samples import Quality, Sample, Value, now_ns, shortest_float32

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
_USER_REJECTED = {"BadUserAccessDenied", "BadIdentityTokenRejected", "BadIdentityTokenInvalid"}
# Service results that mean the session or the connection is gone, not that a node is bad.
_CONNECTION_STATUS = (
    "BadSession", "BadSecureChannel", "BadConnection", "BadServer", "BadShutdown",
    "BadCommunication", "BadTimeout", "BadNotConnected", "BadTcp", "BadRequestTimeout",
)  # fmt: skip


def quality_of(status: ua.StatusCode | None) -> tuple[Quality, str | None]:
    """OPC UA severity bits (the top two) to our quality; the status name becomes the reason."""
    code = status.value if status is not None else 0
    severity = code >> 30
    if severity == 0:
        return Quality.GOOD, None
    assert status is not None
    return (Quality.UNCERTAIN if severity == 1 else Quality.BAD), status.name


def datetime_ns(dt: datetime | None) -> int | None:
    """An OPC UA DateTime (naive UTC or aware) as integer ns since the epoch; None if absent."""
    if dt is None or dt.year < 1970:
        return None
    return calendar.timegm(dt.utctimetuple()) * 1_000_000_000 + dt.microsecond * 1000


def plain_value(value: Any) -> Value:
    """The Variant's Python value as a Sample value; raises TypeError for what we do not carry."""
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, ua.LocalizedText):
        return value.Text or ""
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(type(value).__name__)


def to_sample(tag_id: str, dv: ua.DataValue, acq: int, server_ts: bool) -> Sample:
    quality, reason = quality_of(dv.StatusCode)
    source_ns = datetime_ns(dv.ServerTimestamp if server_ts else dv.SourceTimestamp)
    if quality is Quality.BAD:
        return Sample(tag_id, None, quality, acq, source_ns, reason)
    raw = dv.Value.Value if dv.Value is not None else None
    if raw is None:
        return Sample(tag_id, None, Quality.BAD, acq, source_ns, "null_value")
    try:
        value = plain_value(raw)
    except TypeError as exc:
        return Sample(tag_id, None, Quality.BAD, acq, source_ns, f"unsupported_type_{exc}")
    if isinstance(value, float):
        if not math.isfinite(value):
            return Sample(tag_id, None, Quality.BAD, acq, source_ns, "not_finite")
        if dv.Value.VariantType is ua.VariantType.Float:  # type: ignore[union-attr]
            value = shortest_float32(value)
    return Sample(tag_id, value, quality, acq, source_ns, reason)


def describe_certificate(cert: x509.Certificate) -> str:
    thumbprint = hashlib.sha1(
        cert.public_bytes(Encoding.DER)
    ).hexdigest()  # OPC UA names certificates by SHA-1
    return f"{cert.subject.rfc4514_string()} (SHA-1 thumbprint {thumbprint})"


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
        self.batches: list[tuple[list[int], ua.ReadParameters]] = []
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
            self.batches.append((indices, params))

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
        for indices, params in self.batches:
            try:
                results = await self.client.uaclient.read(params)
            except UaStatusCodeError as exc:
                if _is_connection_status(exc):
                    raise DriverConnectionError(f"OPC UA read: {exc}") from exc
                reason = ua.StatusCode(exc.code).name
                acq = now_ns()
                samples.extend(
                    Sample(self.tags[i].id, None, Quality.BAD, acq, None, reason) for i in indices
                )
                continue
            except (TimeoutError, UaError, OSError, ConnectionError) as exc:
                raise DriverConnectionError(
                    f"OPC UA read from {self.driver.source.endpoint}: {exc!r}"
                ) from exc
            acq = now_ns()
            tags = self.tags
            samples.extend(
                to_sample(tags[i].id, dv, acq, server_ts)
                for i, dv in zip(indices, results, strict=True)
            )
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
        _check_writable(tag, value)
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
            dv = ua.DataValue(ua.Variant(_coerce(value, vtype), vtype))
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
            await self._configure_security(client)
            await client.connect()
        except (TimeoutError, OSError) as exc:
            raise DriverConnectionError(
                f"cannot reach OPC UA server {src.endpoint} ({exc!r}): "
                "check that it runs and that the endpoint is right"
            ) from exc
        except UaStatusCodeError as exc:
            raise self._explain(exc) from exc
        except UaError as exc:
            raise DriverConnectionError(f"OPC UA connect to {src.endpoint} failed: {exc}") from exc
        return client

    async def _configure_security(self, client: Client) -> None:
        src, sec = self.source, self.source.security
        if sec.policy != "None":
            assert sec.certificate is not None
            assert sec.private_key is not None
            cert = _load_cert(sec.certificate)
            client.application_uri = _application_uri(cert) or client.application_uri
            trusted = [_load_cert(p) for p in sec.trusted_server_certificates]
            client.certificate_validator = _TrustList(src.endpoint, trusted)
            await client.set_security(
                getattr(security_policies, f"SecurityPolicy{sec.policy}"),
                certificate=str(sec.certificate),
                private_key=str(sec.private_key),
                mode=getattr(ua.MessageSecurityMode, sec.mode),
            )
        if src.username is not None and src.password is not None:
            client.set_user(src.username)
            client.set_password(src.password.resolve())
        if src.user_certificate is not None and src.user_private_key is not None:
            await client.load_client_certificate(str(src.user_certificate))
            await client.load_private_key(src.user_private_key)

    def _explain(self, exc: UaStatusCodeError) -> DriverConnectionError:
        """Turn the server's refusal into what the operator should do about it."""
        src = self.source
        name = ua.StatusCode(exc.code).name
        if name in _USER_REJECTED:
            if src.username is not None:
                return DriverAccessDenied(
                    f"OPC UA server {src.endpoint} rejected user {src.username!r} ({name}): "
                    f"check the username and the password in {_describe_ref(src.password)}"
                )
            return DriverAccessDenied(
                f"OPC UA server {src.endpoint} rejected our identity ({name}): configure "
                "username/password or a user_certificate it accepts"
            )
        if name.startswith(("BadCertificate", "BadSecurityChecksFailed")):
            return DriverAccessDenied(
                f"OPC UA server {src.endpoint} does not accept our certificate "
                f"{src.security.certificate} ({name}): add it to the server's trusted certificates "
                "(for most servers: copy it into pki/trusted/certs) and check it is not expired"
            )
        return DriverConnectionError(f"OPC UA connect to {src.endpoint} failed ({name})")


class _TrustList:
    """Our side of the trust: the server's certificate must be one we were told to trust."""

    def __init__(self, endpoint: str, trusted: list[x509.Certificate]) -> None:
        self.endpoint = endpoint
        self.fingerprints = {c.fingerprint(hashes.SHA256()) for c in trusted}

    async def __call__(self, cert: x509.Certificate, _app: Any) -> None:
        if cert.fingerprint(hashes.SHA256()) not in self.fingerprints:
            raise DriverAccessDenied(
                f"OPC UA server {self.endpoint} presents certificate {describe_certificate(cert)}, "
                "which is not in security.trusted_server_certificates: verify it with the server's "
                "administrator, then add the file to that list"
            )


def _load_cert(path: Path) -> x509.Certificate:
    data = path.read_bytes()
    return (
        x509.load_pem_x509_certificate(data)
        if b"-----BEGIN" in data
        else x509.load_der_x509_certificate(data)
    )


def _application_uri(cert: x509.Certificate) -> str | None:
    """OPC UA servers check the client's ApplicationUri against its certificate's SAN URI."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return None
    uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


def _describe_ref(ref: Any) -> str:
    if ref is None:
        return "the config"
    for key in ("file", "env", "credential"):
        if getattr(ref, key) is not None:
            return f"{key} {getattr(ref, key)}"
    return "the config"


def _shard(tags: Sequence[OpcUaPoint], sessions: int) -> list[list[OpcUaPoint]]:
    """Contiguous, equal shards (contiguous keeps each session's reads on neighbouring nodes)."""
    sessions = max(1, min(sessions, len(tags)))
    size = math.ceil(len(tags) / sessions) if tags else 0
    return [list(tags[i : i + size]) for i in range(0, len(tags), size)] if tags else [[]]


def _check_writable(tag: OpcUaPoint, value: Value) -> None:
    if not tag.writable:
        raise WriteRefused(f"tag {tag.id} is not writable (set writable = true with bounds)")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return
    if (tag.min is not None and value < tag.min) or (tag.max is not None and value > tag.max):
        raise WriteRefused(f"tag {tag.id}: {value} is outside [{tag.min}, {tag.max}]")


def _coerce(value: Value, vtype: ua.VariantType) -> Value:
    """Python value for the node's own type (the server checks the type strictly)."""
    if vtype is ua.VariantType.Boolean:
        return bool(value)
    if vtype in (ua.VariantType.Float, ua.VariantType.Double):
        return float(value)
    if vtype is ua.VariantType.String:
        return str(value)
    if isinstance(value, str) or (isinstance(value, float) and not value.is_integer()):
        raise WriteRefused(f"{value!r} is not an integer, as the node's type {vtype.name} needs")
    return int(value)
