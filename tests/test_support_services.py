"""The service fixtures start real servers that answer, keep data, and come back after an outage."""

from __future__ import annotations

import queue
import time
import urllib.parse
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from tests.support.server_process import _http
from tests.support.services import InfluxDB1, Mosquitto, VictoriaMetrics

pytestmark = pytest.mark.services


def _client(broker: Mosquitto, client_id: str = "", clean: bool = True) -> mqtt.Client:
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv311,
        clean_session=clean,
    )
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client


def test_mosquitto_publish_subscribe_qos1(mosquitto: Mosquitto) -> None:
    topic = f"test/{uuid.uuid4().hex}/fsf/matte_temp"
    received: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
    subscribed: queue.Queue[bool] = queue.Queue()
    sub = _client(mosquitto)
    sub.on_message = lambda _c, _u, msg: received.put(msg)
    sub.on_subscribe = lambda *_a: subscribed.put(True)
    pub = _client(mosquitto)
    try:
        sub.subscribe(topic, qos=1)
        subscribed.get(timeout=5)
        pub.publish(topic, b'{"value": 1215.0}', qos=1).wait_for_publish(timeout=5)
        msg = received.get(timeout=5)
        assert (msg.topic, msg.payload, msg.qos) == (topic, b'{"value": 1215.0}', 1)
    finally:
        for c in (sub, pub):
            c.disconnect()
            c.loop_stop()


def test_mosquitto_keeps_more_than_1000_queued_qos1_messages(mosquitto: Mosquitto) -> None:
    """Mosquitto's default queue limit (1000) would drop the rest for an offline subscriber."""
    topic = f"test/{uuid.uuid4().hex}"
    sub_id = f"slow-{uuid.uuid4().hex[:8]}"
    received: queue.Queue[bytes] = queue.Queue()
    subscribed: queue.Queue[bool] = queue.Queue()
    sub = _client(mosquitto, sub_id, clean=False)
    sub.on_subscribe = lambda *_a: subscribed.put(True)
    sub.subscribe(topic, qos=1)
    subscribed.get(timeout=5)
    sub.disconnect()
    sub.loop_stop()

    pub = _client(mosquitto)
    infos = [pub.publish(topic, str(i).encode(), qos=1) for i in range(1500)]
    for info in infos:
        info.wait_for_publish(timeout=10)
    pub.disconnect()
    pub.loop_stop()

    sub = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=sub_id,
        protocol=mqtt.MQTTv311,
        clean_session=False,
    )
    sub.on_message = lambda _c, _u, msg: received.put(msg.payload)
    sub.connect(mosquitto.host, mosquitto.port)
    sub.loop_start()
    try:
        got = [int(received.get(timeout=10)) for _ in range(1500)]
    finally:
        sub.disconnect()
        sub.loop_stop()
    assert got == list(range(1500))


def test_mosquitto_restarts_on_the_same_port(mosquitto: Mosquitto) -> None:
    port = mosquitto.port
    mosquitto.stop()
    assert not mosquitto.running
    with pytest.raises(ConnectionRefusedError):
        _client(mosquitto)
    mosquitto.start()
    assert mosquitto.port == port
    client = _client(mosquitto)
    client.disconnect()
    client.loop_stop()


def test_influxdb1_write_and_influxql_read(influxdb1: InfluxDB1) -> None:
    ts = time.time_ns()
    influxdb1.write(
        f'fsf,site=demo matte_temp=1215.5,quality="good" {ts}\n'
        f'fsf,site=demo matte_temp=1216.0,quality="good" {ts + 1_000_000}'
    )
    rows = influxdb1.points("SELECT matte_temp, quality FROM fsf WHERE site = 'demo'")
    assert [(r["time"], r["matte_temp"], r["quality"]) for r in rows] == [
        (ts, 1215.5, "good"),
        (ts + 1_000_000, 1216.0, "good"),
    ]


def test_influxdb1_keeps_data_across_restart(influxdb1: InfluxDB1) -> None:
    influxdb1.write("kiln,site=demo temp=640 1700000000000000000")
    influxdb1.stop()
    influxdb1.start()
    assert influxdb1.points("SELECT temp FROM kiln") == [
        {"time": 1700000000000000000, "temp": 640.0}
    ]


def test_victoria_metrics_v2_write_and_export(victoria_metrics: VictoriaMetrics) -> None:
    ts_ms = time.time_ns() // 1_000_000
    lines = f"fsf,site=demo matte_temp=1215.5 {ts_ms}000000\n"
    qs = urllib.parse.urlencode({"bucket": "plant", "org": "smelter", "precision": "ns"})
    # The same point twice, as an at-least-once replay would send it: stored once.
    for _ in range(2):
        status, body = _http("POST", f"{victoria_metrics.url}/api/v2/write?{qs}", lines.encode())
        assert status == 204, body
    series = victoria_metrics.export('{__name__="fsf_matte_temp"}')
    assert len(series) == 1
    assert series[0]["metric"]["site"] == "demo"
    assert series[0]["values"] == [1215.5]
    assert series[0]["timestamps"] == [ts_ms]


def test_victoria_metrics_restarts_on_the_same_port(victoria_metrics: VictoriaMetrics) -> None:
    port = victoria_metrics.port
    victoria_metrics.stop(kill=True)
    assert not victoria_metrics.answers()
    victoria_metrics.start()
    assert victoria_metrics.port == port
    assert victoria_metrics.answers()


def test_influxdb1_with_authentication(tmp_path: Path) -> None:
    with InfluxDB1(tmp_path / "influx", admin=("admin", "s3cret")) as server:
        assert isinstance(server, InfluxDB1)
        server.write("kpi,site=demo heat_margin_mw=4.2 1700000000000000000")
        assert server.points("SELECT heat_margin_mw FROM kpi")[0]["heat_margin_mw"] == 4.2
        status, body = _http("POST", f"{server.url}/write?db=test", b"kpi x=1")
        assert status == 401, body


def test_mosquitto_persistence_in_its_temp_dir(tmp_path: Path) -> None:
    """With persistence on, queued messages for a persistent session survive a broker restart."""
    topic = f"test/{uuid.uuid4().hex}"
    with Mosquitto(tmp_path / "broker", extra_config=["persistence true"]) as broker:
        assert isinstance(broker, Mosquitto)
        subscribed: queue.Queue[bool] = queue.Queue()
        sub = _client(broker, "historian", clean=False)
        sub.on_subscribe = lambda *_a: subscribed.put(True)
        sub.subscribe(topic, qos=1)
        subscribed.get(timeout=5)
        sub.disconnect()
        sub.loop_stop()
        pub = _client(broker)
        pub.publish(topic, b"kept", qos=1).wait_for_publish(timeout=5)
        pub.disconnect()
        pub.loop_stop()

        broker.restart()  # SIGTERM: Mosquitto writes its database to the temp dir

        received: queue.Queue[bytes] = queue.Queue()
        sub = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id="historian", clean_session=False
        )
        sub.on_message = lambda _c, _u, msg: received.put(msg.payload)
        sub.connect(broker.host, broker.port)
        sub.loop_start()
        try:
            assert received.get(timeout=5) == b"kept"
        finally:
            sub.disconnect()
            sub.loop_stop()
