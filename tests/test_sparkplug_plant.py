"""The whole agent (`run_agent`) on the simulated demo plant, publishing Sparkplug B to a real
Mosquitto: a host that keeps its own model from births and data sees every tag of the plant, a
DCMD goes through the real control guard, and a clean stop ends in the NDEATH of the session."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from drivers.sparkplug import sparkplug_b_pb2 as pb
from drivers.sparkplug.payload import QUALITY_PROPERTY, property_map
from edge_agent.config import AgentConfig
from edge_agent.runtime import run_agent
from edge_agent.sparkplug.catalogue import split_tag
from tests.support.plant import PlantSim
from tests.support.services import Mosquitto
from tests.support.sparkplug_harness import GROUP, NODE
from tests.support.sparkplug_host import Host, Seen, assert_seq_continuous, count

pytestmark = pytest.mark.services


class HostModel:
    """What a Sparkplug host knows: per device, metric name -> (value or None, quality code),
    rebuilt from each birth and updated by data through the aliases the births declared."""

    def __init__(self) -> None:
        self.devices: dict[str, dict[str, tuple[object, int]]] = {}
        self._names: dict[int, tuple[str, str]] = {}

    @classmethod
    def of(cls, messages: list[Seen]) -> HostModel:
        model = cls()
        model.apply(messages)
        return model

    def apply(self, messages: list[Seen]) -> None:
        for s in messages:
            if s.verb == "DBIRTH" and s.device is not None:
                self.devices[s.device] = {}
                for m in s.payload.metrics:
                    self._names[m.alias] = (s.device, m.name)
                    self._set(s.device, m.name, m)
            elif s.verb == "DDATA" and s.device is not None:
                for m in s.payload.metrics:
                    if not m.is_historical:
                        self._set(*self._names[m.alias], m)

    def _set(self, device: str, name: str, m: pb.Payload.Metric) -> None:
        kind = m.WhichOneof("value")
        value = None if m.is_null or kind is None else getattr(m, kind)
        quality = property_map(m).get(QUALITY_PROPERTY, 192)
        self.devices[device][name] = (value, int(quality or 0))

    def missing(self, tags: list[str]) -> list[str]:
        """Tags the host has no Good value for."""
        out = []
        for tag in tags:
            device, name = split_tag(tag)
            value, quality = self.devices.get(device, {}).get(name, (None, 0))
            if value is None or quality != 192:
                out.append(tag)
        return out


@pytest.fixture
def host(mosquitto: Mosquitto) -> Iterator[Host]:
    h = Host(mosquitto.host, mosquitto.port, GROUP, NODE)
    h.wait_subscribed()
    yield h
    h.close()


def agent_config(plant_sim: PlantSim, mosquitto: Mosquitto, tmp_path: object) -> AgentConfig:
    doc = plant_sim.agent_config_dict()
    doc["agent"] = {**doc["agent"], "state_dir": str(tmp_path), "instance_id": NODE}
    doc["kpi"] = {**doc["kpi"], "interval_s": 1.0}
    doc["health"] = {"enabled": False}
    doc["mqtt"] = {
        "host": mosquitto.host,
        "port": mosquitto.port,
        "format": "sparkplug_b",
        "reconnect_min_s": 1,
        "reconnect_max_s": 1,
        "sparkplug": {"group_id": GROUP},
    }
    return AgentConfig.model_validate(doc)


async def test_the_demo_plant_as_one_consistent_edge_node(
    plant_sim: PlantSim, mosquitto: Mosquitto, host: Host, tmp_path: object
) -> None:
    cfg = agent_config(plant_sim, mosquitto, tmp_path)
    tags = sorted(cfg.tags())
    stop = asyncio.Event()
    agent = asyncio.create_task(run_agent(cfg, stop=stop))
    try:

        def every_tag_good(got: list[Seen]) -> bool:
            model = HostModel.of(got)
            return "kpi" in model.devices and not model.missing(tags)

        got = await asyncio.to_thread(host.wait_until, "every plant tag Good", every_tag_good, 40)
        model = HostModel.of(got)
        assert got[0].verb == "NBIRTH"
        assert_seq_continuous(got)
        declared = {f"{d}.{n.replace('/', '.')}" for d, ms in model.devices.items() for n in ms}
        assert set(tags) <= declared
        assert any(t.startswith("kpi.") for t in declared)

        births = [s for s in got if s.verb == "NBIRTH"]
        fsf = [s for s in got if s.verb == "DBIRTH" and s.device == "fsf"][-1]
        host.dcmd("fsf", fsf.metric("fuel_flow_sp").alias, 500.0)
        got = await asyncio.to_thread(
            host.wait_until, "DCMD result", lambda g: count(g, "NDATA") == 1
        )
        (ndata,) = [s for s in got if s.verb == "NDATA"]
        result = ndata.payload.metrics[0].string_value
        assert result.startswith("fsf.fuel_flow_sp = 500.0: refused (advisory_mode)")
    finally:
        stop.set()
        assert await asyncio.wait_for(agent, 30) == 0
    got = await asyncio.to_thread(host.wait_until, "NDEATH", lambda g: count(g, "NDEATH") == 1)
    (death,) = [s for s in got if s.verb == "NDEATH"]
    assert death.bd_seq == births[-1].bd_seq
