"""The MQTT JSON sink reads and encodes its next batch while the previous one awaits its PUBACKs
(edge_agent/sinks/mqtt_json.py), against a real Mosquitto frozen with SIGSTOP: the broker cannot
confirm anything then, so a second read in that window is the overlap, with no clock involved."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import pytest

from edge_agent.outbox import Batch, Outbox
from edge_agent.sinks.mqtt_json import Message, MqttJsonSink
from tests.support.mqtt_subscriber import Subscriber
from tests.support.services import Mosquitto
from tests.support.waiting import eventually
from tests.test_sinks_mqtt_json import agent_config, batch_values, json_sink, run_samples


@pytest.fixture
async def outbox(tmp_path: Path) -> AsyncIterator[Outbox]:
    box = await Outbox.open(tmp_path / "outbox.db", ["mqtt"], synchronous="normal")
    yield box
    await box.close()


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

    sink.cursor.read = reading  # type: ignore[method-assign]
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
