"""The flash furnace over OPC UA, read by a real asyncua client over loopback."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime, timedelta

import pytest
from asyncua import Client, Node, ua

from simulators.opcua_conditions import CONDITIONS
from simulators.tags import FSF_TAGS, NAMESPACE_URI
from tests.support.opcua_reads import node, read
from tests.support.plant import PlantSim
from tests.support.waiting import eventually

pytestmark = pytest.mark.asyncio(loop_scope="module")

VARIANT = {"double": ua.VariantType.Double, "bool": ua.VariantType.Boolean,
           "int32": ua.VariantType.Int32}  # fmt: skip


@pytest.fixture
def sim(shared_plant_sim: PlantSim) -> PlantSim:
    return shared_plant_sim


async def read_until_it_fails(client: Client) -> None:
    """A dropped session shows on the next request or the one after; give it a few tries."""
    for _ in range(20):
        await read(client, "fsf.matte_temp")
        await asyncio.sleep(0.05)


async def test_browse_the_tree_and_read_every_node_with_its_type_unit_and_range(
    sim: PlantSim,
) -> None:
    async with Client(sim.opcua_endpoint) as client:
        ns = await client.get_namespace_index(NAMESPACE_URI)
        fsf = await client.nodes.objects.get_child(f"{ns}:FSF")
        found: dict[str, Node] = {}
        conditions: list[str] = []
        for folder in await fsf.get_children():
            folder_name = (await folder.read_browse_name()).Name
            if folder_name == "Alarms":  # the condition objects (simulators/opcua_conditions.py)
                conditions = [
                    (await c.read_browse_name()).Name for c in await folder.get_children()
                ]
                continue
            for var in await folder.get_children():
                tag = var.nodeid.Identifier
                found[tag] = var
                assert next(t for t in FSF_TAGS if t.id == tag).folder == folder_name
        assert sorted(found) == sorted(t.id for t in FSF_TAGS)
        assert sorted(conditions) == sorted(c.name for c in CONDITIONS)
        now = datetime.now(UTC)
        for spec in FSF_TAGS:
            var = found[spec.id]
            dv = await var.read_data_value()
            assert dv.StatusCode.is_good(), spec.id
            assert dv.Value.VariantType == VARIANT[spec.kind], spec.id
            assert abs(dv.SourceTimestamp - now) < timedelta(seconds=10), spec.id
            eu = await (await var.get_child("0:EngineeringUnits")).read_value()
            assert eu.DisplayName.Text == spec.unit, spec.id
            rng = await (await var.get_child("0:EURange")).read_value()
            assert (rng.Low, rng.High) == spec.eu_range, spec.id
            assert spec.eu_range[0] <= float(dv.Value.Value) <= spec.eu_range[1], spec.id
            access = await var.read_attribute(ua.AttributeIds.UserAccessLevel)
            writable = bool(access.Value.Value & ua.AccessLevel.CurrentWrite.mask)
            assert writable == spec.writable, spec.id


async def test_setpoint_writes_move_the_process(sim: PlantSim) -> None:
    async with Client(sim.opcua_endpoint) as client:
        before = {t: (await read(client, t)).Value.Value
                  for t in ("fsf.escrap_feed_rate", "fsf.matte_temp", "fsf.o2_flow")}  # fmt: skip
        writes = {"fsf.escrap_feed_sp": 25.0, "fsf.fuel_flow_sp": 1500.0, "fsf.o2_flow_sp": 34000.0}
        for tag, value in writes.items():
            await (await node(client, tag)).write_value(ua.Variant(value, ua.VariantType.Double))
            assert (await read(client, tag)).Value.Value == value

        async def moved() -> bool:
            now = {t: (await read(client, t)).Value.Value for t in before}
            return (
                now["fsf.escrap_feed_rate"] > before["fsf.escrap_feed_rate"] + 5
                and now["fsf.o2_flow"] > before["fsf.o2_flow"] + 2000
                and now["fsf.matte_temp"] > before["fsf.matte_temp"] + 5
            )

        await eventually(moved, 15.0, "the setpoint writes to move the process", interval_s=0.1)
        assert sim.plant.margin_mw > 5
    await sim.reset()


@pytest.mark.parametrize(
    ("tag", "value"),
    [("fsf.fuel_flow_sp", 1500.5), ("fsf.o2_flow_sp", 19000.0), ("fsf.escrap_feed_sp", -0.1),
     ("fsf.escrap_feed_sp", math.nan)],
)  # fmt: skip
async def test_out_of_range_setpoint_writes_are_refused(
    sim: PlantSim, tag: str, value: float
) -> None:
    async with Client(sim.opcua_endpoint) as client:
        var = await node(client, tag)
        before = await var.read_value()
        with pytest.raises(ua.uaerrors.BadOutOfRange):
            await var.write_value(ua.Variant(value, ua.VariantType.Double))
        assert await var.read_value() == before
        assert sim.plant.setpoints[tag] == before


async def test_read_only_tags_refuse_writes_and_flags_are_writable(sim: PlantSim) -> None:
    async with Client(sim.opcua_endpoint) as client:
        with pytest.raises((ua.uaerrors.BadNotWritable, ua.uaerrors.BadUserAccessDenied)):
            await (await node(client, "fsf.matte_temp")).write_value(
                ua.Variant(1.0, ua.VariantType.Double)
            )
        await (await node(client, "fsf.advisor_permissive")).write_value(True)
        await (await node(client, "fsf.agent_heartbeat")).write_value(
            ua.Variant(42, ua.VariantType.Int32)
        )
        assert sim.plant.advisor_permissive is True
        assert (await read(client, "fsf.agent_heartbeat")).Value.Value == 42
    await sim.reset()


async def test_value_faults_are_seen_by_a_client(sim: PlantSim) -> None:
    async with Client(sim.opcua_endpoint) as client:
        await sim.apply("bad:fsf.matte_temp")
        await sim.apply("uncertain:fsf.slag_temp")
        await sim.apply("spike:fsf.shaft_temp")
        await sim.apply("nan:fsf.uptake_temp")
        await sim.apply("freeze:fsf.conc_feed_total")
        bad = await read(client, "fsf.matte_temp")
        assert bad.StatusCode.value == ua.StatusCodes.BadSensorFailure
        assert bad.Value.Value is None
        assert (await read(client, "fsf.slag_temp")).StatusCode.value == (
            ua.StatusCodes.UncertainSensorNotAccurate
        )
        assert (await read(client, "fsf.shaft_temp")).Value.Value == 3600.0
        assert math.isnan((await read(client, "fsf.uptake_temp")).Value.Value)
        frozen = (await read(client, "fsf.conc_feed_total")).Value.Value

        async def plant_moved_on() -> bool:
            return float(sim.plant.values["fsf.conc_feed_total"]) > frozen + 0.5

        await eventually(
            plant_moved_on, 15.0, "the plant to move past the frozen value", interval_s=0.1
        )
        still = await read(client, "fsf.conc_feed_total")
        assert still.Value.Value == frozen
        assert still.StatusCode.is_good()
        await sim.apply("running:0")
        assert (await read(client, "fsf.running")).Value.Value is False
        await sim.apply("clear")
        assert (await read(client, "fsf.running")).Value.Value is True
        assert (await read(client, "fsf.matte_temp")).StatusCode.is_good()
        assert (await read(client, "fsf.conc_feed_total")).Value.Value > frozen
        await sim.apply("reset:fsf.conc_feed_total")
        assert (await read(client, "fsf.conc_feed_total")).Value.Value < 1.0


async def test_dropped_connections_fail_the_session_and_new_ones_work(sim: PlantSim) -> None:
    client = Client(sim.opcua_endpoint, timeout=2)
    await client.connect()
    try:
        await read(client, "fsf.matte_temp")
        await sim.drop_connections("opcua")
        with pytest.raises((ConnectionError, ua.UaError, asyncio.TimeoutError)):
            await read_until_it_fails(client)
    finally:
        await asyncio.gather(client.disconnect(), return_exceptions=True)
    async with Client(sim.opcua_endpoint) as fresh:
        assert (await read(fresh, "fsf.matte_temp")).StatusCode.is_good()


async def test_restart_keeps_the_address_space_and_moves_the_namespace_index(
    sim: PlantSim,
) -> None:
    async with Client(sim.opcua_endpoint) as client:
        ns_before = await client.get_namespace_index(NAMESPACE_URI)
    await sim.apply("renumber:opcua")
    async with Client(sim.opcua_endpoint) as client:
        ns_after = await client.get_namespace_index(NAMESPACE_URI)
        assert ns_after != ns_before
        for spec in FSF_TAGS:
            assert (await read(client, spec.id)).StatusCode.is_good(), spec.id


async def test_restart_closes_sessions_and_serves_the_same_nodes(sim: PlantSim) -> None:
    client = Client(sim.opcua_endpoint, timeout=2)
    await client.connect()
    try:
        await sim.apply("restart:opcua")
        with pytest.raises((ConnectionError, ua.UaError, asyncio.TimeoutError)):
            await read_until_it_fails(client)
    finally:
        await asyncio.gather(client.disconnect(), return_exceptions=True)
    async with Client(sim.opcua_endpoint) as fresh:
        assert (await read(fresh, "fsf.matte_temp")).StatusCode.is_good()


async def test_slow_replies_time_the_client_out(sim: PlantSim) -> None:
    async with Client(sim.opcua_endpoint, timeout=0.5) as client:
        await sim.apply("slow_opcua:2")
        try:
            with pytest.raises(asyncio.TimeoutError):
                await read(client, "fsf.matte_temp")
        finally:
            await sim.apply("clear")


class Changes:
    def __init__(self) -> None:
        self.values: list[tuple[float, datetime]] = []

    def datachange_notification(self, node: Node, val: float, data: object) -> None:
        dv = data.monitored_item.Value  # type: ignore[attr-defined]
        self.values.append((val, dv.SourceTimestamp))


async def test_subscriptions_report_changes_with_source_timestamps(sim: PlantSim) -> None:
    async with Client(sim.opcua_endpoint) as client:
        changes = Changes()
        subscription = await client.create_subscription(100, changes)
        await subscription.subscribe_data_change(await node(client, "fsf.matte_temp"))

        async def three_changes() -> bool:
            return len({v for v, _ in changes.values}) >= 3

        await eventually(three_changes, 15.0, "three value changes", interval_s=0.1)
        stamps = [ts for _, ts in changes.values]
        assert stamps == sorted(stamps)
        assert abs(stamps[-1] - datetime.now(UTC)) < timedelta(seconds=10)
        await subscription.delete()
