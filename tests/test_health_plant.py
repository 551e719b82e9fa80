"""/healthz and /metrics of a real agent: simulators over real sockets, a real Mosquitto.

Failures are injected where they happen in a plant: the Modbus server goes away (two sources
lose their connection) and the broker goes away (the MQTT sink cannot deliver).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.request import urlopen

import pytest

from edge_agent.runtime import run_agent
from simulators.simulation import free_port
from tests.support.plant import PlantSim
from tests.support.services import Mosquitto

pytestmark = [pytest.mark.services, pytest.mark.slow]


async def get(port: int, path: str) -> tuple[int, str]:
    def fetch() -> tuple[int, str]:
        try:
            with urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
                return int(resp.status), resp.read().decode()
        except HTTPError as err:
            return err.code, err.read().decode()
        except URLError:
            return 0, ""

    return await asyncio.to_thread(fetch)


async def until_health(port: int, check: Callable[[int, dict], bool], what: str) -> dict:  # type: ignore[type-arg]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    last: tuple[int, str] = (0, "")
    while loop.time() < deadline:
        last = await get(port, "/healthz")
        if last[0] and check(last[0], json.loads(last[1])):
            return dict(json.loads(last[1]))
        await asyncio.sleep(0.2)
    raise AssertionError(f"/healthz never showed {what}: {last}")


async def test_healthz_and_metrics_follow_source_and_sink_failures(
    plant_sim: PlantSim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    port = free_port()
    cfg = plant_sim.agent_config(
        agent={"site": "hp", "instance_id": "edge-hp", "state_dir": str(tmp_path)},
        mqtt={"host": mosquitto.host, "port": mosquitto.port, "topic_root": "health-test"},
        health={"listen": f"127.0.0.1:{port}"},
        control={"mode": "advisory", "commands": False},
    )
    stop = asyncio.Event()
    agent = asyncio.create_task(run_agent(cfg, stop=stop))
    try:
        doc = await until_health(port, lambda code, _: code == 200, "everything healthy")
        assert set(doc["sources"]) == {"fsf", "offgas", "kiln"}
        assert doc["sinks"]["mqtt"]["state"] == "connected"

        await plant_sim.modbus.stop()
        doc = await until_health(
            port,
            lambda code, d: code == 503 and not d["sources"]["offgas"]["healthy"],
            "offgas down",
        )
        assert doc["status"] == "degraded"
        assert doc["sources"]["offgas"]["state"] == "disconnected"
        assert "Modbus" in doc["sources"]["offgas"]["detail"]
        assert doc["sources"]["fsf"]["healthy"]
        _, metrics = await get(port, "/metrics")
        assert 'edge_agent_component_up{kind="source",name="offgas"} 0.0' in metrics
        assert 'edge_agent_component_up{kind="source",name="fsf"} 1.0' in metrics
        assert 'edge_agent_source_read_latency_seconds_count{source="fsf"}' in metrics
        assert 'edge_agent_tags{quality="bad"}' in metrics

        await asyncio.to_thread(mosquitto.stop)
        doc = await until_health(
            port, lambda _, d: not d["sinks"]["mqtt"]["healthy"], "the mqtt sink down"
        )
        _, metrics = await get(port, "/metrics")
        assert 'edge_agent_component_up{kind="sink",name="mqtt"} 0.0' in metrics
        assert "edge_agent_outbox_depth_samples" in metrics

        await plant_sim.modbus.start()
        await asyncio.to_thread(mosquitto.start)
        await until_health(port, lambda code, _: code == 200, "recovery")
    finally:
        stop.set()
        assert await asyncio.wait_for(agent, 30) == 0
