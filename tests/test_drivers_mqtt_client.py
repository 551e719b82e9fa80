"""MqttClient against a real Mosquitto: confirmation, refusal, will, reconnect, fast resume."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from drivers.mqtt_client import MqttClient, MqttError, PublishRefused, Received, Will, host_port
from edge_agent.config import MqttSection
from tests.support.mqtt_subscriber import Subscriber
from tests.support.services import Mosquitto
from tests.support.waiting import eventually

pytestmark = pytest.mark.services

PERSISTENT = ["user root", "persistence true"]


def section(broker: Mosquitto, **kw: object) -> MqttSection:
    return MqttSection.model_validate({"host": broker.host, "port": broker.port, **kw})


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_publish_resolves_after_puback_and_the_subscriber_has_it(
    mosquitto: Mosquitto, protocol: str
) -> None:
    sub = await asyncio.to_thread(Subscriber, mosquitto.host, mosquitto.port, "t/#")
    conn = MqttClient(section(mosquitto, protocol=protocol), client_id="c1")
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
        conn = MqttClient(section(broker, protocol="5"), client_id="c2")
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
        conn = MqttClient(section(broker), client_id="c3")
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


async def test_more_messages_than_the_window_wait_their_turn_in_order(tmp_path: Path) -> None:
    """At most `max_inflight` unconfirmed messages are on the wire (the rest wait in the client,
    not in paho, whose own window costs a rescan per PUBACK); through an outage every one is
    delivered, in the order published, and close() fails what was never confirmed."""
    with Mosquitto(tmp_path / "broker", extra_config=PERSISTENT) as broker:
        sub = await asyncio.to_thread(Subscriber, broker.host, broker.port, "win/#")
        conn = MqttClient(section(broker, max_inflight=5), client_id="c-window")
        await conn.start()
        seen: list[int] = []
        try:
            await asyncio.wait_for(conn.connected.wait(), 10)
            await asyncio.to_thread(broker.stop)
            pending = [conn.publish(f"win/{i}", str(i).encode()) for i in range(60)]
            for fut in pending:
                fut.add_done_callback(lambda _: seen.append(conn.in_flight))
            assert conn.in_flight == 5
            await asyncio.to_thread(broker.start)
            await asyncio.wait_for(asyncio.gather(*pending), 30)
            got = await asyncio.to_thread(sub.wait_for, 60)
            assert [m.payload for m in got] == [str(i).encode() for i in range(60)]
            assert max(seen) <= 5
            assert conn.in_flight == 0
            await asyncio.to_thread(broker.stop)
            stranded = [conn.publish(f"win/x{i}", b"x") for i in range(8)]
        finally:
            await conn.close()
            sub.close()
        for fut in stranded:
            with pytest.raises(MqttError, match="connection closed before"):
                fut.result()


async def test_a_held_message_paho_refuses_fails_alone(mosquitto: Mosquitto) -> None:
    """A message that waited for room and that paho then refuses (a wildcard topic) fails its
    own future; the messages behind it still go out."""
    conn = MqttClient(section(mosquitto, max_inflight=1), client_id="c-held")
    await conn.start()
    try:
        await asyncio.wait_for(conn.connected.wait(), 10)
        first, bad, last = (conn.publish(t, b"x") for t in ("h/1", "h/#", "h/2"))
        await asyncio.wait_for(asyncio.gather(first, last), 10)
        with pytest.raises(MqttError, match="refused by paho"):
            bad.result()
    finally:
        await conn.close()


KILLED = textwrap.dedent(
    """
    import asyncio, sys
    from edge_agent.config import MqttSection
    from drivers.mqtt_client import MqttClient, Will

    async def main() -> None:
        s = MqttSection(host="127.0.0.1", port=int(sys.argv[1]))
        conn = MqttClient(s, client_id="doomed", will=lambda: Will("w/status", b"offline"))
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
    conn = MqttClient(
        section(mosquitto), client_id="c4", will=lambda: Will("ww/status", b"offline")
    )
    await conn.start()
    await asyncio.wait_for(conn.connected.wait(), 10)
    await conn.close(with_will=True)
    got = await asyncio.to_thread(sub.wait_for, 1)
    assert got[0].payload == b"offline"
    sub.close()


async def test_a_caller_cancelled_during_close_stays_cancelled_and_the_thread_stops(
    mosquitto: Mosquitto,
) -> None:
    """A source stopped while it closes its client: the cancellation is not swallowed (else the
    source reconnects forever), and the network thread is stopped all the same."""
    conn = MqttClient(section(mosquitto), client_id="c-cancel")
    await conn.start()
    await asyncio.wait_for(conn.connected.wait(), 10)
    closing = asyncio.create_task(conn.close())
    await asyncio.sleep(0)  # close() has begun and waits for its network thread to end
    closing.cancel()
    await asyncio.wait([closing])
    assert closing.cancelled()
    threads = [t.name for t in threading.enumerate() if t.is_alive()]
    assert not [n for n in threads if n.endswith("c-cancel")], threads
    assert not conn.connected.is_set()


async def test_backup_server_is_tried_when_the_primary_is_down(mosquitto: Mosquitto) -> None:
    from tests.support.services import free_port

    settings = MqttSection.model_validate(
        {
            "host": "127.0.0.1",
            "port": free_port(),  # nobody listens there
            "backup_servers": [f"{mosquitto.host}:{mosquitto.port}"],
        }
    )
    conn = MqttClient(settings, client_id="backup")
    await conn.start()
    try:
        await asyncio.wait_for(conn.connected.wait(), 15)
        assert conn.server == f"{mosquitto.host}:{mosquitto.port}"
        await asyncio.wait_for(conn.publish("b/x", b"1"), 10)
    finally:
        await conn.close()


