"""drivers/opcua_events.py on the simulator's OPC UA server: the furnace's own conditions
arrive as events, a reconnect's ConditionRefresh replays what is active, Acknowledge is called on
the condition and refused the way Part 9 says."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from drivers.base import WriteRefused
from drivers.opcua_events import (
    ConditionEvent,
    ConditionSnapshot,
    ConditionUpdate,
    OpcUaConditionDriver,
)
from edge_agent.config import OpcUaSource
from tests.support.plant import PlantSim

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture
async def sim(shared_plant_sim: PlantSim) -> AsyncIterator[PlantSim]:
    await shared_plant_sim.reset()
    yield shared_plant_sim
    await shared_plant_sim.reset()


def settings(sim: PlantSim) -> OpcUaSource:
    source = next(s for s in sim.agent_config().source if s.protocol == "opcua")
    assert isinstance(source, OpcUaSource)
    return source.model_copy(update={"conditions": source.conditions.model_copy(
        update={"enabled": True, "acknowledge": True})})  # fmt: skip


@pytest_asyncio.fixture(loop_scope="module")
async def driver(sim: PlantSim) -> AsyncIterator[OpcUaConditionDriver]:
    d = OpcUaConditionDriver(settings(sim))
    await d.connect()
    yield d
    await d.close()


async def next_update(
    d: OpcUaConditionDriver, want: type[ConditionEvent] | type[ConditionSnapshot], name: str = ""
) -> ConditionUpdate:
    """The first update of the kind wanted (for an event: of condition `name`), 20 reads at most."""
    for _ in range(40):
        for update in await d.read(timeout_s=0.5):
            if isinstance(update, want) and (
                not name or (isinstance(update, ConditionEvent) and update.condition_name == name)
            ):
                return update
    raise AssertionError(f"no {want.__name__} {name} arrived")


async def test_refresh_on_connect_then_a_fault_raises_a_condition_and_acknowledge_clears_it(
    sim: PlantSim, driver: OpcUaConditionDriver
) -> None:
    first = await next_update(driver, ConditionSnapshot)
    assert isinstance(first, ConditionSnapshot)
    assert first.conditions == ()  # the furnace runs normal: nothing retained

    await sim.apply("spike:fsf.matte_temp=1170")
    raised = await next_update(driver, ConditionEvent, "MatteTempLow")
    assert isinstance(raised, ConditionEvent)
    assert (raised.active, raised.acknowledged, raised.retain) == (True, False, True)
    assert raised.severity == 700
    assert raised.source_name == "fsf.matte_temp"
    assert "1170.0" in raised.message
    assert raised.condition_id.endswith("s=FSF/Alarms/MatteTempLow")

    await driver.acknowledge(raised.condition_id, raised.event_id, "op.anna: seen, tapping")
    acked = await next_update(driver, ConditionEvent, "MatteTempLow")
    assert isinstance(acked, ConditionEvent)
    assert (acked.active, acked.acknowledged) == (True, True)
    assert acked.comment == "op.anna: seen, tapping"
    assert acked.event_id != raised.event_id

    with pytest.raises(WriteRefused, match="BadConditionBranchAlreadyAcked"):
        await driver.acknowledge(acked.condition_id, acked.event_id, "again")
    with pytest.raises(WriteRefused, match="BadEventIdUnknown"):
        await driver.acknowledge(acked.condition_id, raised.event_id, "an old event")


async def test_a_new_session_learns_the_active_conditions_from_the_refresh(
    sim: PlantSim, driver: OpcUaConditionDriver
) -> None:
    await sim.apply("spike:fsf.matte_temp=1100")  # below low and low-low
    await next_update(driver, ConditionEvent, "MatteTempLowLow")
    await driver.connect()  # as after a lost connection
    snapshot = await next_update(driver, ConditionSnapshot)
    assert isinstance(snapshot, ConditionSnapshot)
    by_name = {c.condition_name: c for c in snapshot.conditions}
    assert set(by_name) == {"MatteTempLow", "MatteTempLowLow"}
    assert by_name["MatteTempLowLow"].severity == 900
    assert all(c.active and not c.acknowledged for c in by_name.values())
