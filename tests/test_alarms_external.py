"""OPC UA Alarms & Conditions end to end: the simulator's server raises its own conditions, the
agent (wired as `edge-agent run` wires it, on a real Mosquitto) carries them as alarms with the
priority their severity maps to, an acknowledge command calls the condition's Acknowledge method
where the source allows it and is refused where it does not, and a restart brings the
conditions back from the saved state and the server's refresh without a flood."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from drivers.base import DriverConnectionError
from edge_agent.alarms import AlarmSet, Kind, Priority, State
from edge_agent.alarms.external import ConditionSource
from edge_agent.config import AgentConfig, OpcUaSource
from edge_agent.contracts.samples import iso_utc, now_ns
from tests.support.alarm_broker import ROOT, bodies, broker, publish, running, transitions
from tests.support.mqtt_subscriber import Subscriber
from tests.support.plant import PlantSim
from tests.support.services import Mosquitto
from tests.support.waiting import eventually

pytestmark = [pytest.mark.services, pytest.mark.slow]

__all__ = ["broker"]  # the fixture

LOW = "fsf.matte_temp.matte_temp_low"  # the server's MatteTempLow on fsf.matte_temp
LOW_LOW = "fsf.matte_temp.matte_temp_low_low"


def agent_config(
    sim: PlantSim, broker: Mosquitto, state_dir: Path, *, acknowledge: bool
) -> AgentConfig:
    doc = sim.agent_config_dict()
    doc["agent"].update(site="demo", instance_id="alarms-opcua", state_dir=str(state_dir))
    doc["mqtt"] = {"host": broker.host, "port": broker.port, "topic_root": "plant"}
    doc["health"] = {"enabled": False}
    doc["alarm"] = []  # only the server's own conditions
    doc["source"] = [s for s in doc["source"] if s["protocol"] == "opcua"]
    doc["source"][0]["conditions"] = {"enabled": True, "acknowledge": acknowledge}
    doc["kpi"] = {}
    return AgentConfig.model_validate(doc)


def command(request_id: str) -> dict[str, Any]:
    return {"request_id": request_id, "operator": "op.anna", "ts": iso_utc(now_ns()),
            "reason": "tapping now"}  # fmt: skip


@pytest.mark.timeout(150)
async def test_server_conditions_appear_with_their_priority_and_are_acknowledged_on_the_server(
    plant_sim: PlantSim, broker: Mosquitto, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    conditions = plant_sim.opcua.conditions
    assert conditions is not None
    sub = await asyncio.to_thread(Subscriber, broker.host, broker.port, f"{ROOT}/#")
    async with running(agent_config(plant_sim, broker, state, acknowledge=True)) as agent:
        engine = agent.alarms
        assert engine is not None
        (source,) = engine.external.sources
        await asyncio.wait_for(engine.commands.subscribed.wait(), 20)
        await asyncio.wait_for(source.connected.wait(), 20)

        await plant_sim.apply("spike:fsf.matte_temp=1100")  # below low (700) and low-low (900)
        await eventually(lambda: transitions(sub, LOW_LOW) and transitions(sub, LOW), 20,
                         "both conditions' activations")  # fmt: skip
        (low,) = bodies(sub, f"{ROOT}/{LOW}/event")
        assert (low["transition"], low["state"], low["kind"]) == ("activated", "active_unack",
                                                                  "external")  # fmt: skip
        assert (low["priority"], low["severity"], low["origin"]) == ("high", 700, "opcua")
        assert low["tag"] == "fsf.matte_temp"
        assert low["message"].startswith("Matte temperature low: freeze-up risk")
        assert low["condition_id"].endswith("s=FSF/Alarms/MatteTempLow")
        (low_low,) = bodies(sub, f"{ROOT}/{LOW_LOW}/event")
        assert low_low["priority"] == "urgent"
        assert engine.alarms.status(LOW).defn.kind is Kind.EXTERNAL

        # The operator acknowledges over MQTT: the server's condition is acknowledged (its
        # Acknowledge method was called with the operator's comment), the alarm event says who.
        await asyncio.to_thread(publish, broker, f"{ROOT}/{LOW}/ack", command("hmi-1"))
        await eventually(lambda: bodies(sub, f"{ROOT}/{LOW}/ack/result"), 20, "the ack result")
        (result,) = bodies(sub, f"{ROOT}/{LOW}/ack/result")
        assert (result["result"], result["detail"]) == ("done", "now active_ack")
        server_low = conditions.conditions["MatteTempLow"]
        assert server_low.acked
        assert server_low.event.Comment.Text == "op.anna: tapping now"
        await eventually(lambda: len(transitions(sub, LOW)) == 2, 20, "the ack event")
        assert bodies(sub, f"{ROOT}/{LOW}/event")[-1]["operator"] == "op.anna"
        # The server's own acknowledged event changes nothing more (no second ack event).
        await eventually(lambda: source.latest[LOW].acknowledged, 20, "the server's ack event")
        assert transitions(sub, LOW) == ["activated", "acknowledged"]
        assert not conditions.conditions["MatteTempLowLow"].acked

    # Restarted with acknowledging switched off: the saved state and the server's refresh agree,
    # so nothing is announced again; an acknowledge is refused and says where to do it.
    async with running(agent_config(plant_sim, broker, state, acknowledge=False)) as agent:
        engine = agent.alarms
        assert engine is not None
        (source,) = engine.external.sources
        assert engine.alarms.status(LOW_LOW).state is State.ACTIVE_UNACK  # from the state file
        await asyncio.wait_for(engine.commands.subscribed.wait(), 20)
        await eventually(lambda: LOW_LOW in source.latest, 20, "the refresh after connecting")
        assert engine.alarms.status(LOW_LOW).defn.priority is Priority.URGENT
        await asyncio.to_thread(publish, broker, f"{ROOT}/{LOW_LOW}/ack", command("hmi-2"))
        await eventually(lambda: bodies(sub, f"{ROOT}/{LOW_LOW}/ack/result"), 20, "the refusal")
        (refused,) = bodies(sub, f"{ROOT}/{LOW_LOW}/ack/result")
        assert (refused["result"], refused["reason"]) == ("refused", "not_applicable")
        assert "acknowledge it on the server" in refused["detail"]
        assert not conditions.conditions["MatteTempLowLow"].acked

        # Clearing the fault clears both on the server, and here.
        await plant_sim.apply("clear")
        await eventually(lambda: transitions(sub, LOW)[-1:] == ["cleared"], 20, "low cleared")
        await eventually(lambda: transitions(sub, LOW_LOW)[-1:] == ["cleared"], 20, "low-low")
        assert transitions(sub, LOW_LOW) == ["activated", "cleared"]  # no flood on restart
        assert engine.alarms.status(LOW).state is State.NORMAL
        assert engine.alarms.status(LOW_LOW).state is State.RETURNED_UNACK
    sub.close()


class SwallowingDriver:
    """A condition driver whose connect turns the caller's cancellation into a connection
    error, as asyncua's wait_for can when a cancel races a response."""

    def __init__(self) -> None:
        self.connects = 0
        self.connecting = asyncio.Event()

    async def connect(self) -> None:
        self.connects += 1
        self.connecting.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            raise DriverConnectionError("cancelled mid-connect") from None

    async def read(self, timeout_s: float = 1.0) -> list[Any]:
        raise AssertionError("never connected")

    async def close(self) -> None:
        return None


async def test_a_cancel_swallowed_by_the_protocol_library_still_stops_the_service() -> None:
    source = OpcUaSource.model_validate(
        {"name": "fsf", "protocol": "opcua", "endpoint": "opc.tcp://127.0.0.1:1/",
         "conditions": {"enabled": True}}
    )  # fmt: skip
    driver = SwallowingDriver()

    async def publish(events: list[Any]) -> None:
        return None

    service = ConditionSource(source, AlarmSet([], {}, 0), publish, driver=driver)  # type: ignore[arg-type]
    task = asyncio.create_task(service.run())
    await asyncio.wait_for(driver.connecting.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)  # without the guard it backs off and connects again
    assert driver.connects == 1
