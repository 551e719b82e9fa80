"""Outbox: ordering, per-sink cursors, restart replay, cap, full disk, schema migration."""

from __future__ import annotations

import asyncio
import json
import math
import pickle
import sqlite3
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from edge_agent.contracts.samples import Quality, Sample
from edge_agent.outbox import SCHEMA_VERSION, Outbox, OutboxError, decode, encode


def numbered(start: int, count: int, tag: str = "fsf.matte_temp") -> list[Sample]:
    return [Sample(tag, float(i), Quality.GOOD, 1_000 + i) for i in range(start, start + count)]


def values(batches: list) -> list[float]:  # type: ignore[type-arg]
    return [s.value for b in batches for s in b.samples]


def test_encoding_keeps_types_quality_and_non_finite_values() -> None:
    samples = [
        Sample("fsf.a", 1.5, Quality.GOOD, 1, 2),
        Sample("fsf.b", 7, Quality.UNCERTAIN, 3, None, "sensor_cal"),
        Sample("fsf.c", True, Quality.GOOD, 4),
        Sample("fsf.d", "tapping", Quality.GOOD, 5),
        Sample.bad("fsf.e", "BadCommunicationError", acq_ns=6),
        Sample("fsf.f", math.inf, Quality.GOOD, 7),
        Sample("fsf.g", None, Quality.BAD, 8, None, "out_of_range", raw=3000.0),
    ]
    back = decode(encode(samples))
    assert back[:5] == samples[:5]
    assert back[6] == samples[6]  # the implausible raw value survives the outbox
    assert type(back[1].value) is int
    assert type(back[2].value) is bool
    assert back[5].value == math.inf
    assert math.isnan(decode(encode([Sample("x.y", math.nan, Quality.GOOD, 1)]))[0].value)  # type: ignore[arg-type]


def test_decoding_refuses_anything_but_plain_values() -> None:
    evil = pickle.dumps([("fsf.a", Quality.GOOD, 0, 1, None, None)])  # names a class
    with pytest.raises(pickle.UnpicklingError, match="refused"):
        decode(evil)


async def test_each_sink_reads_in_order_and_data_is_forgotten_after_all_ack(tmp_path: Path) -> None:
    outbox = await Outbox.open(tmp_path / "outbox.db", ["mqtt", "influx"])
    try:
        for start in range(0, 30, 10):
            await outbox.append(numbered(start, 10))
        mqtt, influx = outbox.cursor("mqtt"), outbox.cursor("influx")
        first = await mqtt.read(max_samples=20)
        assert values(first) == [float(i) for i in range(20)]
        await mqtt.ack(first[-1].id)
        assert values(await mqtt.read()) == [float(i) for i in range(20, 30)]
        assert values(await influx.read()) == [float(i) for i in range(30)]
        assert outbox.state.batches == 3  # influx has confirmed nothing yet
        await influx.ack(outbox.state.head_id)
        await mqtt.ack(outbox.state.head_id)
        await outbox.flush()  # confirmations reach the disk with the next commit or tick
        assert outbox.state.batches == 0
        assert outbox.state.samples == 0
    finally:
        await outbox.close()


async def test_read_waits_for_the_next_append(tmp_path: Path) -> None:
    outbox = await Outbox.open(tmp_path / "outbox.db", ["mqtt"])
    try:
        reader = asyncio.create_task(outbox.cursor("mqtt").read())
        await asyncio.sleep(0)
        assert not reader.done()
        await outbox.append(numbered(0, 3))
        batches = await asyncio.wait_for(reader, 5)
        assert values(batches) == [0.0, 1.0, 2.0]
    finally:
        await outbox.close()


