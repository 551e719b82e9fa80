"""The flash furnace over OPC UA (asyncua): the tree, units, ranges, setpoints and statuses.

Address space: namespace `urn:smelter:sim`, string node ids equal to the tag ids
(`nsu=urn:smelter:sim;s=fsf.matte_temp`), objects FSF/{Feed,Temperatures,Assays,CoolingWater,
Setpoints,Status}, and on every variable the EngineeringUnits (UNECE) and EURange properties.
Values carry wall-clock source timestamps. Client writes go through `_guarded_write`, which
refuses out-of-range setpoints per node with BadOutOfRange before asyncua stores anything.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asyncua import ua as _ua
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.server import Server
from asyncua.server.user_managers import UserManager
from cryptography.x509.oid import ExtendedKeyUsageOID

from simulators.faults import Faults
from simulators.opcua_conditions import PlantConditions
from simulators.plant import Plant, SetpointError, Value
from simulators.tags import FSF_TAGS, NAMESPACE_URI, OPCUA_PATH, TagSpec

# asyncua wraps literals in int/str subclasses (ua.Int16, ua.String, ...) that strict mypy then
# demands at every call; this module treats the `ua` namespace as dynamically typed instead.
ua: Any = _ua

# UNECE Recommendation 20 common codes, as OPC UA Part 8 asks for EUInformation.
_UNECE = {"t/h": "E18", "t": "TNE", "kg": "KGM", "kg/h": "E93", "Nm³/h": "MQH", "m³/h": "MQH",
          "%": "P1", "°C": "CEL", "": "C62", "MPa": "MPA"}  # fmt: skip
_UNECE_NS = "http://www.opcfoundation.org/UA/units/un/cefact"
_VARIANT = {"double": ua.VariantType.Double, "bool": ua.VariantType.Boolean,
            "int32": ua.VariantType.Int32}  # fmt: skip
_STATUS = {"bad": ua.StatusCodes.BadSensorFailure,
           "uncertain": ua.StatusCodes.UncertainSensorNotAccurate}  # fmt: skip

SECURITY_POLICIES = [
    ua.SecurityPolicyType.NoSecurity,
    ua.SecurityPolicyType.Basic256Sha256_Sign,
    ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
    ua.SecurityPolicyType.Aes128Sha256RsaOaep_Sign,
    ua.SecurityPolicyType.Aes128Sha256RsaOaep_SignAndEncrypt,
    ua.SecurityPolicyType.Aes256Sha256RsaPss_Sign,
    ua.SecurityPolicyType.Aes256Sha256RsaPss_SignAndEncrypt,
]


def eu_information(unit: str) -> Any:
    code = _UNECE.get(unit, "C62")
    unit_id = 0
    for ch in code:
        unit_id = (unit_id << 8) | ord(ch)
    return ua.EUInformation(
        NamespaceUri=_UNECE_NS,
        UnitId=unit_id,
        DisplayName=ua.LocalizedText(unit),
        Description=ua.LocalizedText(code),
    )


_ADMIN = User(role=UserRole.Admin)
_ANONYMOUS = User(role=UserRole.Anonymous)


class _Users(UserManager):
    """Username/password users; anonymous sessions are refused once users are configured."""

    def __init__(self, users: dict[str, str]) -> None:
        self._users = users

    def get_user(self, iserver: Any, username: str | None = None, password: str | None = None,
                 certificate: Any = None) -> User | None:  # fmt: skip
        if username is not None and self._users.get(username) == password:
            return User(role=UserRole.User, name=username)
        return None


@dataclass
class OpcUaOptions:
    host: str = "127.0.0.1"
    port: int = 4840
    # Where the self-signed certificate and key are generated (never committed).
    cert_dir: Path | None = None
    users: dict[str, str] = field(default_factory=dict)
    synthetic_tags: int = 0


class OpcUaPlantServer:
    """One asyncua server publishing the plant; restartable on the same port (`restart`)."""

    def __init__(self, plant: Plant, faults: Faults, options: OpcUaOptions) -> None:
        self.plant, self.faults, self.options = plant, faults, options
        self.server: Server | None = None
        self.ns = 0
        self.restarts = 0
        self._nodes: dict[str, Any] = {}
        self._kinds: dict[str, TagSpec] = {t.id: t for t in FSF_TAGS}
        self._synthetic_nodes: list[Any] = []
        self._synthetic_slots: list[tuple[Any, Any]] = []  # (node id, its Value attribute)
        self.conditions: PlantConditions | None = None  # Alarms & Conditions (opcua_conditions)

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://{self.options.host}:{self.options.port}{OPCUA_PATH}"

    @property
    def certificate_path(self) -> Path | None:
        d = self.options.cert_dir
        return d / "server-cert.der" if d else None

    async def start(self) -> None:
        server = Server(user_manager=_Users(self.options.users) if self.options.users else None)
        server.iserver.bind_condition_methods = True  # ConditionRefresh, Refresh events
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name("Smelter plant simulator")
        await server.set_application_uri("urn:smelter:sim:server")
        policies = [ua.SecurityPolicyType.NoSecurity]
        if self.options.cert_dir is not None:
            await self._load_certificate(server)
            policies = SECURITY_POLICIES
        server.set_security_policy(policies)
        if self.options.users:
            server.set_identity_tokens([ua.UserNameIdentityToken])
        elif self.options.cert_dir is None:
            # Without a certificate nothing can be signed or encrypted: offer anonymous sessions
            # only, rather than user tokens asyncua would have to warn about on every start.
            server.set_identity_tokens([ua.AnonymousIdentityToken])
        # After a restart the namespace index moves: clients must resolve nsu=, not cache ns=.
        for n in range(self.restarts):
            await server.register_namespace(f"urn:smelter:sim:restart:{n}")
        self.ns = await server.register_namespace(NAMESPACE_URI)
        await self._build_tree(server)
        original = server.iserver.attribute_service.write

        async def guarded_write(params: Any, user: Any = _ADMIN) -> list[Any]:
            return await self._guarded_write(original, params, user)

        server.iserver.attribute_service.write = guarded_write  # type: ignore[method-assign]
        self._delay_reads(server)
        await server.start()
        self.server = server
        await self.publish()

    def _delay_reads(self, server: Server) -> None:
        """Wrap each client session's Read so the `slow_opcua` fault can hold its answer."""
        create = server.iserver.create_session
        faults = self.faults

        def create_session(name: str, user: Any = _ANONYMOUS, external: bool = False) -> Any:
            session = create(name, user=user, external=external)
            read = session.read

            async def slow_read(params: Any) -> Any:
                if faults.opcua_delay_s:
                    await asyncio.sleep(faults.opcua_delay_s)
                return await read(params)

            session.read = slow_read  # type: ignore[method-assign]
            return session

        server.iserver.create_session = create_session  # type: ignore[method-assign]

    async def stop(self) -> None:
        if self.server is not None:
            server, self.server = self.server, None
            await server.stop()

    async def restart(self, *, renumber: bool = False) -> None:
        """Close every session and listen again on the same port with the same address space.

        `renumber` rebuilds the server from scratch with one more namespace registered before
        ours, so the namespace index of `urn:smelter:sim` moves (clients must resolve `nsu=`);
        that costs a few seconds of asyncua start-up, the plain restart about one.
        """
        if not renumber and self.server is not None:
            await self.server.stop()
            await self.server.start()
            return
        await self.stop()
        self.restarts += 1
        await self.start()

    def drop_connections(self) -> None:
        if self.server is not None:
            for transport in list(self.server.iserver.asyncio_transports):
                transport.abort()

    async def _load_certificate(self, server: Server) -> None:
        cert_dir = self.options.cert_dir
        assert cert_dir is not None
        cert_dir.mkdir(parents=True, exist_ok=True)
        key, cert = cert_dir / "server-key.pem", cert_dir / "server-cert.der"
        await setup_self_signed_certificate(
            key, cert, "urn:smelter:sim:server", "localhost",
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
            {"commonName": "smelter-sim", "organizationName": "smelter"},
        )  # fmt: skip
        await server.load_certificate(str(cert))
        await server.load_private_key(str(key))

    async def _build_tree(self, server: Server) -> None:
        ns = self.ns
        fsf = await server.nodes.objects.add_object(
            ua.NodeId("FSF", ns), ua.QualifiedName("FSF", ns)
        )
        folders: dict[str, Any] = {}
        self._nodes.clear()
        for spec in FSF_TAGS:
            if spec.folder not in folders:
                folders[spec.folder] = await fsf.add_folder(
                    ua.NodeId(f"FSF/{spec.folder}", ns), ua.QualifiedName(spec.folder, ns)
                )
            initial = _coerce(spec, self.plant.values[spec.id])
            var = await folders[spec.folder].add_variable(
                ua.NodeId(spec.id, ns), ua.QualifiedName(spec.id.split(".", 1)[1], ns),
                ua.Variant(initial, _VARIANT[spec.kind]),
            )  # fmt: skip
            await var.write_attribute(
                ua.AttributeIds.Description, ua.DataValue(ua.LocalizedText(spec.description))
            )
            if spec.writable:
                await var.set_writable()
            await var.add_property(
                ua.NodeId(f"{spec.id}.EngineeringUnits", ns), "EngineeringUnits",
                eu_information(spec.unit), datatype=ua.ObjectIds.EUInformation,
            )  # fmt: skip
            await var.add_property(
                ua.NodeId(f"{spec.id}.EURange", ns), "EURange",
                ua.Range(Low=spec.eu_range[0], High=spec.eu_range[1]), datatype=ua.ObjectIds.Range,
            )  # fmt: skip
            self._nodes[spec.id] = var.nodeid
        self.conditions = await PlantConditions.install(server, ns, fsf, self._nodes)
        if self.options.synthetic_tags:
            root = await server.nodes.objects.add_folder(
                ua.NodeId("Synthetic", ns), ua.QualifiedName("Synthetic", ns)
            )
            await self._add_synthetic(server, root)

    async def _add_synthetic(self, server: Server, root: Any) -> None:
        """Synthetic/G000/synth.t00000 ...: 100 variables per folder, added in one batch.

        asyncua's AddNodes scans the parent's references for every child, so a flat folder of
        20 000 variables would take minutes to build; folders of 100 keep it linear.
        """
        items = []
        self._synthetic_nodes.clear()
        self._synthetic_slots.clear()
        for i in range(self.options.synthetic_tags):
            if i % SYNTHETIC_PER_FOLDER == 0:
                group = f"G{i // SYNTHETIC_PER_FOLDER:03d}"
                folder = await root.add_folder(
                    ua.NodeId(f"Synthetic/{group}", self.ns), ua.QualifiedName(group, self.ns)
                )
            tag = synthetic_tag_id(i)
            attrs = ua.VariableAttributes()
            attrs.DisplayName = ua.LocalizedText(tag)
            attrs.DataType = ua.NodeId(ua.ObjectIds.Double)
            attrs.Value = ua.Variant(0.0, ua.VariantType.Double)
            attrs.ValueRank = ua.ValueRank.Scalar
            attrs.AccessLevel = attrs.UserAccessLevel = ua.AccessLevel.CurrentRead.mask
            item = ua.AddNodesItem()
            item.RequestedNewNodeId = ua.NodeId(tag, self.ns)
            item.BrowseName = ua.QualifiedName(tag, self.ns)
            item.NodeClass = ua.NodeClass.Variable
            item.ParentNodeId = folder.nodeid
            item.ReferenceTypeId = ua.NodeId(ua.ObjectIds.HasComponent)
            item.TypeDefinition = ua.NodeId(ua.ObjectIds.BaseDataVariableType)
            item.NodeAttributes = attrs
            items.append(item)
            self._synthetic_nodes.append(item.RequestedNewNodeId)
        for result in await server.iserver.isession.add_nodes(items):
            result.StatusCode.check()

    async def publish(self, synthetic: Sequence[float] = ()) -> None:
        """Store the plant's current values (with faults) and the synthetic values given."""
        server = self.server
        if server is None:
            return
        now = datetime.now(UTC)
        values = self.plant.values
        published: dict[str, Value] = {}
        for spec in FSF_TAGS:
            status = self.faults.status.get(spec.id)
            value = _coerce(spec, self.faults.published(spec.id, values[spec.id]))
            published[spec.id] = value if not status else math.nan
            variant = ua.Variant(value, _VARIANT[spec.kind])
            if status == "bad":  # Part 4 7.7.1: a Bad value is null
                variant = ua.Variant(None, ua.VariantType.Null)
            code = ua.StatusCode(_STATUS[status]) if status else ua.StatusCode()
            dv = ua.DataValue(variant, StatusCode=code, SourceTimestamp=now, ServerTimestamp=now)
            await self._store(server, self._nodes[spec.id], dv)
        if self.conditions is not None:
            await self.conditions.update(published)
        if synthetic and not self._synthetic_slots:
            nodes: Any = server.iserver.aspace  # every synthetic node exists: we created it
            self._synthetic_slots = [
                (node_id, nodes[node_id].attributes[ua.AttributeIds.Value])
                for node_id in self._synthetic_nodes
            ]
        double = ua.VariantType.Double
        for (node_id, attribute), number in zip(self._synthetic_slots, synthetic, strict=False):
            dv = ua.DataValue(ua.Variant(number, double), SourceTimestamp=now, ServerTimestamp=now)
            if attribute.datachange_callbacks:
                await server.write_attribute_value(node_id, dv)
            else:
                attribute.value = dv

    @staticmethod
    async def _store(server: Server, node_id: Any, dv: Any) -> None:
        """Set a value in place; only monitored nodes go through asyncua's slower write path,
        which notifies subscriptions. At 20 000 synthetic tags this is the difference between
        a few and a few hundred milliseconds per publication."""
        node = server.iserver.aspace.get(node_id)
        assert node is not None, node_id
        attribute = node.attributes[ua.AttributeIds.Value]
        if attribute.datachange_callbacks:
            await server.write_attribute_value(node_id, dv)
        else:
            attribute.value = dv
            attribute.value_callback = None

    async def _guarded_write(
        self, original: Callable[..., Any], params: Any, user: Any
    ) -> list[Any]:
        by_node = {node: tag for tag, node in self._nodes.items()}
        results: list[Any] = []
        passed: list[Any] = []
        for wv in params.NodesToWrite:
            tag = by_node.get(wv.NodeId)
            if tag is None or tag not in self._kinds or wv.AttributeId != ua.AttributeIds.Value:
                results.append(None)
                passed.append(wv)
                continue
            spec = self._kinds[tag]
            if not spec.writable:
                results.append(ua.StatusCode(ua.StatusCodes.BadNotWritable))
                continue
            raw = wv.Value.Value.Value if wv.Value and wv.Value.Value else None
            try:
                if raw is None or isinstance(raw, str):
                    raise SetpointError(f"{tag}: {raw!r} is not a number", out_of_range=False)
                self.plant.write(tag, raw)
            except SetpointError as exc:
                code = (
                    ua.StatusCodes.BadOutOfRange
                    if exc.out_of_range
                    else ua.StatusCodes.BadTypeMismatch
                )
                results.append(ua.StatusCode(code))
                continue
            results.append(ua.StatusCode())
        if passed:
            passed_results = iter(await original(ua.WriteParameters(NodesToWrite=passed), user))
            results = [r if r is not None else next(passed_results) for r in results]
        if len(passed) < len(results):
            await self.publish()
        return [r if r is not None else ua.StatusCode() for r in results]


SYNTHETIC_PER_FOLDER = 100


def synthetic_tag_id(i: int) -> str:
    return f"synth.t{i:05d}"


def _coerce(spec: TagSpec, value: Value) -> Value:
    if spec.kind == "bool":
        return bool(value)
    if spec.kind == "int32":
        return int(value) if not (isinstance(value, float) and math.isnan(value)) else 0
    return float(value)
