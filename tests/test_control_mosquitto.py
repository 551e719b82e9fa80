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

import aiomqtt
import pytest

from edge_agent.config import AgentConfig
from edge_agent.contracts.samples import iso_utc, now_ns
from edge_agent.control import ControlPath
from tests.conftest import ROOT
from tests.fake_plant import CONFIG, RecordingDriver, config, plant_store, stop_tasks
from tests.services import Mosquitto, free_port

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


def client(broker: Mosquitto, user: str | None) -> aiomqtt.Client:
    return aiomqtt.Client(
        broker.host,
        broker.port,
        username=user,
        password=USERS.get(user or ""),
        protocol=aiomqtt.ProtocolVersion.V5,
    )


def command(request_id: str, value: float) -> str:
    return json.dumps({"request_id": request_id, "value": value, "ts": iso_utc(now_ns())})


class Inbox:
    """Everything one client receives, by topic, so a test can await a message in any order."""

    def __init__(self, mqtt: aiomqtt.Client) -> None:
        self._mqtt = mqtt
        self._seen: list[tuple[str, dict[str, object]]] = []
        self._changed = asyncio.Condition()

    async def collect(self) -> None:
        async for message in self._mqtt.messages:
            assert isinstance(message.payload, bytes)
            async with self._changed:
                self._seen.append((message.topic.value, json.loads(message.payload)))
                self._changed.notify_all()

    async def get(self, topic_filter: str, request_id: str) -> dict[str, object]:
        def found() -> dict[str, object] | None:
            for topic, body in self._seen:
                if aiomqtt.Topic(topic).matches(topic_filter) and body["request_id"] == request_id:
                    return body
            return None

        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(found), 10)
        body = found()
        assert body is not None
        return body


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
        async with client(broker, "scada") as scada:
            await scada.subscribe(SET + "/result", qos=1)
            await scada.subscribe("smelter/demo/_agent/+/audit", qos=1)
            inbox = Inbox(scada)
            collecting = asyncio.create_task(inbox.collect())

            # A read-only user's command is dropped by the broker (PUBACK "not authorized").
            async with client(broker, "historian") as historian:
                await historian.publish(SET, command("rogue-1", 510.0), qos=1)

            await scada.publish(SET, command("scada-1", 540.0), qos=1)
            result = await inbox.get(SET + "/result", "scada-1")
            assert result["result"] == "written"
            assert result["written"] == 540.0
            audit = await inbox.get("smelter/demo/_agent/+/audit", "scada-1")
            assert audit["result"] == "written"

            await scada.publish(SET, command("scada-2", 545.0), qos=1, retain=True)
            result = await inbox.get(SET + "/result", "scada-2")
            assert (result["result"], result["reason"]) == ("refused", "retained")
            collecting.cancel()

        assert driver.writes == [("fsf.fuel_flow_sp", 540.0)]
        assert [line["request_id"] for line in path.audit.read()] == ["scada-1", "scada-2"]

        with pytest.raises(aiomqtt.MqttError):
            async with client(broker, None):
                pass
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
    with pytest.raises(aiomqtt.MqttError):
        await service.run()  # the primary is down; the supervisor would restart us
    task = asyncio.create_task(service.run())
    try:
        await asyncio.wait_for(service.subscribed.wait(), 10)
    finally:
        await stop_tasks(task)
