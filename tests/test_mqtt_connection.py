"""MqttConnection against a real Mosquitto: confirmation, refusal, will, reconnect."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edge_agent.config import MqttSection
from edge_agent.sinks.mqtt_connection import MqttConnection, PublishRefused, Will
from tests.mqtt_subscriber import Subscriber
from tests.services import Mosquitto

pytestmark = pytest.mark.services

PERSISTENT = ["user root", "persistence true"]


def section(broker: Mosquitto, **kw: object) -> MqttSection:
    return MqttSection.model_validate({"host": broker.host, "port": broker.port, **kw})


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_publish_resolves_after_puback_and_the_subscriber_has_it(
    mosquitto: Mosquitto, protocol: str
) -> None:
    sub = await asyncio.to_thread(Subscriber, mosquitto.host, mosquitto.port, "t/#")
    conn = MqttConnection(section(mosquitto, protocol=protocol), client_id="c1")
    await conn.start()
    try:
        await asyncio.wait_for(conn.connected.wait(), 10)
        await asyncio.wait_for(
            asyncio.gather(*(conn.publish(f"t/{i}", str(i).encode()) for i in range(500))), 20
        )
        got = await asyncio.to_thread(sub.wait_for, 500)
        assert [m.payload for m in got] == [str(i).encode() for i in range(500)]
    finally:
        await conn.close()
        sub.close()


async def test_mqtt5_puback_failure_reason_is_an_error(tmp_path: Path) -> None:
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite allowed/#\n")
    with Mosquitto(tmp_path / "broker", extra_config=["user root", f"acl_file {acl}"]) as broker:
        conn = MqttConnection(section(broker, protocol="5"), client_id="c2")
        await conn.start()
        try:
            await asyncio.wait_for(conn.publish("allowed/x", b"1"), 10)
            with pytest.raises(PublishRefused, match="Not authorized"):
                await asyncio.wait_for(conn.publish("denied/x", b"1"), 10)
        finally:
            await conn.close()


async def test_publishes_made_during_an_outage_are_delivered_after_reconnect(
    tmp_path: Path,
) -> None:
    # A persistent broker keeps the subscriber's session across the restart, as a real one does.
    with Mosquitto(tmp_path / "broker", extra_config=PERSISTENT) as broker:
        sub = await asyncio.to_thread(Subscriber, broker.host, broker.port, "o/#")
        conn = MqttConnection(section(broker), client_id="c3")
        await conn.start()
        try:
            await asyncio.wait_for(conn.connected.wait(), 10)
            await asyncio.to_thread(broker.stop)
            pending = [conn.publish(f"o/{i}", b"x") for i in range(10)]
            await asyncio.to_thread(broker.start)
            await asyncio.wait_for(asyncio.gather(*pending), 20)
            got = await asyncio.to_thread(sub.wait_for, 10)
            assert [m.topic for m in got] == [f"o/{i}" for i in range(10)]
            assert conn.connects >= 2
        finally:
            await conn.close()
            sub.close()


KILLED = textwrap.dedent(
    """
    import asyncio, sys
    from edge_agent.config import MqttSection
    from edge_agent.sinks.mqtt_connection import MqttConnection, Will

    async def main() -> None:
        s = MqttSection(host="127.0.0.1", port=int(sys.argv[1]))
        conn = MqttConnection(s, client_id="doomed", will=lambda: Will("w/status", b"offline"))
        conn.on_connect(lambda: conn.publish("w/status", b"online", retain=True))
        await conn.start()
        await conn.connected.wait()
        print("up", flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


async def test_last_will_is_published_when_the_process_is_killed(mosquitto: Mosquitto) -> None:
    sub = await asyncio.to_thread(Subscriber, mosquitto.host, mosquitto.port, "w/#")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", KILLED, str(mosquitto.port), stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        while (await asyncio.wait_for(proc.stdout.readline(), 20)).strip() != b"up":
            pass
        await asyncio.to_thread(sub.wait_for, 1)
        proc.kill()
        await proc.wait()
        got = await asyncio.to_thread(sub.wait_for, 2)
        assert [m.payload for m in got] == [b"online", b"offline"]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        sub.close()


async def test_close_with_will_makes_an_mqtt5_broker_publish_it(mosquitto: Mosquitto) -> None:
    sub = await asyncio.to_thread(Subscriber, mosquitto.host, mosquitto.port, "ww/#")
    conn = MqttConnection(
        section(mosquitto), client_id="c4", will=lambda: Will("ww/status", b"offline")
    )
    await conn.start()
    await asyncio.wait_for(conn.connected.wait(), 10)
    await conn.close(with_will=True)
    got = await asyncio.to_thread(sub.wait_for, 1)
    assert got[0].payload == b"offline"
    sub.close()


async def test_backup_server_is_tried_when_the_primary_is_down(mosquitto: Mosquitto) -> None:
    from tests.services import free_port

    settings = MqttSection.model_validate(
        {
            "host": "127.0.0.1",
            "port": free_port(),  # nobody listens there
            "backup_servers": [f"{mosquitto.host}:{mosquitto.port}"],
        }
    )
    conn = MqttConnection(settings, client_id="backup")
    await conn.start()
    try:
        await asyncio.wait_for(conn.connected.wait(), 15)
        assert conn.server == f"{mosquitto.host}:{mosquitto.port}"
        await asyncio.wait_for(conn.publish("b/x", b"1"), 10)
    finally:
        await conn.close()