async def test_reconnects_at_once_when_the_broker_returns_however_grown_the_backoff(
    tmp_path: Path,
) -> None:
    # A backoff of 30 s and more: without connection probes the client would stay away that long.
    with Mosquitto(tmp_path / "broker") as broker:
        settings = section(broker, reconnect_min_s=30, reconnect_max_s=60)
        conn = MqttClient(settings, client_id="probed")
        await conn.start()
        try:
            await asyncio.wait_for(conn.connected.wait(), 10)
            await asyncio.to_thread(broker.stop)
            await eventually(lambda: conn.backoff.failures >= 1, 10, "a failed reconnect")
            await asyncio.sleep(1.0)  # well inside the 30 s delay
            await asyncio.to_thread(broker.start)
            back = asyncio.get_running_loop().time()
            await asyncio.wait_for(conn.connected.wait(), 10)
            assert conn.connects == 2
            # The probe interval, not the 24-36 s delay, decided when it came back.
            assert asyncio.get_running_loop().time() - back < 10
        finally:
            await conn.close()


async def test_subscription_delivers_received_with_retain_flag_and_survives_reconnect(
    tmp_path: Path,
) -> None:
    with Mosquitto(tmp_path / "broker") as broker:
        got: list[Received] = []
        conn = MqttClient(section(broker), client_id="sub")
        conn.subscribe("s/#", got.append, retain_as_published=True)
        await conn.start()
        try:
            await asyncio.wait_for(conn.connected.wait(), 10)
            await eventually(lambda: _publish_and_seen(conn, got, "s/1"), 10, "subscribed")
            await asyncio.wait_for(conn.publish("s/r", b"kept", retain=True), 10)
            await eventually(lambda: any(m.topic == "s/r" for m in got), 10, "retained seen")
            assert next(m for m in got if m.topic == "s/r").retain is True  # retain as published
            await asyncio.to_thread(broker.restart)
            await eventually(lambda: conn.connects == 2, 15, "reconnected")
            got.clear()
            await eventually(lambda: _publish_and_seen(conn, got, "s/2"), 10, "resubscribed")
        finally:
            await conn.close()


def _publish_and_seen(conn: MqttClient, got: list[Received], topic: str) -> bool:
    if any(m.topic == topic for m in got):
        return True
    conn.publish(topic, b"x", qos=0)
    return False


async def test_a_refused_login_is_not_probed_its_backoff_grows(tmp_path: Path) -> None:
    config = ["allow_anonymous false"]
    with Mosquitto(tmp_path / "broker", extra_config=config) as broker:
        conn = MqttClient(section(broker, reconnect_min_s=1, reconnect_max_s=4), client_id="anon")
        await conn.start()
        try:
            await eventually(lambda: conn.backoff.failures >= 2, 15, "two refusals")
            assert "refused" in conn.last_error
            assert not conn.connected.is_set()
            # Probing would have retried every half second: at most one attempt per delay.
            await asyncio.sleep(1.0)
            assert conn.backoff.failures <= 3
        finally:
            await conn.close()


def test_host_port_parses_the_server_list_forms() -> None:
    assert host_port("broker.plant:8883", 1883) == ("broker.plant", 8883)
    assert host_port("broker.plant", 1883) == ("broker.plant", 1883)
    assert host_port("10.0.0.7:1884", 1883) == ("10.0.0.7", 1884)


async def test_a_clean_close_is_info_a_lost_broker_a_warning(
    mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    """`mqtt_disconnected reason='Normal disconnection'` on every clean stop was noise."""
    caplog.set_level(logging.INFO, logger="drivers")
    conn = MqttClient(section(mosquitto), client_id="c-close")
    await conn.start()
    try:
        await asyncio.wait_for(conn.connected.wait(), 10)
        await asyncio.to_thread(mosquitto.stop)
        await eventually(lambda: not conn.connected.is_set(), 10, "the loss noticed")
        await asyncio.to_thread(mosquitto.start)
        await asyncio.wait_for(conn.connected.wait(), 20)
    finally:
        await conn.close()
    levels = [r.levelname for r in caplog.records if r.getMessage() == "mqtt_disconnected"]
    assert levels == ["WARNING", "INFO"]
    assert conn.disconnects == 1  # our own close is not a fault


async def test_an_unreachable_broker_is_one_warning_not_one_per_attempt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with Mosquitto(tmp_path / "broker") as broker:
        conn = MqttClient(section(broker, reconnect_min_s=1, reconnect_max_s=1), client_id="q")
        await conn.start()
        try:
            await asyncio.wait_for(conn.connected.wait(), 10)
            with caplog.at_level(logging.INFO, logger="drivers"):
                await asyncio.to_thread(broker.stop)
                await eventually(lambda: conn.backoff.failures >= 3, 20, "three failed attempts")
                await asyncio.to_thread(broker.start)
                await asyncio.wait_for(conn.connected.wait(), 10)
                await eventually(lambda: conn.connects == 2, 10, "reconnected")
            events = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
            assert events == ["mqtt_unreachable", "mqtt_unreachable_cleared"]
        finally:
            await conn.close()
