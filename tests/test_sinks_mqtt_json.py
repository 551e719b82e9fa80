"""MQTT JSON sink: encoding (pure) and a full run through the outbox to a real Mosquitto, also
frozen with SIGSTOP to show that the next read is encoded while PUBACKs are due."""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_agent.config import AgentConfig, MqttSection
from edge_agent.contracts.samples import Quality, Sample
from edge_agent.outbox import Batch, Outbox
from edge_agent.runtime import build_catalogue
from edge_agent.sinks.mqtt_json import JsonEncoder, Message, MqttJsonSink
from edge_agent.sinks.state import OutboxStatus
from tests.support.mqtt_subscriber import Subscriber
from tests.support.services import Mosquitto
from tests.support.waiting import eventually

T0 = 1_795_000_000_000_000_000
DELIVERY_DOC = Path(__file__).resolve().parent.parent / "docs" / "delivery.md"
Row = tuple[str, Any, str, str | None, int]


def doc_decoder() -> Callable[[bytes], Iterator[Row]]:
    """The decoder snippet for integrators in docs/delivery.md, run as written."""
    (code,) = re.findall(r"<!-- decoder -->\s*```python\n(.*?)```", DELIVERY_DOC.read_text(), re.S)
    scope: dict[str, Any] = {}
    exec(code, scope)  # our own documentation, run as written
    return scope["rows"]  # type: ignore[no-any-return]


def batch_values(messages: list[Any]) -> list[Any]:
    rows = doc_decoder()
    return [row[1] for m in messages for row in rows(m.payload)]


def json_sink(cfg: AgentConfig, outbox: Outbox) -> MqttJsonSink:
    """The sink as the runtime builds it: with the catalogue of the configuration's tags."""
    return MqttJsonSink(cfg, outbox, build_catalogue(cfg))


def encoder(**kw: Any) -> JsonEncoder:
    return JsonEncoder(MqttSection.model_validate(kw), "demo", {"fsf.matte_temp": "°C"})


def test_per_tag_topics_and_payloads_follow_the_naming_rules() -> None:
    samples = [
        Sample("fsf.matte_temp", 1231.5, Quality.GOOD, T0 + 5, T0),
        Sample.bad("offgas.so2", "BadCommunicationError", acq_ns=T0),
        Sample("kpi.recycled_ratio.day", 0.21, Quality.UNCERTAIN, T0, None, "stale_input"),
        Sample("fsf.burner_on", True, Quality.GOOD, T0),
    ]
    msgs = encoder(topic_root="plant").encode([Batch(1, samples)])
    assert [m.topic for m in msgs] == [
        "plant/demo/fsf/matte_temp",
        "plant/demo/offgas/so2",
        "plant/demo/kpi/recycled_ratio/day",
        "plant/demo/fsf/burner_on",
    ]
    bodies = [json.loads(m.payload) for m in msgs]
    assert bodies[0] == {
        "value": 1231.5,
        "quality": "good",
        "ts": "2026-11-18T11:06:40.000Z",
        "ts_ns": T0,  # the source timestamp, not the acquisition time
        "unit": "°C",
    }
    assert bodies[1]["value"] is None
    assert bodies[1]["quality"] == "bad"
    assert bodies[1]["reason"] == "BadCommunicationError"
    assert bodies[2]["reason"] == "stale_input"
    assert bodies[3]["value"] is True


def test_non_finite_numbers_become_bad_with_a_reason() -> None:
    (msg,) = encoder().encode([Batch(1, [Sample("fsf.x", math.nan, Quality.GOOD, T0)])])
    body = json.loads(msg.payload)
    assert body["value"] is None
    assert body["quality"] == "bad"
    assert body["reason"] == "not_finite:nan"


def test_an_implausible_value_is_bad_and_keeps_the_raw_reading() -> None:
    spike = Sample("fsf.matte_temp", None, Quality.BAD, T0, None, "out_of_range", raw=3000.0)
    (msg,) = encoder().encode([Batch(1, [spike])])
    body = json.loads(msg.payload)
    assert (body["value"], body["quality"], body["reason"]) == (None, "bad", "out_of_range")
    assert body["raw"] == 3000.0


@pytest.mark.parametrize("schema", [1, 2])
def test_batch_layout_is_one_message_per_unit(schema: int) -> None:
    samples = [
        Sample(f"{u}.t{i}", float(i), Quality.GOOD, T0) for u in ("fsf", "kiln") for i in range(3)
    ]
    samples.append(Sample.bad("fsf.t9", "timeout", acq_ns=T0))
    msgs = encoder(layout="batch", batch_schema=schema).encode([Batch(1, samples)])
    assert [m.topic for m in msgs] == ["plant/demo/_batch/fsf", "plant/demo/_batch/kiln"]
    body = json.loads(msgs[1].payload)
    assert body["schema"] == f"edge-agent/batch/{schema}"
    assert body["unit"] == "kiln"
    rows = doc_decoder()
    assert [r[0] for r in rows(msgs[1].payload)] == ["kiln.t0", "kiln.t1", "kiln.t2"]
    assert list(rows(msgs[0].payload))[-1] == ("fsf.t9", None, "bad", "timeout", T0)


