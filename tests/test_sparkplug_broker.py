"""The Sparkplug B edge node against a real Mosquitto, seen by a host that decodes every message
with our generated protobuf."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from drivers.sparkplug import sparkplug_b_pb2 as pb
from drivers.sparkplug.payload import QUALITY_PROPERTY, property_map
from edge_agent.runtime import build_catalogue
from edge_agent.sparkplug.catalogue import split_tag
from edge_agent.sparkplug.service import SparkplugEdgeNode
from edge_agent.sparkplug.sink import node_catalogue
from tests.support.services import Mosquitto
from tests.support.sparkplug_harness import GROUP, NODE, ROOT, make_config, running_edge
from tests.support.sparkplug_host import Host, Seen, assert_seq_continuous, count
from tests.support.waiting import eventually

pytestmark = pytest.mark.services


@pytest.fixture
def host(mosquitto: Mosquitto) -> Iterator[Host]:
    h = Host(mosquitto.host, mosquitto.port, GROUP, NODE)
    h.wait_subscribed()
    yield h
    h.close()


async def seen(host: Host, what: str, predicate: Callable[[list[Seen]], bool]) -> list[Seen]:
    return await asyncio.to_thread(host.wait_until, what, predicate)


def data_metrics(got: list[Seen], device: str | None = None) -> list[pb.Payload.Metric]:
    """Every metric of every DDATA (of one device), in arrival order."""
    return [
        m
        for s in got
        if s.verb == "DDATA" and (device is None or s.device == device)
        for m in s.payload.metrics
    ]


def connected(edge: SparkplugEdgeNode) -> bool:
    return edge.connection is not None and edge.connection.connected.is_set()


def state_seen(edge: SparkplugEdgeNode) -> int | None:
    assert edge.host is not None
    return edge.host.last_timestamp_ms


def demo_tags_by_device() -> dict[str, set[str]]:
    """Every metric the births must declare before any value: the configured tags, the KPIs and
    the alarms' state metrics."""
    cfg = make_config(1883, Path("unused"))
    node = node_catalogue(cfg, build_catalogue(cfg))
    return {device: {d.name for d in node.of_device(device)} for device in node.devices()}


async def test_births_first_and_complete_then_history_then_live(
    mosquitto: Mosquitto, host: Host, tmp_path: Path
) -> None:
    async with running_edge(mosquitto.port, tmp_path, start=False) as run:
        # Produced before the first connection: waits in the outbox, then comes as history.
        await run.publish({"fsf.matte_temp": 1201.0, "kpi.recycled_ratio.day": 0.3})
        await run.publish({"fsf.matte_temp": 1202.0})
        run.start()
        births = await seen(host, "NBIRTH and the DBIRTHs", lambda g: count(g, "DBIRTH") >= 4)
        expected = demo_tags_by_device()
        assert [s.verb for s in births[:5]] == ["NBIRTH"] + ["DBIRTH"] * 4
        assert {s.device for s in births[1:5]} == set(expected)
        for dbirth in births[1:5]:
            metrics = dbirth.payload.metrics
            assert dbirth.device is not None
            assert {m.name for m in metrics} == expected[dbirth.device]
            for m in metrics:
                assert all(m.HasField(f) for f in ("alias", "datatype", "timestamp"))
                assert QUALITY_PROPERTY in property_map(m)
            assert all(s.qos == 0 and not s.retain for s in births)
        fsf = next(s for s in births if s.device == "fsf")
        assert fsf.metric("matte_temp").double_value == 1202.0
        assert property_map(fsf.metric("matte_temp"))["engUnit"] == "°C"

        history = await seen(host, "history", lambda g: len(data_metrics(g, "fsf")) >= 2)
        replayed = [m.double_value for m in data_metrics(history, "fsf") if m.is_historical]
        assert replayed == [1201.0, 1202.0]

        await run.publish({"fsf.matte_temp": 1203.0})
        alias = fsf.metric("matte_temp").alias
        got = await seen(host, "live DDATA", lambda g: len(data_metrics(g, "fsf")) >= 3)
        live = [m for m in data_metrics(got, "fsf") if m.alias == alias]
        assert [(m.double_value, m.is_historical, m.HasField("name")) for m in live] == [
            (1201.0, True, False),
            (1202.0, True, False),
            (1203.0, False, False),
        ]
        assert_seq_continuous(got)