async def test_unconfirmed_batches_are_replayed_after_restart(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    outbox = await Outbox.open(path, ["mqtt"])
    await outbox.append(numbered(0, 5))
    await outbox.append(numbered(5, 5))
    first = await outbox.cursor("mqtt").read(max_samples=5)
    await outbox.cursor("mqtt").ack(first[-1].id)
    await outbox.close()

    outbox = await Outbox.open(path, ["mqtt"])
    try:
        assert values(await outbox.cursor("mqtt").read()) == [float(i) for i in range(5, 10)]
        await outbox.append(numbered(10, 1))
        assert outbox.state.head_id > first[-1].id + 1  # ids never go back, even after purges
    finally:
        await outbox.close()


async def test_a_retired_sink_no_longer_pins_data(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    outbox = await Outbox.open(path, ["mqtt", "old"])
    await outbox.append(numbered(0, 5))
    await outbox.cursor("mqtt").ack(outbox.state.head_id)
    assert outbox.state.batches == 1
    await outbox.close()
    with capture_logs() as logs:
        outbox = await Outbox.open(path, ["mqtt"])
    await outbox.close()
    assert outbox.state.batches == 0
    assert any(e["event"] == "outbox_cursor_removed" and e["sink"] == "old" for e in logs)


async def test_cap_drops_oldest_counts_them_and_keeps_the_newest(tmp_path: Path) -> None:
    outbox = await Outbox.open(tmp_path / "outbox.db", ["mqtt"], max_bytes=20_000)
    try:
        with capture_logs() as logs:
            for start in range(0, 2000, 100):
                await outbox.append(numbered(start, 100))
        assert outbox.state.bytes <= 20_000
        assert outbox.state.dropped_samples_cap > 0
        kept = values(await outbox.cursor("mqtt").read(max_samples=100_000))
        assert kept[-1] == 1999.0
        assert kept == [float(i) for i in range(2000 - len(kept), 2000)]  # a contiguous tail
        assert len(kept) + outbox.state.dropped_samples_cap == 2000
        assert any(e["event"] == "outbox_cap_dropped_oldest" for e in logs)
    finally:
        await outbox.close()


async def _set_max_pages(outbox: Outbox, pages: int) -> None:
    await outbox._call(lambda: outbox._require_db().execute(f"PRAGMA max_page_count={pages}"))


async def test_full_disk_is_an_alarm_and_delivery_resumes_when_space_returns(
    tmp_path: Path,
) -> None:
    # SQLite's max_page_count produces the very error a full disk does
    # ("database or disk is full"), without needing a tiny file system.
    outbox = await Outbox.open(tmp_path / "outbox.db", ["mqtt"], memory_buffer_samples=3_000)
    try:
        await outbox.append(numbered(0, 100))
        pages = await outbox._call(
            lambda: outbox._require_db().execute("PRAGMA page_count").fetchone()[0]
        )
        await _set_max_pages(outbox, pages)
        with capture_logs() as logs:
            for start in range(100, 5100, 100):  # acquisition goes on: append never raises
                await outbox.append(numbered(start, 100))
        assert outbox.state.disk_alarm
        assert "full" in outbox.state.disk_alarm_reason
        assert any(e["event"] == "outbox_disk_alarm" for e in logs)
        assert outbox.state.memory_buffered_samples <= 3_000
        dropped = outbox.state.dropped_samples_memory
        assert dropped == 5000 - outbox.state.memory_buffered_samples

        await _set_max_pages(outbox, 1_000_000)  # space returns
        await outbox.flush()
        assert not outbox.state.disk_alarm
        got = values(await outbox.cursor("mqtt").read(max_samples=100_000))
        # What was on disk, then the newest batches the memory buffer held: in order, no gaps
        # except the counted overflow.
        assert got[:100] == [float(i) for i in range(100)]
        assert got[100:] == [float(i) for i in range(100 + dropped, 5100)]
    finally:
        await outbox.close()


async def test_version_1_file_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE batch (id INTEGER PRIMARY KEY AUTOINCREMENT, created_ns INTEGER NOT NULL,
                            payload BLOB NOT NULL);
        CREATE TABLE cursor (sink TEXT PRIMARY KEY, acked INTEGER NOT NULL);
        PRAGMA user_version = 1;
        """
    )
    rows = [[s.tag, s.value, 0, s.acq_ns, None, None] for s in numbered(0, 4)]
    db.execute("INSERT INTO batch (created_ns, payload) VALUES (1, ?)", (json.dumps(rows),))
    db.execute("INSERT INTO cursor VALUES ('mqtt', 0)")
    db.commit()
    db.close()

    outbox = await Outbox.open(path, ["mqtt"])
    try:
        assert outbox.state.samples == 4
        assert values(await outbox.cursor("mqtt").read()) == [0.0, 1.0, 2.0, 3.0]
        await outbox.append(numbered(4, 2))  # new rows in the new encoding, read in one go
        assert values(await outbox.cursor("mqtt").read()) == [float(i) for i in range(6)]
    finally:
        await outbox.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()


async def test_a_newer_file_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    outbox = Outbox(path, ["mqtt"])
    with pytest.raises(OutboxError, match="newer than this agent"):
        await outbox.start()
    await outbox.close()


async def test_quarantine_is_persisted(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    outbox = await Outbox.open(path, ["influx"])
    await outbox.quarantine("influx", [("field type conflict", "fsf,site=s value=1 1")])
    await outbox.close()
    outbox = await Outbox.open(path, ["influx"])
    try:
        assert await outbox.quarantined("influx") == [
            ("field type conflict", "fsf,site=s value=1 1")
        ]
        assert outbox.state.quarantined == 1
    finally:
        await outbox.close()


async def test_cap_reached_is_one_warning_and_one_line_when_the_sinks_catch_up(
    tmp_path: Path,
) -> None:
    # A batch is under a tenth of the cap, so one drop alone never ends the condition.
    outbox = await Outbox.open(tmp_path / "outbox.db", ["mqtt"], max_bytes=40_000)
    try:
        with capture_logs() as logs:
            for start in range(0, 10_000, 100):  # dozens of drops
                await outbox.append(numbered(start, 100))
            cursor = outbox.cursor("mqtt")
            await cursor.ack((await cursor.read(max_samples=100_000))[-1].id)
            await outbox.append(numbered(10_000, 1))  # the commit that persists the ack
        events = [e["event"] for e in logs if e["event"].startswith("outbox_cap")]
        assert events == ["outbox_cap_dropped_oldest", "outbox_cap_dropped_oldest_cleared"]
        cleared = next(e for e in logs if e["event"] == "outbox_cap_dropped_oldest_cleared")
        assert cleared["dropped_samples"] == outbox.state.dropped_samples_cap
        assert cleared["occurrences"] > 10
    finally:
        await outbox.close()