def test_the_compact_schema_is_the_default_and_its_units_are_retained_metadata() -> None:
    enc = encoder(layout="batch")
    (msg,) = enc.encode([Batch(1, [Sample("fsf.matte_temp", 1231.5, Quality.GOOD, T0)])])
    assert json.loads(msg.payload)["schema"] == "edge-agent/batch/2"
    (meta,) = enc.metadata()
    assert (meta.topic, meta.retain) == ("plant/demo/_meta/fsf", True)
    assert json.loads(meta.payload) == {
        "schema": "edge-agent/meta/1", "site": "demo", "unit": "fsf",
        "units": {"fsf.matte_temp": "°C"},
    }  # fmt: skip
    assert encoder(layout="batch", batch_schema=1).metadata() == []  # batch/1 carries units
    assert encoder(layout="tag").metadata() == []


def test_report_by_exception_honours_per_tag_deadbands_and_quality_changes() -> None:
    enc = encoder(report_by_exception=True, deadband=1.0, deadbands={"fsf.b": 0.0})
    values = [(10.0, Quality.GOOD), (10.5, Quality.GOOD), (11.5, Quality.GOOD),
              (11.5, Quality.UNCERTAIN), (11.6, Quality.UNCERTAIN)]  # fmt: skip
    kept_a = [
        json.loads(m.payload)["value"]
        for v, q in values
        for m in enc.encode([Batch(1, [Sample("fsf.a", v, q, T0)])])
    ]
    assert kept_a == [10.0, 11.5, 11.5]  # 10.5 and 11.6 lie within 1.0 of the last sent
    kept_b = [
        json.loads(m.payload)["value"]
        for v in (1.0, 1.0, 1.25)
        for m in enc.encode([Batch(1, [Sample("fsf.b", v, Quality.GOOD, T0)])])
    ]
    assert kept_b == [1.0, 1.25]
    assert enc.suppressed == 3


# ------------------------------------------------------------------------- against Mosquitto


def agent_config(broker: Mosquitto, **mqtt: Any) -> AgentConfig:
    return AgentConfig.model_validate(
        {
            "agent": {"site": "demo", "instance_id": "edge-t"},
            "mqtt": {"host": broker.host, "port": broker.port, "topic_root": "plant", **mqtt},
        }
    )


@pytest.fixture
async def outbox(tmp_path: Path) -> AsyncIterator[Outbox]:
    box = await Outbox.open(tmp_path / "outbox.db", ["mqtt"], synchronous="normal")
    yield box
    await box.close()


def run_samples(cycles: int, tags: int) -> list[list[Sample]]:
    return [
        [
            Sample(f"fsf.t{t}", float(c * 1000 + t), Quality.GOOD, T0 + c * 1_000_000 + t)
            for t in range(tags)
        ]
        for c in range(cycles)
    ]


@pytest.mark.services
@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_a_subscriber_receives_every_sample_in_order(
    mosquitto: Mosquitto, outbox: Outbox, protocol: str
) -> None:
    sub = await asyncio.to_thread(Subscriber, mosquitto.host, mosquitto.port, "plant/demo/#")
    sink = json_sink(agent_config(mosquitto, protocol=protocol), outbox)
    task = asyncio.create_task(sink.run())
    try:
        cycles = run_samples(40, 25)
        for samples in cycles:
            await outbox.append(samples)
        got = await asyncio.to_thread(sub.wait_for, 1 + 40 * 25)
        status = [m for m in got if m.topic == "plant/demo/_agent/edge-t/status"]
        assert status[0].payload == b"online"
        data = [m for m in got if "/_agent/" not in m.topic]
        for t in range(25):
            mine = [json.loads(m.payload) for m in data if m.topic == f"plant/demo/fsf/t{t}"]
            assert [b["value"] for b in mine] == [float(c * 1000 + t) for c in range(40)]
            assert [b["ts_ns"] for b in mine] == sorted(b["ts_ns"] for b in mine)
        await eventually(
            lambda: sink.cursor.lag_batches == 0, 10.0, "the sink to deliver every batch"
        )
        assert sink.state.samples_published_total == 1000
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        sub.close()
    # A clean stop says "offline" itself (the will is for unclean ends).
    assert (await asyncio.to_thread(sub.wait_for, 1002))[-1].payload == b"offline"


@pytest.mark.services
@pytest.mark.parametrize("schema", [1, 2])
async def test_batch_layout_delivers_every_sample(
    mosquitto: Mosquitto, outbox: Outbox, schema: int
) -> None:
    sub = await asyncio.to_thread(Subscriber, mosquitto.host, mosquitto.port, "plant/demo/_batch/#")
    sink = json_sink(agent_config(mosquitto, layout="batch", batch_schema=schema), outbox)
    task = asyncio.create_task(sink.run())
    try:
        for samples in run_samples(30, 200):
            await outbox.append(samples)
        got = await asyncio.to_thread(sub.wait_for, 30)
        assert batch_values(got) == [s.value for c in run_samples(30, 200) for s in c]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        sub.close()