async def test_seq_wraps_and_rebirth_on_command_keeps_bdseq(
    mosquitto: Mosquitto, host: Host, tmp_path: Path
) -> None:
    async with running_edge(mosquitto.port, tmp_path, max_samples_per_read=1) as run:
        await run.publish({"fsf.matte_temp": 0.0})
        devices = len(demo_tags_by_device())
        await seen(host, "births", lambda g: count(g, "DBIRTH") >= devices)
        for i in range(1, 300):
            await run.publish({"fsf.matte_temp": float(i)})
        await seen(host, "300 DDATA", lambda g: count(g, "DDATA") >= 300)
        host.ncmd("Node Control/Rebirth")
        got = await seen(host, "complete rebirth", lambda g: count(g, "DBIRTH") == 2 * devices)
        assert_seq_continuous(got)
        seqs = [s.payload.seq for s in got]
        assert seqs.count(255) >= 1  # the wrap happened
        first, second = [s for s in got if s.verb == "NBIRTH"]
        assert first.bd_seq == second.bd_seq
        await run.publish({"fsf.matte_temp": -1.0})
        after = await seen(host, "data after rebirth", lambda g: g[-1].verb == "DDATA")
        assert_seq_continuous(after)


async def test_device_death_on_source_loss_and_birth_on_return(
    mosquitto: Mosquitto, host: Host, tmp_path: Path
) -> None:
    kiln = sorted(t for t in make_config(1, tmp_path).tags() if t.startswith("kiln."))
    async with running_edge(mosquitto.port, tmp_path) as run:
        await run.publish(dict.fromkeys(kiln, 1.0))
        await seen(host, "births", lambda g: count(g, "DBIRTH", "kiln") == 1)
        await run.publish(dict.fromkeys(kiln, None))  # the kiln's source is lost: all Bad
        got = await seen(host, "DDEATH kiln", lambda g: count(g, "DDEATH") == 1)
        death = next(s for s in got if s.verb == "DDEATH")
        assert death.device == "kiln"
        bad_data = [s for s in got if s.verb == "DDATA" and s.device == "kiln"][-1]
        assert all(m.is_null for m in bad_data.payload.metrics)
        assert {property_map(m)[QUALITY_PROPERTY] for m in bad_data.payload.metrics} == {0}
        await run.publish({kiln[0]: 2.5})  # a reading again: the device is back
        got = await seen(host, "DBIRTH kiln again", lambda g: count(g, "DBIRTH", "kiln") == 2)
        rebirth = [s for s in got if s.verb == "DBIRTH" and s.device == "kiln"][-1]
        name = split_tag(kiln[0])[1]
        assert rebirth.metric(name).double_value == 2.5
        assert_seq_continuous(got)


async def test_primary_host_state_gates_births_and_offline_makes_the_node_leave(
    mosquitto: Mosquitto, host: Host, tmp_path: Path
) -> None:
    async with running_edge(mosquitto.port, tmp_path, primary_host_id="scada") as run:
        edge = run.edge
        await eventually(lambda: connected(edge), 15.0, "connected")
        assert edge.host is not None
        host.publish_state(False, 1000)
        await eventually(lambda: state_seen(edge) == 1000, 15.0, "STATE seen")
        assert host.messages() == []  # connected, subscribed, told offline: no births
        host.publish_state(True, 2000)
        births = await seen(host, "births", lambda g: len(g) >= 4)
        assert births[0].verb == "NBIRTH"
        bd = births[0].bd_seq

        host.publish_state(False, 1500)  # older than the online STATE: a stale will, ignored
        await eventually(lambda: edge.host.last_problem is not None, 15.0, "stale STATE ignored")  # type: ignore[union-attr]
        assert edge.node.born

        host.publish_state(False, 3000)
        got = await seen(host, "NDEATH", lambda g: count(g, "NDEATH") == 1)
        death = next(s for s in got if s.verb == "NDEATH")
        assert death.bd_seq == bd
        assert not death.payload.HasField("seq")
        await eventually(
            lambda: connected(edge) and edge.node.bd_seq == bd + 1, 15.0, "back, told offline"
        )
        assert state_seen(edge) == 3000
        assert [s.verb for s in host.messages()].count("NBIRTH") == 1  # still waiting
        host.publish_state(True, 4000)
        got = await seen(host, "NBIRTH again", lambda g: count(g, "NBIRTH") == 2)
        assert [s for s in got if s.verb == "NBIRTH"][-1].bd_seq == bd + 1


