"""The command path against a real Mosquitto that uses the ACL from docs/control.md.

The ACL is read from the documentation itself, so the document and the tested broker cannot
drift apart. The agent's command service runs with a recording fake driver (the simulators' part
is tests/test_control_plant.py).
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest

from drivers.mqtt_client import ClientSettings, MqttClient, PublishRefused, Received
from edge_agent.config import AgentConfig
from edge_agent.contracts.samples import iso_utc, now_ns
from edge_agent.control import ControlPath
from tests.conftest import ROOT
from tests.support.fake_plant import CONFIG, RecordingDriver, config, plant_store, stop_tasks
from tests.support.services import Mosquitto, free_port
from tests.support.waiting import eventually

pytestmark = pytest.mark.services

USERS = {"edge-agent": "agent-pw", "scada": "scada-pw", "historian": "historian-pw"}
SET = "smelter/demo/fsf/fuel_flow_sp/set"


def documented_acl() -> str:
    text = (ROOT / "docs" / "control.md").read_text()
    match = re.search(r"```acl\n(.*?)```", text, re.S)
    assert match, "docs/control.md has no ```acl block"
    return match.group(1)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    passwords = tmp_path / "passwd"
    for i, (user, password) in enumerate(USERS.items()):
        create = ["-c"] if i == 0 else []
        subprocess.run(
            ["mosquitto_passwd", *create, "-b", str(passwords), user, password], check=True
        )
    acl = tmp_path / "acl"
    acl.write_text(documented_acl())
    # Under root Mosquitto drops to its own user, which cannot enter pytest's private tmp dirs.
    extra = ["user root", "allow_anonymous false", f"password_file {passwords}", f"acl_file {acl}"]
    with Mosquitto(tmp_path / "broker", extra_config=extra) as server:
        assert isinstance(server, Mosquitto)
        yield server


def agent_config(tmp_path: Path, broker: Mosquitto) -> AgentConfig:
    secret = tmp_path / "agent-password"
    secret.write_text(USERS["edge-agent"])
    text = CONFIG + (
        f'\n[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\ntopic_root = "smelter"\n'
        f'username = "edge-agent"\npassword = {{ file = "{secret}" }}\n'
    )
    return config(tmp_path, text, heartbeat={"enabled": False})


def client(broker: Mosquitto, user: str | None) -> MqttClient:
    settings = ClientSettings(broker.host, broker.port, username=user)
    return MqttClient(settings, client_id=f"test-{user}", password=USERS.get(user or ""))


def command(request_id: str, value: float) -> str:
    return json.dumps({"request_id": request_id, "value": value, "ts": iso_utc(now_ns())})


class Inbox:
    """Everything one client receives, by topic, so a test can await a message in any order."""

    def __init__(self) -> None:
        self._seen: list[tuple[str, dict[str, object]]] = []
        self._changed = asyncio.Event()

    def __call__(self, message: Received) -> None:
        self._seen.append((message.topic, json.loads(message.payload)))
        self._changed.set()

    async def get(self, topic_filter: str, request_id: str) -> dict[str, object]:
        async with asyncio.timeout(10):
            while True:
                for topic, body in self._seen:
                    matches = paho.topic_matches_sub(topic_filter, topic)
                    if matches and body["request_id"] == request_id:
                        return body
                self._changed.clear()
                await self._changed.wait()


async def test_only_scada_may_command_through_the_documented_acl(
    tmp_path: Path, broker: Mosquitto
) -> None:
    cfg = agent_config(tmp_path, broker)
    store = plant_store()
    driver = RecordingDriver(store)
    path = ControlPath(cfg, store, driver)
    service = path.command_service
    assert service is not None
    task = asyncio.create_task(service.run())
    try:
        await asyncio.wait_for(service.subscribed.wait(), 10)
        inbox = Inbox()
        scada = client(broker, "scada")
        scada.subscribe(SET + "/result", inbox)
        scada.subscribe("smelter/demo/_agent/+/audit", inbox)
        async with scada:
            await asyncio.wait_for(scada.subscribed.wait(), 10)

            # A read-only user's command is refused by the broker (PUBACK "not authorized").
            async with client(broker, "historian") as historian:
                with pytest.raises(PublishRefused, match="Not authorized"):
                    await historian.publish(SET, command("rogue-1", 510.0).encode(), qos=1)

            await scada.publish(SET, command("scada-1", 540.0).encode(), qos=1)
            result = await inbox.get(SET + "/result", "scada-1")
            assert result["result"] == "written"
            assert result["written"] == 540.0
            audit = await inbox.get("smelter/demo/_agent/+/audit", "scada-1")
            assert audit["result"] == "written"

            await scada.publish(SET, command("scada-2", 545.0).encode(), qos=1, retain=True)
            result = await inbox.get(SET + "/result", "scada-2")
            assert (result["result"], result["reason"]) == ("refused", "retained")

        assert driver.writes == [("fsf.fuel_flow_sp", 540.0)]
        assert [line["request_id"] for line in path.audit.read()] == ["scada-1", "scada-2"]

        async with client(broker, None) as anonymous:  # refused at CONNACK, never connected
            await eventually(lambda: "refused" in anonymous.last_error, 10, "CONNACK refusal")
            assert not anonymous.connected.is_set()
    finally:
        await stop_tasks(task)


async def test_command_service_moves_to_a_backup_broker(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    dead = free_port()  # nobody listens here
    text = CONFIG + (
        f'\n[mqtt]\nhost = "127.0.0.1"\nport = {dead}\n'
        f'backup_servers = ["{mosquitto.host}:{mosquitto.port}"]\n'
    )
    cfg = config(tmp_path, text, heartbeat={"enabled": False})
    store = plant_store()
    path = ControlPath(cfg, store, RecordingDriver(store))
    service = path.command_service
    assert service is not None
    task = asyncio.create_task(service.run())
    try:
        await asyncio.wait_for(service.subscribed.wait(), 10)
    finally:
        await stop_tasks(task)


async def test_command_service_is_back_within_2_s_of_the_broker_however_grown_its_backoff(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    # reconnect_min_s = 30: the first retry after the loss is due 24-36 s later; the connection
    # probes must bring it back long before that.
    text = CONFIG + (
        f'\n[mqtt]\nhost = "{mosquitto.host}"\nport = {mosquitto.port}\n'
        "reconnect_min_s = 30\nreconnect_max_s = 60\n"
    )
    cfg = config(tmp_path, text, heartbeat={"enabled": False})
    store = plant_store()
    service = ControlPath(cfg, store, RecordingDriver(store)).command_service
    assert service is not None
    task = asyncio.create_task(service.run())
    try:
        await asyncio.wait_for(service.subscribed.wait(), 10)
        await asyncio.to_thread(mosquitto.stop)
        assert service.client is not None
        client = service.client
        await eventually(lambda: client.backoff.failures >= 1, 10, "the loss noticed")
        await asyncio.sleep(1.0)
        await asyncio.to_thread(mosquitto.start)
        back = asyncio.get_running_loop().time()
        await asyncio.wait_for(service.subscribed.wait(), 30)
        assert asyncio.get_running_loop().time() - back < 2.0
    finally:
        await stop_tasks(task)
