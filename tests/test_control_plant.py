"""The control path against the simulated plant over real OPC UA (and Modbus for health).

The agent side is real: acquisition polls the simulators into a TagStore, the control path writes
through acquisition's OPC UA connection. Every write that reaches the simulated plant is recorded
by wrapping the plant's own `write`, so "nothing outside the allowlist reaches the simulator" is
checked where it matters. The advisor is stood in for by recommendation samples in the store (the
KPI engine's own closed-loop test is issue 5's); what is under test is what the agent does with
them.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from drivers.mqtt_client import ClientSettings, MqttClient, Received
from edge_agent import kpi
from edge_agent.acquisition import Acquisition
from edge_agent.config import AgentConfig, MqttSection
from edge_agent.contracts.samples import Quality, Sample, Value, iso_utc, now_ns
from edge_agent.control import ControlPath
from edge_agent.control.commands import CommandTopics
from edge_agent.pipeline import SampleBus
from edge_agent.tagstore import TagStore
from tests.support.fake_plant import stop_tasks
from tests.support.plant import PlantSim
from tests.support.services import Mosquitto
from tests.support.waiting import eventually

FUEL = "fsf.fuel_flow_sp"
O2 = "fsf.o2_flow_sp"
RECOMMENDATION = "kpi.advisor.fuel_flow_sp"
POLL_S = 0.2

CONTROL: dict[str, Any] = {
    "mode": "closed_loop",
    "permissive_max_age_s": 2.0,
    "advisor_interval_s": 0.2,
    "readback_timeout_s": 3.0,
    "heartbeat": {"enabled": False},
    "allow": [
        {
            "tag": FUEL,
            "min": 0.0,
            "max": 1200.0,
            "max_rate_per_min": 400.0,
            "origins": ["advisor", "scada"],
            "min_interval_s": 0.3,
            "recommendation": RECOMMENDATION,
        },
        {
            "tag": O2,
            "min": 25000.0,
            "max": 42000.0,
            "max_rate_per_min": 1000.0,
            "origins": ["scada"],
            "min_interval_s": 0.0,
        },
    ],
}


@dataclass
class PlantTap:
    """Records every write that reaches the simulated plant; the operator's own go around it."""

    sim: PlantSim
    writes: list[tuple[str, Value]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._original: Callable[[str, Value], None] = self.sim.plant.write
        self.sim.plant.write = self._record  # type: ignore[method-assign]

    def remove(self) -> None:
        self.sim.plant.write = self._original  # type: ignore[method-assign]

    def _record(self, tag: str, value: Value) -> None:
        self.writes.append((tag, value))
        self._original(tag, value)

    async def operator(self, tag: str, value: Value) -> None:
        self._original(tag, value)
        await self.sim.publish()

    def setpoint_writes(self) -> list[tuple[str, Value]]:
        return [(t, v) for t, v in self.writes if t != "fsf.agent_heartbeat"]


@pytest.fixture
async def tap(shared_plant_sim: PlantSim) -> AsyncIterator[PlantTap]:
    """The module's plant, reset to its defaults, with its writes recorded."""
    await shared_plant_sim.reset()
    recorder = PlantTap(shared_plant_sim)
    yield recorder
    recorder.remove()


def agent_config(sim: PlantSim, tmp_path: Path, **control: Any) -> AgentConfig:
    doc = sim.agent_config_dict()
    for source in doc["source"]:
        source["poll_interval_s"] = POLL_S
    doc["agent"] = {**doc.get("agent", {}), "state_dir": str(tmp_path / "state")}
    doc.pop("mqtt", None)
    doc.pop("influx", None)
    doc["control"] = {**CONTROL, **control}
    # The KPI advisor at test speed: a cycle every 0.5 s, feed judged steady over 2 s.
    doc["kpi"]["interval_s"] = 0.5
    doc["kpi"]["advisor"]["steady_window_s"] = 2
    return AgentConfig.model_validate(doc)


@dataclass
class Agent:
    store: TagStore
    acquisition: Acquisition
    control: ControlPath
    sources: dict[str, asyncio.Task[None]]

    async def stop_sources(self, *names: str) -> None:
        """Acquisition of these sources dies (the tasks end; their tags go stale)."""
        await stop_tasks(*(self.sources[name] for name in names))


@asynccontextmanager
async def running_agent(
    cfg: AgentConfig, *, with_control: bool = True, with_kpi: bool = False
) -> AsyncIterator[Agent]:
    store = TagStore()
    bus = SampleBus(store)
    acquisition = Acquisition(cfg, bus)
    control = ControlPath(cfg, store, acquisition)
    sources = {
        s.name.removeprefix("source."): asyncio.create_task(s.run()) for s in acquisition.services()
    }
    services = control.services() if with_control else []
    if with_kpi:
        services += kpi.build_services(cfg, store, bus)
    tasks = [*sources.values(), *(asyncio.create_task(s.run()) for s in services)]
    try:
        await eventually(
            lambda: control.acquisition_health() is None, 15.0, "every source read Good"
        )
        yield Agent(store, acquisition, control, sources)
    finally:
        await stop_tasks(*tasks)


def store_value(store: TagStore, tag: str) -> Value | None:
    sample = store.get(tag)
    return sample.value if sample is not None and sample.good else None


def recommend(store: TagStore, value: float, quality: Quality = Quality.GOOD) -> None:
    store.update([Sample(RECOMMENDATION, value, quality, now_ns())])


def assert_within_ramp(writes: list[tuple[str, Value]], start: float, rate_per_min: float) -> None:
    """All writes of one test fall within a minute: their total movement is one minute's ramp."""
    moved, last = 0.0, start
    for _, value in writes:
        assert isinstance(value, float)
        moved += abs(value - last)
        last = value
    assert moved <= rate_per_min + 1e-6


async def test_advisor_writes_move_the_plant_within_bounds_and_ramp(
    tap: PlantTap, tmp_path: Path
) -> None:
    plant_sim = tap.sim
    await tap.operator("fsf.advisor_permissive", True)
    cfg = agent_config(plant_sim, tmp_path)
    start = plant_sim.plant.setpoints[FUEL]
    async with running_agent(cfg) as agent:
        await eventually(
            lambda: store_value(agent.store, "fsf.advisor_permissive") is True, 15.0, "permit"
        )
        fuel_before = store_value(agent.store, "fsf.fuel_flow")
        assert isinstance(fuel_before, float)

        recommend(agent.store, 1000.0)  # far beyond one minute's ramp of 400 kg/h
        await eventually(lambda: tap.setpoint_writes(), 15.0, "the follower's first write")
        assert tap.setpoint_writes()[0] == (FUEL, start + 400.0)  # clamped to the ramp

        # the plant's burners follow their setpoint: the measured fuel flow rises
        await eventually(
            lambda: (store_value(agent.store, "fsf.fuel_flow") or 0.0) > fuel_before + 200.0,
            15.0,
            "the measured fuel flow to follow the setpoint",
        )
        recommend(agent.store, 1500.0)  # outside the allowlist's max of 1200
        await agent.control.follower.cycle()
        recommend(agent.store, 700.0, Quality.UNCERTAIN)  # the advisor holds
        await agent.control.follower.cycle()

    writes = tap.setpoint_writes()
    assert all(tag == FUEL and 0.0 <= float(value) <= 1200.0 for tag, value in writes)
    assert_within_ramp(writes, start, 400.0)
    reasons = [line["reason"] for line in agent.control.audit.read()]
    assert {"out_of_bounds", "recommendation_not_valid"} <= set(reasons)


async def test_kpi_advisor_closes_the_loop_on_the_simulated_furnace(
    tap: PlantTap, tmp_path: Path
) -> None:
    """The real KPI advisor, fed by real acquisition, moves the simulated oxygen setpoint
    through the guard; the plant's measured oxygen flow follows; bounds and ramp hold."""
    plant_sim = tap.sim
    await tap.operator("fsf.advisor_permissive", True)
    o2_allow = {
        "tag": O2,
        "min": 25000.0,
        "max": 42000.0,
        "max_rate_per_min": 3000.0,
        "origins": ["advisor"],
        "min_interval_s": 0.3,
        "recommendation": "kpi.advisor.o2_flow_sp",
    }
    cfg = agent_config(plant_sim, tmp_path, allow=[o2_allow])
    start = plant_sim.plant.setpoints[O2]
    async with running_agent(cfg, with_kpi=True) as agent:
        measured_before = store_value(agent.store, "fsf.o2_flow")
        assert isinstance(measured_before, float)
        await eventually(lambda: len(tap.setpoint_writes()) >= 2, 30, "two advisor writes")
        target = float(tap.setpoint_writes()[-1][1])
        assert target != start

        def followed() -> bool:
            measured = store_value(agent.store, "fsf.o2_flow")
            assert isinstance(measured, float)
            return abs(target - measured) < abs(target - measured_before) / 2

        await eventually(followed, 15.0, "the measured oxygen flow to follow the setpoint")
    writes = tap.setpoint_writes()
    assert all(tag == O2 and 25000.0 <= float(value) <= 42000.0 for tag, value in writes)
    assert_within_ramp(writes, start, 3000.0)
    assert all(line["origin"] == "advisor" for line in agent.control.audit.read())


async def test_dropping_the_permissive_stops_writes_at_once(tap: PlantTap, tmp_path: Path) -> None:
    plant_sim = tap.sim
    await tap.operator("fsf.advisor_permissive", True)
    cfg = agent_config(plant_sim, tmp_path)
    async with running_agent(cfg, with_control=False) as agent:
        await eventually(
            lambda: store_value(agent.store, "fsf.advisor_permissive") is True, 15.0, "permit"
        )
        o2 = plant_sim.plant.setpoints[O2]
        first = await agent.control.command(O2, o2 + 100.0, now_ns(), "c-1")
        assert first.result == "written", first

        await tap.operator("fsf.advisor_permissive", False)
        await eventually(
            lambda: store_value(agent.store, "fsf.advisor_permissive") is False, 15.0, "drop"
        )
        written_before = list(tap.writes)
        refused = await agent.control.command(O2, o2 + 200.0, now_ns(), "c-2")
        assert (refused.result, refused.reason) == ("refused", "permissive_off")
        recommend(agent.store, 100.0)
        await agent.control.follower.cycle()
        assert tap.writes == written_before
        assert plant_sim.plant.setpoints[O2] == o2 + 100.0


async def test_heartbeat_beats_and_stops_when_acquisition_is_dead(
    tap: PlantTap, tmp_path: Path
) -> None:
    plant_sim = tap.sim
    cfg = agent_config(
        plant_sim, tmp_path, heartbeat={"enabled": True, "interval_s": 0.1}, allow=[]
    )
    async with running_agent(cfg) as agent:
        heartbeat = agent.control.heartbeat
        assert heartbeat is not None
        await eventually(
            lambda: plant_sim.plant.agent_heartbeat >= 3, 15.0, "three beats at the DCS"
        )

        # Modbus acquisition dies; the OPC UA connection that carries the heartbeat is still
        # there, so only the health check can stop it.
        await agent.stop_sources("offgas", "kiln")
        # A write slower than the 0.1 s interval (a busy machine) also stops a beat, for a tick:
        # wait for the health check itself, then for the beat it stops.
        await eventually(
            lambda: agent.control.acquisition_health() is not None, 15.0, "acquisition unhealthy"
        )
        await eventually(lambda: not heartbeat.beating, 15.0, "the heartbeat to stop")
        problem = agent.control.acquisition_health()
        assert problem is not None
        # Either stopped source may be the one found stale first.
        assert "offgas" in problem or "kiln" in problem, problem
        beats, value = len(tap.writes), plant_sim.plant.agent_heartbeat
        for _ in range(3):
            assert not await heartbeat.beat()
        assert len(tap.writes) == beats
        assert plant_sim.plant.agent_heartbeat == value
    assert {tag for tag, _ in tap.writes} == {"fsf.agent_heartbeat"}


@pytest.mark.services
async def test_scada_command_over_mqtt_moves_the_simulator(
    tap: PlantTap, tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """The whole SCADA path: MQTT set command -> guard -> OPC UA write -> simulated DCS ->
    read back -> answer on `…/set/result`."""
    plant_sim = tap.sim
    await tap.operator("fsf.advisor_permissive", True)
    cfg = agent_config(plant_sim, tmp_path)
    cfg = cfg.model_copy(
        update={"mqtt": MqttSection(host=mosquitto.host, port=mosquitto.port, topic_root="uns")}
    )
    target = plant_sim.plant.setpoints[O2] + 250.0
    async with running_agent(cfg) as agent:
        service = agent.control.command_service
        assert service is not None
        await asyncio.wait_for(service.subscribed.wait(), 10)
        topic = agent.control.topics.set_topic(O2)
        results: asyncio.Queue[Received] = asyncio.Queue()
        scada = MqttClient(ClientSettings(mosquitto.host, mosquitto.port), client_id="scada")
        scada.subscribe(topic + "/result", results.put_nowait)
        async with scada:
            await asyncio.wait_for(scada.subscribed.wait(), 10)
            body = {"request_id": "mqtt-1", "value": target, "ts": iso_utc(now_ns())}
            await scada.publish(topic, json.dumps(body).encode(), qos=1)
            message = await asyncio.wait_for(results.get(), 10)
        result = json.loads(message.payload)
        assert (result["request_id"], result["result"]) == ("mqtt-1", "written"), result
    assert tap.setpoint_writes() == [(O2, target)]
    assert plant_sim.plant.setpoints[O2] == target


HOSTILE: list[tuple[str, object]] = [
    (FUEL, 5000.0),
    (FUEL, -1.0),
    (FUEL, math.inf),
    (FUEL, math.nan),
    (FUEL, "900"),
    (FUEL, True),
    (FUEL, None),
    (FUEL, [1]),
    (FUEL, 10**400),
    (FUEL, 1199.0),  # within bounds, beyond the ramp: refused for SCADA
    ("fsf.escrap_feed_sp", 20.0),  # writable, not allowlisted
    ("fsf.advisor_permissive", True),  # never writable
    ("fsf.agent_heartbeat", 7),
    ("fsf.matte_temp", 1250.0),
    (O2, 50000.0),
    (O2, 24999.0),
]


def hostile_messages(topics: CommandTopics) -> list[tuple[str, bytes, bool]]:
    topic = topics.set_topic

    def body(value: object, **extra: object) -> bytes:
        return json.dumps(
            {"request_id": "h", "value": value, "ts": iso_utc(now_ns()), **extra}
        ).encode()

    messages = [(topic(tag), body(value), False) for tag, value in HOSTILE]
    messages += [
        (topic(FUEL), body(600.0), True),  # retained
        (topic(FUEL), body(600.0, x=1), False),  # extra key
        (topic(FUEL), b"{" * 5000, False),  # oversized
        (topic(FUEL), b"\x00\xff", False),
        (topic(FUEL), json.dumps({"request_id": "old", "value": 600.0, "ts": 0}).encode(), False),
        (topics.prefix + "fsf/../set", body(600.0), False),
    ]
    return messages


async def test_hostile_commands_never_reach_the_simulator(tap: PlantTap, tmp_path: Path) -> None:
    plant_sim = tap.sim
    await tap.operator("fsf.advisor_permissive", True)
    cfg = agent_config(plant_sim, tmp_path)
    before = dict(plant_sim.plant.setpoints)
    async with running_agent(cfg, with_control=False) as agent:
        await eventually(
            lambda: store_value(agent.store, "fsf.advisor_permissive") is True, 15.0, "permit"
        )
        for topic, payload, retained in hostile_messages(agent.control.topics):
            outcome = await agent.control.commands.handle(topic, payload, retained=retained)
            assert outcome.result == "refused", (topic, payload, outcome)
        for tag, value in HOSTILE:
            outcome = await agent.control.command(tag, value, now_ns(), "dcmd")
            assert outcome.result == "refused", (tag, value, outcome)
    assert tap.writes == []
    assert plant_sim.plant.setpoints == before


async def test_advisory_mode_with_heartbeat_off_writes_nothing(
    tap: PlantTap, tmp_path: Path
) -> None:
    plant_sim = tap.sim
    await tap.operator("fsf.advisor_permissive", True)
    cfg = agent_config(plant_sim, tmp_path, mode="advisory")
    heartbeat = plant_sim.plant.agent_heartbeat
    async with running_agent(cfg) as agent:
        assert agent.control.heartbeat is None
        await eventually(
            lambda: store_value(agent.store, "fsf.advisor_permissive") is True, 15.0, "permit"
        )
        recommend(agent.store, 300.0)
        await agent.control.follower.cycle()
        valid = [(FUEL, 10.0), (O2, plant_sim.plant.setpoints[O2] + 10.0)]
        for tag, value in valid + HOSTILE:
            outcome = await agent.control.command(tag, value, now_ns(), "adv")
            assert outcome.result == "refused"
        for topic, payload, retained in hostile_messages(agent.control.topics):
            await agent.control.commands.handle(topic, payload, retained=retained)
    assert tap.writes == []
    assert plant_sim.plant.agent_heartbeat == heartbeat


# One plant for the module (an OPC UA server takes seconds to start); each test resets it.
pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]
