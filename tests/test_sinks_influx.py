"""InfluxDB sink: line protocol (pure), real InfluxDB 1.x (v1) and VictoriaMetrics (v2), and the
error paths against a scripted fault injector."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from edge_agent.config import AgentConfig
from edge_agent.contracts.samples import Quality, Sample
from edge_agent.outbox import Batch, Outbox
from edge_agent.sinks.influx import InfluxSink
from edge_agent.sinks.line_protocol import LineEncoder
from tests.support.influx_faults import FaultyInflux, Reply
from tests.support.services import InfluxDB1, VictoriaMetrics
from tests.support.waiting import eventually

T0 = 1_795_000_000_123_456_789


def test_line_protocol_schema_and_sanitising() -> None:
    enc = LineEncoder("demo")
    lines = enc.lines(
        [
            Batch(
                1,
                [
                    Sample("fsf.matte_temp", 1231.5, Quality.GOOD, T0 + 9, T0),
                    Sample("fsf.count", 7, Quality.GOOD, T0),
                    Sample("fsf.burner_on", True, Quality.GOOD, T0),
                    Sample("kiln.mode", 'dry "ing"\n', Quality.UNCERTAIN, T0, None, "manual"),
                    Sample.bad("offgas.so2", "BadCommunicationError", acq_ns=T0),
                    Sample("kpi.recycled_ratio.day", math.inf, Quality.GOOD, T0),
                    Sample("offgas.temp", None, Quality.BAD, T0, None, "no_value_marker", -3276.8),
                ],
            )
        ]
    )
    assert lines == [
        f'fsf,site=demo,tag_id=fsf.matte_temp value=1231.5,quality="good" {T0}',
        f'fsf,site=demo,tag_id=fsf.count value=7.0,quality="good" {T0}',
        f'fsf,site=demo,tag_id=fsf.burner_on value_bool=true,quality="good" {T0}',
        f'kiln,site=demo,tag_id=kiln.mode value_str="dry \\"ing\\" ",quality="uncertain",'
        f'reason="manual" {T0}',
        f'offgas,site=demo,tag_id=offgas.so2 quality="bad",reason="BadCommunicationError" {T0}',
        f'kpi,site=demo,tag_id=kpi.recycled_ratio.day quality="bad",reason="not_finite:inf" {T0}',
        f'offgas,site=demo,tag_id=offgas.temp quality="bad",reason="no_value_marker",'
        f"raw=-3276.8 {T0}",
    ]
    assert (
        LineEncoder("demo", "ms")
        .line(Sample("a.b", 1.0, Quality.GOOD, T0))
        .endswith(f" {T0 // 1_000_000}")
    )


def test_what_the_encoder_formats_once_is_never_reused_for_another_sample() -> None:
    """Series keys, timestamps and reasons are cached across samples (bench: a third of the
    CPU per point); alternating times, tags and reasons must still each get their own."""
    enc = LineEncoder("demo", "us")
    samples = [
        Sample("fsf.a", 1.5, Quality.GOOD, T0),
        Sample.bad("fsf.b", "BadTimeout", acq_ns=T0 + 1000),
        Sample("fsf.a", 2.5, Quality.GOOD, T0 + 2000, T0 + 1000),
        Sample.bad("fsf.b", "BadNoCommunication", acq_ns=T0 + 1000),
        Sample("_alarms.fsf.a.high", "{}", Quality.GOOD, T0),
        Sample("fsf.a", 3.5, Quality.GOOD, T0),
    ]
    us = T0 // 1000
    assert enc.lines([Batch(1, samples)]) == [
        f'fsf,site=demo,tag_id=fsf.a value=1.5,quality="good" {us}',
        f'fsf,site=demo,tag_id=fsf.b quality="bad",reason="BadTimeout" {us + 1}',
        f'fsf,site=demo,tag_id=fsf.a value=2.5,quality="good" {us + 1}',
        f'fsf,site=demo,tag_id=fsf.b quality="bad",reason="BadNoCommunication" {us + 1}',
        f'alarm_event,site=demo unreadable="{{}}" {us}',
        f'fsf,site=demo,tag_id=fsf.a value=3.5,quality="good" {us}',
    ]


def config(influx: dict[str, Any]) -> AgentConfig:
    return AgentConfig.model_validate(
        {"agent": {"site": "demo"}, "influx": {"retry_min_s": 0.05, "retry_max_s": 2, **influx}}
    )


@pytest.fixture
async def outbox(tmp_path: Path) -> AsyncIterator[Outbox]:
    box = await Outbox.open(tmp_path / "outbox.db", ["influx"], synchronous="normal")
    yield box
    await box.close()


class Running:
    """An InfluxSink task for the duration of a `async with`."""

    def __init__(self, sink: InfluxSink) -> None:
        self.sink = sink
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> InfluxSink:
        self.task = asyncio.create_task(self.sink.run())
        return self.sink

    async def __aexit__(self, *exc: Any) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


def mixed_run(cycles: int) -> list[list[Sample]]:
    out = []
    for c in range(cycles):
        ts = T0 + c * 1_000_000_000
        out.append(
            [
                Sample("fsf.matte_temp", 1200.0 + c + 0.25, Quality.GOOD, ts + 5, ts),
                Sample("fsf.burner_on", c % 2 == 0, Quality.GOOD, ts),
                Sample("kiln.mode", f"mode-{c}", Quality.UNCERTAIN, ts, None, "manual"),
                Sample.bad("offgas.so2", "BadTimeout", acq_ns=ts),
                Sample("kpi.heat_margin_mw", -3 + c, Quality.GOOD, ts),
            ]
        )
    return out


@pytest.mark.services
async def test_v1_every_sample_comes_back_with_value_tags_timestamp_and_quality(
    influxdb1: InfluxDB1, outbox: Outbox
) -> None:
    sink = InfluxSink(config({"api": "v1", "url": influxdb1.url, "db": influxdb1.db}), outbox)
    async with Running(sink):
        for samples in mixed_run(20):
            await outbox.append(samples)
        await eventually(
            lambda: sink.cursor.lag_batches == 0, 15.0, "the sink to deliver every batch"
        )
    temps = influxdb1.points("SELECT value, quality, site FROM fsf WHERE tag_id = 'fsf.matte_temp'")
    assert [(p["time"], p["value"], p["quality"], p["site"]) for p in temps] == [
        (T0 + c * 1_000_000_000, 1200.25 + c, "good", "demo") for c in range(20)
    ]
    burner = influxdb1.points("SELECT value_bool FROM fsf WHERE tag_id = 'fsf.burner_on'")
    assert [p["value_bool"] for p in burner] == [c % 2 == 0 for c in range(20)]
    mode = influxdb1.points("SELECT value_str, quality, reason FROM kiln")
    assert [(p["value_str"], p["quality"], p["reason"]) for p in mode] == [
        (f"mode-{c}", "uncertain", "manual") for c in range(20)
    ]
    so2 = influxdb1.points("SELECT * FROM offgas")
    assert {(p["quality"], p["reason"], p.get("value")) for p in so2} == {
        ("bad", "BadTimeout", None)
    }
    margin = influxdb1.points("SELECT value FROM kpi WHERE tag_id = 'kpi.heat_margin_mw'")
    assert [p["value"] for p in margin] == [float(-3 + c) for c in range(20)]


@pytest.mark.services
async def test_v2_against_influxdb_1x_says_to_set_api_v1(
    influxdb1: InfluxDB1, outbox: Outbox
) -> None:
    """A 404 from /api/v2/write is InfluxDB before 1.8: the error says what to change."""
    cfg = config({"api": "v2", "url": influxdb1.url, "org": "o", "bucket": influxdb1.db})
    sink = InfluxSink(cfg, outbox)
    with capture_logs() as logs:
        async with Running(sink):
            await outbox.append(numbered(2))
            await eventually(lambda: sink.state.retries_total >= 1, 15.0, "a refused write")
    refused = [e for e in logs if e["event"] == "influx_write_refused"]
    assert refused
    assert refused[0]["status"] == 404
    assert 'set [influx] api = "v1"' in refused[0]["message"]
    assert f"{influxdb1.url} is InfluxDB 1." in refused[0]["message"]
    assert 'api = "v1"' in sink.state.status().detail
    assert sink.cursor.lag_batches == 1  # nothing lost meanwhile


@pytest.mark.services
async def test_v1_nan_and_a_type_conflict_do_not_poison_the_batch(
    influxdb1: InfluxDB1, outbox: Outbox
) -> None:
    # Someone (an older tool) wrote value_bool as a float: our boolean point now conflicts.
    influxdb1.write(f"fsf,site=demo,tag_id=fsf.legacy value_bool=1.5 {T0 - 1}")
    sink = InfluxSink(config({"api": "v1", "url": influxdb1.url, "db": influxdb1.db}), outbox)
    batch = [Sample(f"fsf.t{i}", float(i), Quality.GOOD, T0 + i) for i in range(10)]
    batch[3] = Sample("fsf.t3", math.nan, Quality.GOOD, T0 + 3)
    batch[6] = Sample("fsf.t6", True, Quality.GOOD, T0 + 6)
    with capture_logs() as logs:
        async with Running(sink):
            await outbox.append(batch)
            await eventually(
                lambda: sink.cursor.lag_batches == 0, 15.0, "the sink to deliver every batch"
            )
    rows = influxdb1.points(
        "SELECT value, quality, reason, tag_id FROM fsf WHERE tag_id =~ /^fsf.t/"
    )
    assert {p["tag_id"]: p["value"] for p in rows} == {
        f"fsf.t{i}": (None if i == 3 else float(i)) for i in range(10) if i != 6
    }
    assert next(p for p in rows if p["tag_id"] == "fsf.t3")["reason"] == "not_finite:nan"
    (quarantined,) = await outbox.quarantined("influx")
    assert "tag_id=fsf.t6 value_bool=true" in quarantined[1]
    assert "field type conflict" in quarantined[0]
    assert any(e["event"] == "influx_point_quarantined" for e in logs)


@pytest.mark.services
async def test_v2_numbers_arrive_in_victoria_metrics_at_ms_and_replays_are_idempotent(
    victoria_metrics: VictoriaMetrics, outbox: Outbox
) -> None:
    cfg = config(
        {"api": "v2", "url": victoria_metrics.url, "bucket": "plant", "org": "smelter",
         "precision": "ms"}
    )  # fmt: skip
    sink = InfluxSink(cfg, outbox)
    run = mixed_run(15)
    async with Running(sink):
        for samples in run:
            await outbox.append(samples)
        await eventually(
            lambda: sink.cursor.lag_batches == 0, 15.0, "the sink to deliver every batch"
        )
        # A replay (as after a crash between write and ack) must not double any point.
        await sink.deliver(sink._writer or _v2(cfg), sink.encoder.lines([Batch(0, run[0])]))
    series = await asyncio.to_thread(victoria_metrics.export, '{__name__="fsf_value"}', 15)
    (temp,) = series
    assert temp["metric"]["tag_id"] == "fsf.matte_temp"
    assert temp["metric"]["site"] == "demo"
    assert temp["values"] == [1200.25 + c for c in range(15)]
    assert temp["timestamps"] == [(T0 + c * 1_000_000_000) // 1_000_000 for c in range(15)]
    (margin,) = await asyncio.to_thread(victoria_metrics.export, '{__name__="kpi_value"}', 15)
    assert margin["values"] == [float(-3 + c) for c in range(15)]


def _v2(cfg: AgentConfig) -> Any:
    from edge_agent.sinks.influx import make_writer

    assert cfg.influx is not None
    return make_writer(cfg.influx)


# ---------------------------------------------------------------------- scripted error paths


def numbered(n: int) -> list[Sample]:
    return [Sample(f"fsf.t{i}", float(i), Quality.GOOD, T0 + i) for i in range(n)]


@pytest.mark.parametrize("api", ["v1", "v2"])
async def test_400_isolates_and_quarantines_the_one_bad_point(outbox: Outbox, api: str) -> None:
    def script(lines: list[str]) -> Reply:
        if any("tag_id=fsf.t5 " in line for line in lines):
            return 400, '{"error":"unable to parse: bad point t5"}', {}
        return 204, "", {}

    async with FaultyInflux(script) as server:
        cfg = config({"api": api, "url": server.url, "db": "x", "bucket": "b", "org": "o"})
        sink = InfluxSink(cfg, outbox)
        async with Running(sink):
            await outbox.append(numbered(16))
            await eventually(
                lambda: sink.cursor.lag_batches == 0, 15.0, "the sink to deliver every batch"
            )
    assert sorted(server.stored) == sorted(
        line
        for line in LineEncoder("demo").lines([Batch(1, numbered(16))])
        if "tag_id=fsf.t5 " not in line
    )
    (quarantined,) = await outbox.quarantined("influx")
    assert "tag_id=fsf.t5 " in quarantined[1]
    assert "bad point t5" in quarantined[0]
    assert sink.state.quarantined_samples_total == 1
    assert sink.state.healthy


async def test_429_is_retried_after_retry_after(outbox: Outbox) -> None:
    answers = iter([(429, "slow down", {"Retry-After": "1"})])

    async with FaultyInflux(lambda lines: next(answers, (204, "", {}))) as server:
        sink = InfluxSink(config({"api": "v1", "url": server.url, "db": "x"}), outbox)
        async with Running(sink):
            await outbox.append(numbered(4))
            await eventually(lambda: sink.state.retries_total == 1, 15.0, "one retry")
            assert sink.state.state == "throttled"
            start = asyncio.get_running_loop().time()
            await eventually(
                lambda: sink.cursor.lag_batches == 0, 15.0, "the sink to deliver every batch"
            )
            waited = asyncio.get_running_loop().time() - start
    assert len(server.stored) == 4
    assert [status for _, _, status in server.requests] == [429, 204]
    assert waited > 0.5, "Retry-After: 1 was not honoured (retry_min_s is 0.05)"


@pytest.mark.parametrize("status", [401, 403])
async def test_unauthorized_keeps_the_data_and_marks_the_sink_unhealthy(
    outbox: Outbox, status: int
) -> None:
    allowed = False

    def script(lines: list[str]) -> Reply:
        return (204, "", {}) if allowed else (status, '{"error":"authorization failed"}', {})

    async with FaultyInflux(script) as server:
        sink = InfluxSink(config({"api": "v1", "url": server.url, "db": "x"}), outbox)
        with capture_logs() as logs:
            async with Running(sink):
                await outbox.append(numbered(4))
                await eventually(lambda: sink.state.retries_total >= 2, 15.0, "two retries")
                assert not sink.state.healthy
                assert sink.state.state == "unauthorized"
                assert sink.cursor.lag_batches == 1  # kept in the outbox
                allowed = True  # the operator fixes the token
                await eventually(
                    lambda: sink.cursor.lag_batches == 0, 15.0, "the sink to deliver every batch"
                )
    assert sink.state.healthy
    assert len(server.stored) == 4
    events = [e["event"] for e in logs if e["event"].startswith("influx_unauthorized")]
    # One error when it starts and one line when it ends, not one per retry.
    assert events == ["influx_unauthorized", "influx_unauthorized_cleared"], events
    assert any(e["event"] == "influx_unauthorized" and e["log_level"] == "error" for e in logs)


async def test_503_is_retried_until_the_server_recovers(outbox: Outbox) -> None:
    answers = iter([(503, "overloaded", {})] * 3)
    async with FaultyInflux(lambda lines: next(answers, (204, "", {}))) as server:
        sink = InfluxSink(config({"api": "v2", "url": server.url, "bucket": "b"}), outbox)
        async with Running(sink):
            await outbox.append(numbered(4))
            await eventually(
                lambda: sink.cursor.lag_batches == 0, 15.0, "the sink to deliver every batch"
            )
    assert [s for _, _, s in server.requests] == [503, 503, 503, 204]
    assert len(server.stored) == 4
    assert sink.state.healthy


async def test_v1_sends_basic_auth_db_rp_and_gzip(
    outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_INFLUX_PASSWORD", "pw")
    async with FaultyInflux() as server:
        cfg = config(
            {"api": "v1", "url": server.url, "db": "plant", "rp": "raw", "username": "edge",
             "password": {"env": "TEST_INFLUX_PASSWORD"}, "precision": "us"}
        )  # fmt: skip
        sink = InfluxSink(cfg, outbox)
        async with Running(sink):
            await outbox.append(numbered(3))
            await eventually(
                lambda: sink.cursor.lag_batches == 0, 15.0, "the sink to deliver every batch"
            )
    (headers,) = server.headers
    assert headers["Authorization"] == "Basic ZWRnZTpwdw=="  # edge:pw
    assert headers["Content-Encoding"] == "gzip"
    assert server.params == [{"db": "plant", "rp": "raw", "precision": "u"}]
    assert server.stored[0].endswith(f" {T0 // 1000}")


async def test_v2_sends_the_token_org_bucket_and_precision(outbox: Outbox, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t0ken\n")
    async with FaultyInflux() as server:
        cfg = config(
            {"api": "v2", "url": server.url, "org": "smelter", "bucket": "plant",
             "token": {"file": str(token)}, "precision": "ms"}
        )  # fmt: skip
        sink = InfluxSink(cfg, outbox)
        async with Running(sink):
            await outbox.append(numbered(3))
            await eventually(
                lambda: sink.cursor.lag_batches == 0, 15.0, "the sink to deliver every batch"
            )
    (headers,) = server.headers
    assert headers["Authorization"] == "Token t0ken"
    assert server.params[0]["org"] == "smelter"
    assert server.params[0]["bucket"] == "plant"
    assert server.params[0]["precision"] == "ms"
