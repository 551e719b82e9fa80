"""/healthz and /metrics over real HTTP, fed by status providers whose failures we inject."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from urllib.error import HTTPError
from urllib.request import urlopen

import pytest
from prometheus_client import generate_latest

from drivers.backoff import Backoff
from edge_agent.contracts.samples import Quality, Sample
from edge_agent.contracts.status import ComponentStatus, LatencyHistogram
from edge_agent.health import HealthServer, health_document, metrics_registry, parse_listen
from edge_agent.status_board import StatusBoard
from edge_agent.supervisor import Service, Supervisor
from edge_agent.tagstore import TagStore


@dataclass
class FakeSource:
    name: str
    connected: bool = True
    samples_read: int = 0
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)

    def status(self) -> ComponentStatus:
        return ComponentStatus(
            self.name,
            "source",
            "connected" if self.connected else "disconnected",
            self.connected,
            detail="" if self.connected else "connection refused",
            progress=self.samples_read,
            counters={"samples_read_total": self.samples_read, "poll_overruns_total": 1},
            histograms={"read_latency_seconds": self.latency},
        )


@dataclass
class FakeSink:
    name: str
    connected: bool = True
    published: int = 0

    def status(self) -> ComponentStatus:
        return ComponentStatus(
            self.name,
            "sink",
            "connected" if self.connected else "disconnected",
            self.connected,
            counters={"samples_published_total": self.published},
        )


@dataclass
class FakeOutbox:
    def status(self) -> ComponentStatus:
        return ComponentStatus(
            "outbox", "outbox", "running", True,
            gauges={"depth_samples": 42, "oldest_age_seconds": 3.5},
            counters={"dropped_samples_total": 0, "quarantined_samples_total": 2},
        )  # fmt: skip


async def get(port: int, path: str) -> tuple[int, str]:
    def fetch() -> tuple[int, str]:
        try:
            with urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
                return resp.status, resp.read().decode()
        except HTTPError as err:
            return err.code, err.read().decode()

    return await asyncio.to_thread(fetch)


async def test_healthz_and_metrics_reflect_source_and_sink_failures() -> None:
    store = TagStore()
    store.update(
        [Sample("fsf.matte_temp", 1210.0, Quality.GOOD, 1), Sample.bad("kiln.x", "timeout")]
    )
    board = StatusBoard(store)
    source, sink = FakeSource("fsf", samples_read=120), FakeSink("mqtt", published=100)
    source.latency.observe(0.004)
    source.latency.observe(0.3)
    for provider in (source, sink, FakeOutbox()):
        board.add(provider)

    async with HealthServer(board, "127.0.0.1:0", "demo", "edge-01") as server:
        code, body = await get(server.port, "/healthz")
        assert code == 200
        doc = json.loads(body)
        assert doc["status"] == "ok"
        assert doc["sources"]["fsf"]["state"] == "connected"
        assert doc["sinks"]["mqtt"]["samples_published_total"] == 100

        code, text = await get(server.port, "/metrics")
        assert code == 200
        assert 'edge_agent_source_samples_read_total{source="fsf"} 120.0' in text
        assert 'edge_agent_sink_samples_published_total{sink="mqtt"} 100.0' in text
        assert 'edge_agent_source_read_latency_seconds_bucket{le="0.005",source="fsf"} 1.0' in text
        assert 'edge_agent_source_read_latency_seconds_count{source="fsf"} 2.0' in text
        assert 'edge_agent_outbox_depth_samples{outbox="outbox"} 42.0' in text
        assert 'edge_agent_outbox_quarantined_samples_total{outbox="outbox"} 2.0' in text
        assert 'edge_agent_component_up{kind="source",name="fsf"} 1.0' in text
        assert 'edge_agent_tags{quality="bad"} 1.0' in text

        source.connected = False
        sink.connected = False
        code, body = await get(server.port, "/healthz")
        assert code == 503
        doc = json.loads(body)
        assert doc["status"] == "degraded"
        assert doc["sources"]["fsf"] == {
            "kind": "source", "state": "disconnected", "healthy": False,
            "detail": "connection refused", "samples_read_total": 120, "poll_overruns_total": 1,
        }  # fmt: skip
        assert doc["sinks"]["mqtt"]["state"] == "disconnected"

        _, text = await get(server.port, "/metrics")
        assert 'edge_agent_component_up{kind="source",name="fsf"} 0.0' in text
        assert 'edge_agent_component_up{kind="sink",name="mqtt"} 0.0' in text
        assert (
            'edge_agent_component_state{kind="source",name="fsf",state="disconnected"} 1.0' in text
        )


async def test_a_broken_provider_does_not_break_healthz() -> None:
    class Broken:
        def status(self) -> ComponentStatus:
            raise RuntimeError("boom")

    board = StatusBoard()
    board.add(Broken())
    board.add(FakeSink("mqtt"))
    async with HealthServer(board, "127.0.0.1:0", "demo", "edge-01") as server:
        code, body = await get(server.port, "/healthz")
    assert code == 200
    assert list(json.loads(body)["sinks"]) == ["mqtt"]


def test_summary_line_and_watchdog_probes() -> None:
    store = TagStore()
    store.update([Sample("fsf.a", 1.0, Quality.GOOD, 1), Sample.bad("fsf.b", "timeout")])
    board = StatusBoard(store)
    source, sink = FakeSource("fsf", samples_read=5), FakeSink("mqtt", connected=False)
    board.add(source)
    board.add(sink)
    board.add(FakeOutbox())
    assert board.summary() == "1/2 tags good, 0 samples/s, outbox 42, sink mqtt disconnected"
    probes = board.probes()
    assert [p.name for p in probes] == ["source:fsf", "sink:mqtt"]
    source.samples_read = 9
    assert probes[0].read() == 9


def test_a_watchdog_round_reads_each_provider_twice_at_most() -> None:
    """Listing the probes reads every provider once, and each probe reads its own provider
    only: a source's status looks at each of its tags, so reading every provider for every
    probe cost sources x tags per round."""
    reads: dict[str, int] = {}

    @dataclass
    class Counted(FakeSource):
        def status(self) -> ComponentStatus:
            reads[self.name] = reads.get(self.name, 0) + 1
            return super().status()

    board = StatusBoard(TagStore())
    sources = [Counted(f"s{k}", samples_read=k) for k in range(20)]
    for source in sources:
        board.add(source)
    probes = board.probes()
    assert [p.read() for p in probes] == list(range(20))
    assert reads == {f"s{k}": 2 for k in range(20)}
    sources[3].samples_read = 99
    assert probes[3].read() == 99  # still a live reading of its own provider


def test_a_probe_of_a_failing_provider_reads_no_progress() -> None:
    class Broken:
        def __init__(self) -> None:
            self.fail = False

        def status(self) -> ComponentStatus:
            if self.fail:
                raise RuntimeError("gone")
            return ComponentStatus("b", "sink", "connected", True, progress=7)

    broken = Broken()
    board = StatusBoard()
    board.add(broken)
    (probe,) = board.probes()
    assert probe.read() == 7
    broken.fail = True
    assert probe.read() == -1


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("127.0.0.1:9108", ("127.0.0.1", 9108)),
        ("[::1]:9", ("::1", 9)),
        (":9108", ("127.0.0.1", 9108)),
    ],
)
def test_parse_listen(listen: str, expected: tuple[str, int]) -> None:
    assert parse_listen(listen) == expected


def test_parse_listen_names_the_bad_value() -> None:
    with pytest.raises(ValueError, match=r"health\.listen = 'localhost'"):
        parse_listen("localhost")


def test_source_health_progress_follows_the_sources_newest_sample() -> None:
    """Bad samples from failed reconnects count as progress too: only a hung loop stalls."""
    from edge_agent.acquisition import SourceHealth
    from edge_agent.contracts.status import SourceStats

    store = TagStore()
    stats = SourceStats("fsf", "opcua", 2)
    health = SourceHealth(stats, ["fsf.a", "fsf.b"], store)
    first = health.status()
    assert (first.state, first.healthy, first.progress) == ("connecting", False, 0)

    store.update([Sample.bad("fsf.a", "connection_lost", acq_ns=10)])
    stats.connects, stats.connected = 1, True
    stats.read_latency.observe(0.02)
    status = health.status()
    assert (status.state, status.healthy, status.progress) == ("connected", True, 10)
    assert status.histograms["read_latency_seconds"].count == 1

    store.update([Sample("fsf.b", 1.0, Quality.GOOD, 25), Sample("other.x", 1.0, Quality.GOOD, 99)])
    stats.connected = False
    status = health.status()
    assert (status.state, status.progress) == ("disconnected", 25)
    assert not SourceHealth(stats, [], store).status().watched


async def test_a_sink_that_has_not_yet_connected_is_starting_and_not_ok() -> None:
    from edge_agent.sinks.state import SinkState

    board = StatusBoard()
    state = SinkState("influx")
    board.add(state)
    code, doc = health_document(board)
    assert (code, doc["sinks"]["influx"]["state"]) == (503, "starting")  # type: ignore[index]
    state.confirmed(1, 10)
    assert health_document(board)[0] == 200


async def test_a_service_restarting_repeatedly_is_unhealthy_everywhere_with_its_last_error() -> (
    None
):
    failed = asyncio.Event()
    runs = 0

    async def broken() -> None:
        nonlocal runs
        runs += 1
        if runs >= 3:
            failed.set()
        raise RuntimeError(f"cannot open the port (run {runs})")

    board = StatusBoard()
    fast = Backoff(initial_s=0.001, max_s=0.002, jitter=0)
    supervisor = Supervisor([Service("sink:influx", broken)], backoff=fast, board=board)
    assert health_document(board)[0] == 200  # nothing has failed yet
    supervisor.start()
    try:
        await asyncio.wait_for(failed.wait(), 5)
        code, doc = health_document(board)
        entry = doc["services"]["sink:influx"]  # type: ignore[index]
        assert code == 503
        assert entry["state"] == "restarting"
        assert entry["healthy"] is False
        assert entry["detail"].startswith("RuntimeError: cannot open the port")
        assert "service sink:influx restarting: RuntimeError: cannot open" in board.summary()
        text = generate_latest(metrics_registry(board, "demo", "edge-01")).decode()
        assert 'edge_agent_component_up{kind="service",name="sink:influx"} 0.0' in text
        assert 'edge_agent_service_restarts_total{service="sink:influx"}' in text
    finally:
        await supervisor.stop()