@pytest.mark.services
async def test_outbox_cap_drops_oldest_stays_healthy_and_delivers_the_newest(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    box = await Outbox.open(tmp_path / "capped.db", ["mqtt"], max_bytes=1 << 20)
    sub = await asyncio.to_thread(Subscriber, mosquitto.host, mosquitto.port, "plant/demo/_batch/#")
    try:
        # The sink is not running yet (as during a long broker outage): the backlog hits the cap.
        cycles = run_samples(400, 100)  # about 1.4 MB of rows against the cap of 1 MiB
        for samples in cycles:
            await box.append(samples)
        status = OutboxStatus(box.state).status()
        assert box.state.dropped_samples_cap > 0
        assert status.healthy
        assert status.counters["dropped_samples_total"] == box.state.dropped_samples_cap
        kept = 400 * 100 - box.state.dropped_samples_cap
        sink = json_sink(agent_config(mosquitto, layout="batch"), box)
        task = asyncio.create_task(sink.run())
        try:
            got = await asyncio.to_thread(sub.wait_for, 1, 20)
            await eventually(
                lambda: sink.cursor.lag_batches == 0, 30, "the sink to deliver every batch"
            )
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        got = sub.snapshot()
        values = batch_values(got)
        newest = [s.value for c in cycles for s in c][-kept:]
        assert values == newest  # exactly the newest, in order: oldest dropped, nothing else
    finally:
        sub.close()
        await box.close()


@pytest.mark.services
async def test_retained_last_value_reaches_a_late_subscriber(
    mosquitto: Mosquitto, outbox: Outbox
) -> None:
    sink = json_sink(agent_config(mosquitto, retain=True), outbox)
    task = asyncio.create_task(sink.run())
    try:
        for samples in run_samples(3, 2):
            await outbox.append(samples)
        await eventually(
            lambda: sink.cursor.lag_batches == 0, 10.0, "the sink to deliver every batch"
        )
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    late = await asyncio.to_thread(Subscriber, mosquitto.host, mosquitto.port, "plant/demo/fsf/#")
    try:
        got = await asyncio.to_thread(late.wait_for, 2)
        last = {m.topic: json.loads(m.payload)["value"] for m in got}
        assert last == {"plant/demo/fsf/t0": 2000.0, "plant/demo/fsf/t1": 2001.0}
        assert all(m.retain for m in got)
    finally:
        late.close()


# ----------------------------------------------- pipelined: the next read while PUBACKs are due


def spy_on(sink: MqttJsonSink) -> tuple[list[list[int]], list[int]]:
    """The batch ids of each non-empty read, and of each batch encoded, as they happen."""
    reads: list[list[int]] = []
    encoded: list[int] = []
    read, encode = sink.cursor.read, sink.encoder.encode

    async def reading(*args: Any) -> list[Batch]:
        batches = await read(*args)
        if batches:
            reads.append([b.id for b in batches])
        return batches

    def encoding(batches: Iterable[Batch]) -> list[Message]:
        batches = list(batches)
        encoded.extend(b.id for b in batches)
        return encode(batches)

    sink.cursor.read = reading  # type: ignore[method-assign, assignment]
    sink.encoder.encode = encoding  # type: ignore[method-assign]
    return reads, encoded


@pytest.mark.services
async def test_the_next_batch_is_read_and_encoded_while_the_first_awaits_its_pubacks(
    mosquitto: Mosquitto, outbox: Outbox
) -> None:
    sub = await asyncio.to_thread(Subscriber, mosquitto.host, mosquitto.port, "plant/demo/#")
    sink = json_sink(agent_config(mosquitto, layout="batch"), outbox)
    reads, encoded = spy_on(sink)
    task = asyncio.create_task(sink.run())
    cycles = run_samples(3, 50)
    try:
        online = await asyncio.to_thread(sub.wait_for, 1)
        assert online[0].payload == b"online"
        with mosquitto.frozen():
            await outbox.append(cycles[0])
            await eventually(lambda: reads == [[1]], 30.0, "the sink to read the first batch")
            await outbox.append(cycles[1])
            await eventually(lambda: 2 in encoded, 30.0, "the second batch read and encoded")
            # The broker is stopped: nothing it has been sent can have been confirmed.
            assert reads == [[1], [2]]
            assert sink.cursor.acked == 0
            await outbox.append(cycles[2])
        got = await asyncio.to_thread(sub.wait_for, 1 + 3, 60.0)
        data = [m for m in got if "/_batch/" in m.topic]
        assert batch_values(data) == [s.value for c in cycles for s in c]
        await eventually(lambda: sink.cursor.acked == 3, 30.0, "every batch confirmed")
        assert encoded == [1, 2, 3]  # each encoded once, in order
        assert sink.state.samples_published_total == 150
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        sub.close()