async def test_history_replayed_after_a_broker_outage(
    mosquitto: Mosquitto, host: Host, tmp_path: Path
) -> None:
    async with running_edge(mosquitto.port, tmp_path, primary_host_id="scada") as run:
        host.publish_state(True, 1000)
        await run.publish({"fsf.matte_temp": 1200.0})
        births = await seen(host, "births", lambda g: len(g) >= 4)
        bd = births[0].bd_seq
        alias = next(s for s in births if s.device == "fsf").metric("matte_temp").alias

        await asyncio.to_thread(mosquitto.stop)
        await eventually(lambda: not connected(run.edge), 15.0, "disconnected")
        for v in (1210.0, 1220.0, 1230.0):
            await run.publish({"fsf.matte_temp": v})
        await asyncio.to_thread(mosquitto.start)
        await asyncio.to_thread(host.wait_subscribed)
        host.publish_state(True, 2000)  # retained state died with the broker: the host says so

        def replayed(g: list[Seen]) -> bool:
            return count(g, "NBIRTH") == 2 and 1230.0 in [m.double_value for m in data_metrics(g)]

        got = await seen(host, "replayed history", replayed)
        nbirths = [s for s in got if s.verb == "NBIRTH"]
        assert nbirths[-1].bd_seq == bd + 1
        after = got[got.index(nbirths[-1]) :]
        history = [m for m in data_metrics(after) if m.alias == alias]
        assert [(m.double_value, m.is_historical) for m in history] == [
            (1210.0, True),
            (1220.0, True),
            (1230.0, True),
        ]
        assert_seq_continuous(after)
        await run.publish({"fsf.matte_temp": 1240.0})
        got = await seen(host, "live data", lambda g: data_metrics(g)[-1].double_value == 1240.0)
        last = data_metrics(got)[-1]
        assert (last.double_value, last.is_historical) == (1240.0, False)


@dataclass(frozen=True)
class Refusal:
    result: str
    reason: str | None
    detail: str


class RecordingGuard:
    def __init__(self) -> None:
        self.calls: list[tuple[str, object, int | None]] = []

    async def __call__(
        self, tag: str, value: object, ts_ns: int | None, request_id: str | None
    ) -> Refusal:
        self.calls.append((tag, value, ts_ns))
        return Refusal("refused", "advisory_mode", "control.mode is 'advisory'")


async def test_dcmd_goes_to_the_control_guard_and_its_refusal_is_reported(
    mosquitto: Mosquitto, host: Host, tmp_path: Path
) -> None:
    guard = RecordingGuard()
    async with running_edge(mosquitto.port, tmp_path, dcmd=guard):
        births = await seen(host, "births", lambda g: count(g, "DBIRTH") >= 3)
        fsf = next(s for s in births if s.device == "fsf")
        target = fsf.metric("o2_flow")
        host.dcmd("fsf", target.alias, 20500.0)
        got = await seen(host, "NDATA with the result", lambda g: count(g, "NDATA") == 1)
        (report,) = [s for s in got if s.verb == "NDATA"]
        (metric,) = report.payload.metrics
        nbirth = births[0]
        assert metric.alias == nbirth.metric("Control/Last Command Result").alias
        assert "fsf.o2_flow = 20500.0: refused (advisory_mode)" in metric.string_value
        ((tag, value, ts_ns),) = guard.calls
        assert (tag, value) == ("fsf.o2_flow", 20500.0)
        assert ts_ns is not None
        assert_seq_continuous(got)


