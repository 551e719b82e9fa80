"""The demo plant's alarms on the simulators and a real Mosquitto, wired as `edge-agent run` wires
them: a spike raises the documented alarm after its delay, a late subscriber sees it retained,
an acknowledge command changes it and is audited, clearing the fault returns it to normal,
events produced while the broker is down arrive after it returns, in order, and dropping the
Modbus source raises its communication alarms."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from edge_agent.alarms import State
from edge_agent.config import AgentConfig
from edge_agent.contracts.samples import iso_utc, now_ns
from tests.support.alarm_broker import ROOT, bodies, broker, publish, running, transitions
from tests.support.mqtt_subscriber import Subscriber
from tests.support.plant import PlantSim
from tests.support.services import Mosquitto
from tests.support.waiting import eventually

pytestmark = [pytest.mark.services, pytest.mark.slow]

__all__ = ["broker"]  # the fixture

HIGH = "fsf.matte_temp.high"
S = 1_000_000_000


def agent_config(sim: PlantSim, broker: Mosquitto, state_dir: Path) -> AgentConfig:
    doc = sim.agent_config_dict()  # config/demo.toml, with its [[alarm]] tables
    doc["agent"].update(site="demo", instance_id="alarms", state_dir=str(state_dir))
    doc["outbox"] = {"synchronous": "normal"}
    doc["mqtt"] = {"host": broker.host, "port": broker.port, "topic_root": "plant"}
    doc["health"] = {"enabled": False}
    return AgentConfig.model_validate(doc)


def unique(sub: Subscriber) -> list[dict[str, Any]]:
    """The high alarm's events in order of first arrival, repeats of (transition, ts) dropped."""
    seen: dict[tuple[str, int], dict[str, Any]] = {}
    for body in bodies(sub, f"{ROOT}/{HIGH}/event"):
        seen.setdefault((body["transition"], body["ts_ns"]), body)
    return list(seen.values())


@pytest.mark.timeout(150)
async def test_alarm_life_cycle_over_the_broker(
    plant_sim: PlantSim, broker: Mosquitto, tmp_path: Path
) -> None:
    cfg = agent_config(plant_sim, broker, tmp_path / "state")
    sub = await asyncio.to_thread(Subscriber, broker.host, broker.port, "plant/demo/#")
    async with running(cfg) as agent:
        engine = agent.alarms
        assert engine is not None
        await asyncio.wait_for(engine.commands.subscribed.wait(), 20)
        await eventually(lambda: bodies(sub, "plant/demo/fsf/matte_temp"), 20, "matte temp")
        assert engine.alarms.status(HIGH).state is State.NORMAL

        # A spike raises the high alarm once its 3 s on-delay has passed.
        await plant_sim.apply("spike:fsf.matte_temp=1330")
        await eventually(lambda: transitions(sub, HIGH), 20, "the high alarm's activation")
        (activated,) = bodies(sub, f"{ROOT}/{HIGH}/event")
        first_high = min(
            b["ts_ns"] for b in bodies(sub, "plant/demo/fsf/matte_temp") if b["value"] == 1330
        )
        assert 3 * S <= activated["ts_ns"] - first_high <= 5 * S  # its delay, in source time
        assert activated["priority"] == "high"
        assert activated["value"] == 1330

        # A SCADA connecting now sees it from the retained state.
        late = await asyncio.to_thread(Subscriber, broker.host, broker.port, f"{ROOT}/+")
        await asyncio.to_thread(late.wait_for, 1)
        retained = next(m for m in late.snapshot() if m.topic == f"{ROOT}/{HIGH}")
        assert retained.retain
        state = json.loads(retained.payload)
        assert (state["state"], state["active"], state["acknowledged"]) == (
            "active_unack",
            True,
            False,
        )
        late.close()

        # The operator acknowledges: state changes, the result answers, the audit has who and why.
        command = {"request_id": "hmi-1", "operator": "op.anna", "ts": iso_utc(now_ns())}
        command["reason"] = "reducing fuel"
        await asyncio.to_thread(publish, broker, f"{ROOT}/{HIGH}/ack", command)
        await eventually(lambda: bodies(sub, f"{ROOT}/{HIGH}/ack/result"), 20, "the ack result")
        (result,) = bodies(sub, f"{ROOT}/{HIGH}/ack/result")
        assert (result["result"], result["request_id"]) == ("done", "hmi-1")
        await eventually(lambda: len(unique(sub)) == 2, 20, "the ack event")
        acked = bodies(sub, f"{ROOT}/{HIGH}/event")[-1]
        assert (acked["state"], acked["operator"]) == ("active_ack", "op.anna")
        audit = (tmp_path / "state" / "alarm-audit.jsonl").read_text().splitlines()
        assert json.loads(audit[-1])["why"] == "reducing fuel"
        assert any(m.topic == f"{ROOT}/_audit" for m in sub.snapshot())

        # Clearing the fault returns it to normal after the off-delay.
        await plant_sim.apply("clear:fsf.matte_temp")
        await eventually(lambda: len(unique(sub)) == 3, 30, "the clearing")
        assert bodies(sub, f"{ROOT}/{HIGH}/event")[-1]["state"] == "normal"

        # Broker down: the next activation and clearing wait in the outbox, then arrive in order.
        await asyncio.to_thread(broker.stop)
        await plant_sim.apply("spike:fsf.matte_temp=1330")
        await eventually(lambda: engine.alarms.status(HIGH).active, 30, "activation offline")
        await plant_sim.apply("clear:fsf.matte_temp")
        await eventually(
            lambda: engine.alarms.status(HIGH).state is State.RETURNED_UNACK, 30, "clear offline"
        )
        assert len(unique(sub)) == 3  # nothing could arrive meanwhile
        await asyncio.to_thread(broker.start)
        await eventually(lambda: len(unique(sub)) >= 5, 60, "the outage's events")
        events = unique(sub)  # at least once: a message in flight at the outage may come twice
        assert [e["transition"] for e in events][3:5] == ["activated", "cleared"]
        stamps = [e["ts_ns"] for e in events]
        assert stamps == sorted(stamps)
    sub.close()


@pytest.mark.timeout(120)
async def test_dropping_the_modbus_source_raises_its_comms_alarms(
    plant_sim: PlantSim, broker: Mosquitto, tmp_path: Path
) -> None:
    cfg = agent_config(plant_sim, broker, tmp_path / "state")
    sub = await asyncio.to_thread(Subscriber, broker.host, broker.port, f"{ROOT}/+/event")
    async with running(cfg) as agent:
        engine = agent.alarms
        assert engine is not None
        await eventually(lambda: agent.store.get("kiln.feed_rate"), 20, "the kiln's first sample")
        await plant_sim.modbus.stop()
        await eventually(
            lambda: {"offgas.comms", "kiln.comms"} <= {b["id"] for b in _all(sub)},
            40,
            "the Modbus sources' comms alarms",
        )
        assert engine.alarms.status("fsf.comms").state is State.NORMAL  # OPC UA still answers
        await plant_sim.modbus.start()
        await eventually(
            lambda: (
                {"offgas.comms", "kiln.comms"}
                <= {b["id"] for b in _all(sub) if b["transition"] == "cleared"}
            ),
            40,
            "the comms alarms clearing",
        )
    sub.close()


def _all(sub: Subscriber) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in sub.snapshot()]
