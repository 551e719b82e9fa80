"""The `protocol = "mqtt"` source on a real Mosquitto: our own JSON payloads read natively, a
foreign device's through its mapping, bad payloads, the publisher's status, and the persistent
session that keeps what was published while the agent was away."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from structlog.testing import capture_logs

from drivers import json_mapping
from drivers.json_mapping import JsonField, MappingError
from drivers.mqtt_source import AWAITING_DATA, make_source
from edge_agent.acquisition import SourcePoller
from edge_agent.commands.probe import probe
from edge_agent.config import AgentConfig, MqttSource
from edge_agent.contracts.samples import Quality, Sample
from edge_agent.outbox import Outbox
from edge_agent.pipeline import SampleBus
from edge_agent.runtime import build_catalogue
from edge_agent.sinks.mqtt_json import MqttJsonSink
from edge_agent.tagstore import TagStore
from tests.support.pki import make_password_file, make_pki
from tests.support.services import Mosquitto
from tests.support.waiting import eventually

pytestmark = pytest.mark.services

T_MS = 1_796_000_000_123
ISO = "2026-12-01T10:00:01.000Z"


def source(port: int, client_id: str | None = None, **extra: Any) -> MqttSource:
    return MqttSource.model_validate({
        "name": "scales", "protocol": "mqtt", "endpoint": f"mqtt://127.0.0.1:{port}",
        "timeout_s": 5.0,
        "poll_interval_s": 0.05, "client_id": client_id or f"src-{uuid.uuid4().hex[:6]}",
        "tag": [
            {"id": "kiln.feed_rate", "topic": "smelter/demo/kiln/feed_rate"},
            {"id": "scales.belt_tph", "topic": "devices/belt-3", "value_path": "data.rate",
             "timestamp_path": "data.time", "timestamp_format": "unix_ms",
             "quality_path": "data.ok"},
            {"id": "scales.belt_total", "topic": "devices/belt-3", "value_path": "data.total"},
            {"id": "scales.other", "topic": "devices/other", "value_path": "v"},
        ],
        **extra,
    })  # fmt: skip


class Publisher:
    def __init__(self, port: int) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:6]}"
        )
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def send(self, topic: str, payload: object, retain: bool = False) -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.client.publish(topic, body, qos=1, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@asynccontextmanager
async def reading(src: MqttSource) -> AsyncIterator[TagStore]:
    """The source connected and subscribed (its tags have a first sample) before the test runs."""
    store = TagStore()
    task = asyncio.create_task(SourcePoller(src, SampleBus(store)).run())
    try:
        await eventually(lambda: all(store.get(t.id) for t in src.tag), 10, "source subscribed")
        yield store
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def state(store: TagStore, tag: str) -> tuple[Any, Quality, str | None] | None:
    s = store.get(tag)
    return None if s is None else (s.value, s.quality, s.reason)


async def test_native_and_mapped_payloads_keep_value_quality_and_timestamp(
    mosquitto: Mosquitto,
) -> None:
    pub = Publisher(mosquitto.port)
    try:
        # retained before we subscribe: it arrives on subscription
        pub.send("smelter/demo/kiln/feed_rate", {"value": 8.25, "quality": "good",
                 "ts": "2026-12-01T10:00:00.500Z", "ts_ns": T_MS * 1_000_000 + 7, "unit": "t/h"},
                 retain=True)  # fmt: skip
        async with reading(source(mosquitto.port)) as store:
            await eventually(
                lambda: state(store, "kiln.feed_rate") == (8.25, Quality.GOOD, None), 10, "native"
            )
            assert store.get("kiln.feed_rate").source_ns == T_MS * 1_000_000 + 7  # type: ignore[union-attr]
            assert state(store, "scales.belt_tph") == (None, Quality.BAD, AWAITING_DATA)

            pub.send(
                "devices/belt-3", {"data": {"rate": 412.5, "time": T_MS, "ok": True, "total": 9}}
            )
            await eventually(
                lambda: state(store, "scales.belt_tph") == (412.5, Quality.GOOD, None), 10, "mapped"
            )
            assert store.get("scales.belt_tph").source_ns == T_MS * 1_000_000  # type: ignore[union-attr]
            assert state(store, "scales.belt_total") == (9, Quality.GOOD, None)

            pub.send(
                "devices/belt-3", {"data": {"rate": 1.0, "time": T_MS, "ok": False, "total": 9}}
            )
            await eventually(
                lambda: state(store, "scales.belt_tph") == (None, Quality.BAD, "bad_at_source"),
                10,
                "device says bad",
            )

            bad = {"value": None, "quality": "bad", "reason": "connection_lost", "ts": ISO}
            pub.send("smelter/demo/kiln/feed_rate", bad)
            await eventually(
                lambda: state(store, "kiln.feed_rate") == (None, Quality.BAD, "connection_lost"),
                10,
                "unit's reason",
            )
    finally:
        pub.close()


async def test_a_bad_payload_makes_its_tags_bad_with_a_clear_error_and_nothing_else(
    mosquitto: Mosquitto,
) -> None:
    pub = Publisher(mosquitto.port)
    try:
        async with reading(source(mosquitto.port)) as store:
            pub.send("devices/other", {"v": 3.0})
            pub.send(
                "devices/belt-3", {"data": {"rate": 400.0, "time": T_MS, "ok": "good", "total": 9}}
            )
            await eventually(
                lambda: state(store, "scales.belt_tph") == (400.0, Quality.GOOD, None),
                10,
                "good first",
            )
            with capture_logs() as logs:
                pub.send("devices/belt-3", {"data": {"rate": "NaN?", "time": T_MS, "total": 9}})
                await eventually(
                    lambda: state(store, "scales.belt_tph") == (None, Quality.BAD, "bad_payload"),
                    10,
                    "bad",
                )
                pub.send("devices/belt-3", b"{not json")
                await eventually(
                    lambda: state(store, "scales.belt_total") == (None, Quality.BAD, "bad_payload"),
                    10,
                    "not JSON",
                )
            problems = [e["problem"] for e in logs if e["event"] == "mqtt_source_bad_payload"]
            assert problems[0] == "devices/belt-3: no 'data.ok' in the payload (path 'data.ok')"
            assert any("not JSON" in p for p in problems)
            assert state(store, "scales.other") == (3.0, Quality.GOOD, None)  # untouched
            pub.send(
                "devices/belt-3", {"data": {"rate": 401.0, "time": T_MS, "ok": "good", "total": 9}}
            )
            await eventually(
                lambda: state(store, "scales.belt_tph") == (401.0, Quality.GOOD, None),
                10,
                "recovers",
            )
    finally:
        pub.close()


async def test_status_topic_offline_marks_the_tags_offline(mosquitto: Mosquitto) -> None:
    pub = Publisher(mosquitto.port)
    status = "smelter/demo/_agent/unit-kiln/status"
    try:
        async with reading(source(mosquitto.port, status_topic=status)) as store:
            pub.send("devices/other", {"v": 3.0})
            await eventually(
                lambda: state(store, "scales.other") == (3.0, Quality.GOOD, None), 10, "good"
            )
            pub.send(status, b"offline", retain=True)
            await eventually(
                lambda: state(store, "scales.other") == (None, Quality.BAD, "node_offline"),
                10,
                "offline",
            )
    finally:
        pub.close()


async def test_messages_published_while_the_agent_was_away_arrive_after_its_return(
    mosquitto: Mosquitto,
) -> None:
    """QoS 1 and a persistent session: the broker queues for the same client id."""
    pub = Publisher(mosquitto.port)
    client_id = f"plant-{uuid.uuid4().hex[:6]}"
    try:
        async with reading(source(mosquitto.port, client_id)) as store:
            pub.send("devices/other", {"v": 1.0})
            await eventually(
                lambda: state(store, "scales.other") == (1.0, Quality.GOOD, None), 10, "first"
            )
        pub.send("devices/other", {"v": 2.0})  # nobody connected: only the session keeps it
        async with reading(source(mosquitto.port, client_id)) as store:
            await eventually(
                lambda: state(store, "scales.other") == (2.0, Quality.GOOD, None), 10, "kept"
            )
    finally:
        pub.close()


@pytest.mark.parametrize("version", ["3.1.1", "5"])
async def test_both_mqtt_versions(mosquitto: Mosquitto, version: str) -> None:
    pub = Publisher(mosquitto.port)
    try:
        async with reading(source(mosquitto.port, mqtt_version=version)) as store:
            pub.send("devices/other", {"v": 5})
            await eventually(
                lambda: state(store, "scales.other") == (5, Quality.GOOD, None), 10, version
            )
    finally:
        pub.close()


def test_mapping_errors_name_topic_path_and_value() -> None:
    f = JsonField("a.b", value_path="x.0.y", timestamp_path="t", timestamp_format="rfc3339")
    doc = {"x": [{"y": 1.5}], "t": "2026-12-01T10:00:00Z"}
    s = json_mapping.to_sample("top", doc, f, 1)
    assert (s.value, s.source_ns) == (1.5, 1_796_119_200_000_000_000)
    with pytest.raises(MappingError, match=r"top: x\.0\.y = nan is not a finite number"):
        json_mapping.to_sample("top", {"x": [{"y": float("nan")}], "t": doc["t"]}, f, 1)
    with pytest.raises(MappingError, match="top: t = '10:00' is not an RFC 3339 timestamp"):
        json_mapping.to_sample("top", {"x": [{"y": 1}], "t": "10:00"}, f, 1)
    with pytest.raises(MappingError, match="has no UTC offset"):
        json_mapping.to_sample("top", {"x": [{"y": 1}], "t": "2026-12-01T10:00:00"}, f, 1)
    with pytest.raises(MappingError, match="top: no 't' in the payload"):
        json_mapping.to_sample("top", {"x": [{"y": 1}]}, f, 1)
    q = JsonField("a.b", value_path="v", quality_path="q")
    assert json_mapping.to_sample("t", {"v": 1, "q": 0x40000000}, q, 1).quality is Quality.UNCERTAIN
    assert json_mapping.to_sample("t", {"v": 1, "q": 0x80000000}, q, 1).quality is Quality.BAD
    with pytest.raises(MappingError, match="is not a quality"):
        json_mapping.to_sample("t", {"v": 1, "q": "maybe"}, q, 1)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"endpoint": "tcp://x:1883"}, r"must be mqtt://host\[:port\] or mqtts://host\[:port\]"),
        ({"tag": [{"id": "a.b", "topic": "t", "writable": True, "min": 0, "max": 1}]}, "read-only"),
        ({"tag": [{"id": "a.b", "topic": "t/#"}]}, "String should match pattern"),
        ({"tag": [{"id": "a.b", "topic": "t", "quality_path": "q"}]}, "give value_path too"),
        ({"password": {"env": "X"}}, "password is given without username"),
    ],
)
def test_settings_that_cannot_run_are_refused(change: dict[str, Any], message: str) -> None:
    doc = {"name": "s", "protocol": "mqtt", "endpoint": "mqtt://127.0.0.1", **change}
    with pytest.raises(ValueError, match=message):
        AgentConfig.model_validate({"source": [doc]})


def test_a_sparkplug_metric_read_twice_is_refused() -> None:
    tags = [{"id": f"k.{n}", "device": "kiln", "metric": "feed_rate"} for n in ("a", "b")]
    doc = {"name": "s", "protocol": "sparkplug", "endpoint": "mqtts://h", "group_id": "g",
           "edge_node_id": "n", "tag": tags}  # fmt: skip
    with pytest.raises(
        ValueError, match=r"tags k\.a and k\.b read metric 'feed_rate' of device 'kiln'"
    ):
        AgentConfig.model_validate({"source": [doc]})
    doc["tag"] = tags[:1]
    src = AgentConfig.model_validate({"source": [doc]}).source[0]
    assert isinstance(src, object)
    assert (src.port, src.tls_enabled) == (8883, True)  # type: ignore[union-attr]
    assert (src.poll_interval_s, src.timeout_s) == (0.2, 5.0)  # not the polled sources' defaults


async def test_probe_reports_retained_values_and_silent_topics(mosquitto: Mosquitto) -> None:
    pub = Publisher(mosquitto.port)
    try:
        pub.send("devices/other", {"v": 4.5}, retain=True)
        src = source(mosquitto.port, timeout_s=1.0)
        cfg = AgentConfig.model_validate(
            {"source": [src.model_dump(mode="json", exclude_none=True)]}
        )
        rows = {r.sample.tag: r.sample for r in await probe(cfg, [])}
        assert (rows["scales.other"].value, rows["scales.other"].quality) == (4.5, Quality.GOOD)
        assert rows["scales.belt_tph"].reason == AWAITING_DATA  # nothing retained: said so
        assert len(rows) == 4
    finally:
        pub.close()


async def test_mqtts_with_client_certificate_and_a_password_from_a_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pki = tmp_path / "pki"
    pki.mkdir()
    make_pki(pki)
    extra = [
        "user root", f"cafile {pki / 'ca.pem'}", f"certfile {pki / 'server.pem'}",
        f"keyfile {pki / 'server.key'}", "require_certificate true", "allow_anonymous false",
        f"password_file {make_password_file(pki, 'plant', 's3cret')}",
    ]  # fmt: skip
    monkeypatch.setenv("TEST_SOURCE_PASSWORD", "s3cret")
    tls = {"ca_file": str(pki / "ca.pem"), "certificate": str(pki / "client.pem"),
           "private_key": str(pki / "client.key")}  # fmt: skip
    with Mosquitto(tmp_path / "broker", extra_config=extra) as broker:
        login = {"username": "plant", "password": {"env": "TEST_SOURCE_PASSWORD"}, "tls": tls,
                 "endpoint": f"mqtts://127.0.0.1:{broker.port}"}  # fmt: skip
        async with reading(
            source(broker.port, **login)
        ) as store:  # connected and subscribed: TLS and login accepted
            assert state(store, "scales.other") == (None, Quality.BAD, AWAITING_DATA)
        monkeypatch.setenv("TEST_SOURCE_PASSWORD", "wrong")
        bad = source(broker.port, **login, timeout_s=1.0)
        store = TagStore()
        task = asyncio.create_task(SourcePoller(bad, SampleBus(store)).run())
        try:
            await eventually(lambda: state(store, "scales.other") is not None, 10, "refused")
            assert state(store, "scales.other") == (None, Quality.BAD, "connection_lost")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


@pytest.mark.parametrize("schema", [1, 2])
async def test_our_batch_layout_is_read_natively_sample_for_sample(
    mosquitto: Mosquitto, tmp_path: Path, schema: int
) -> None:
    """A unit agent's JSON sink (`layout = "batch"`) → Mosquitto → a plant-level `mqtt` source:
    every sample of the wanted tags arrives, in order, with its quality, reason and timestamp."""
    t0 = T_MS * 1_000_000
    cycles = [
        [
            Sample("fsf.matte_temp", 1230.0 + c, Quality.GOOD, t0 + c * 10**8),
            Sample("fsf.so2", None, Quality.BAD, t0 + c * 10**8, None, "BadTimeout")
            if c % 2
            else Sample("fsf.so2", 0.5 + c, Quality.UNCERTAIN, t0, t0 + c * 10**8 - 7, "stale"),
            Sample("fsf.mode", "auto", Quality.GOOD, t0 + c * 10**8),
            Sample("fsf.not_read", 1.0, Quality.GOOD, t0 + c * 10**8),
            Sample("kiln.feed_rate", 8.0 + c, Quality.GOOD, t0 + c * 10**8),
        ]
        for c in range(20)
    ]
    wanted = ["fsf.matte_temp", "fsf.so2", "fsf.mode", "kiln.feed_rate"]
    src = make_source(MqttSource.model_validate({
        "name": "unit", "protocol": "mqtt", "endpoint": f"mqtt://127.0.0.1:{mosquitto.port}",
        "client_id": f"src-{uuid.uuid4().hex[:6]}", "session_expiry_s": 0,
        "tag": [{"id": t, "topic": f"plant/demo/_batch/{t.partition('.')[0]}"} for t in wanted],
    }))  # fmt: skip
    cfg = AgentConfig.model_validate({
        "agent": {"site": "demo", "instance_id": "unit"},
        "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "topic_root": "plant",
                 "layout": "batch", "batch_schema": schema},
    })  # fmt: skip
    box = await Outbox.open(tmp_path / "outbox.db", ["mqtt"], synchronous="normal")
    await src.connect()
    sink = MqttJsonSink(cfg, box, build_catalogue(cfg))
    task = asyncio.create_task(sink.run())
    got: list[Sample] = []
    try:
        for samples in cycles:
            await box.append(samples)

        async def all_read() -> bool:
            got.extend(s for s in await src.read() if s.reason != AWAITING_DATA)
            return len(got) >= len(wanted) * len(cycles)

        await eventually(all_read, 20, "every wanted sample from the broker")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await src.close()
        await box.close()

    def seen(s: Sample) -> tuple[object, ...]:
        return (s.tag, s.value, s.quality, s.reason, s.ts_ns)

    sent = [seen(s) for c in cycles for s in c if s.tag in wanted]
    assert sorted(map(repr, map(seen, got))) == sorted(map(repr, sent))
    for tag in wanted:  # and each tag's samples in the order they were taken
        assert [x for x in map(seen, got) if x[0] == tag] == [x for x in sent if x[0] == tag]