def test_ndeath_when_the_agent_is_killed_and_on_clean_exit(
    mosquitto: Mosquitto, host: Host, tmp_path: Path
) -> None:
    """The real `edge-agent run` (its sources unreachable: that does not matter here)."""

    def start() -> subprocess.Popen[bytes]:
        settings = {
            "mqtt.port": mosquitto.port,
            "mqtt.format": "sparkplug_b",
            "mqtt.sparkplug.group_id": GROUP,
            "mqtt.sparkplug.edge_node_id": NODE,
            "agent.state_dir": tmp_path,
            "health.enabled": "false",
            "source.fsf.endpoint": "opc.tcp://127.0.0.1:9/",
            "source.offgas.endpoint": "tcp://127.0.0.1:9",
            "source.kiln.endpoint": "tcp://127.0.0.1:9",
        }
        sets = [arg for key, value in settings.items() for arg in ("--set", f"{key}={value}")]
        cli = Path(sys.executable).parent / "edge-agent"
        return subprocess.Popen([cli, "run", "--config", ROOT / "config/demo.toml", *sets])

    agent = start()
    try:
        got = host.wait_until("NBIRTH", lambda g: count(g, "NBIRTH") >= 1)
        bd = next(s for s in got if s.verb == "NBIRTH").bd_seq
        agent.send_signal(signal.SIGKILL)
        agent.wait(10)
        got = host.wait_until("NDEATH", lambda g: count(g, "NDEATH") == 1)
        (death,) = [s for s in got if s.verb == "NDEATH"]
        assert death.bd_seq == bd
        assert (death.qos, death.retain, death.payload.HasField("seq")) == (1, False, False)

        # The first session may have sent a rebirth (new KPI metrics) before it died; the broker
        # delivers all of that session's messages before its will, so count births up to here.
        births_of_first_session = count(got, "NBIRTH")
        agent = start()  # bdSeq was persisted: the new session's is the next one
        got = host.wait_until(
            "NBIRTH of the restarted agent",
            lambda g: count(g, "NBIRTH") > births_of_first_session,
        )
        assert [s for s in got if s.verb == "NBIRTH"][-1].bd_seq == bd + 1
        agent.send_signal(signal.SIGTERM)  # clean exit: MQTT 5 disconnect with will
        assert agent.wait(30) == 0
        got = host.wait_until("NDEATH 2", lambda g: count(g, "NDEATH") == 2)
        assert [s for s in got if s.verb == "NDEATH"][-1].bd_seq == bd + 1
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()


async def test_mqtt_311_clean_exit_publishes_ndeath_before_disconnecting(
    mosquitto: Mosquitto, host: Host, tmp_path: Path
) -> None:
    async with running_edge(mosquitto.port, tmp_path, protocol="3.1.1") as run:
        births = await seen(host, "births", lambda g: count(g, "DBIRTH") >= 3)
        assert run.task is not None
        run.task.cancel()  # what the supervisor does on shutdown
        await asyncio.gather(run.task, return_exceptions=True)
    got = await seen(host, "NDEATH", lambda g: count(g, "NDEATH") == 1)
    death = next(s for s in got if s.verb == "NDEATH")
    assert death.bd_seq == births[0].bd_seq
    assert death.qos == 1


async def test_next_server_command_moves_the_node_to_the_backup_broker(
    mosquitto: Mosquitto, host: Host, tmp_path: Path
) -> None:
    with Mosquitto(tmp_path / "backup") as backup:
        backup_host = Host(backup.host, backup.port, GROUP, NODE)
        try:
            backup_host.wait_subscribed()
            servers = [f"{backup.host}:{backup.port}"]
            async with running_edge(mosquitto.port, tmp_path, backup_servers=servers):
                births = await seen(host, "births", lambda g: count(g, "DBIRTH") >= 3)
                host.ncmd("Node Control/Next Server")
                got = await seen(host, "NDEATH", lambda g: count(g, "NDEATH") == 1)
                assert next(s for s in got if s.verb == "NDEATH").bd_seq == births[0].bd_seq
                moved = await seen(backup_host, "backup births", lambda g: count(g, "DBIRTH") >= 3)
                assert moved[0].verb == "NBIRTH"
                assert moved[0].bd_seq == births[0].bd_seq + 1
        finally:
            backup_host.close()
