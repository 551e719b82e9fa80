"""The edge-node state machine without a broker: births, seq, RBE, deaths, history, commands."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from drivers.sparkplug import payload as codec
from drivers.sparkplug import sparkplug_b_pb2 as pb
from drivers.sparkplug.payload import DataType, MetricOut
from drivers.sparkplug.topics import Topics
from edge_agent.contracts.catalogue import TagInfo
from edge_agent.contracts.samples import Quality, Sample
from edge_agent.sparkplug.bdseq import BdSeqStore
from edge_agent.sparkplug.catalogue import Catalogue
from edge_agent.sparkplug.node import (
    DeviceWrite,
    EdgeNode,
    Ignored,
    Message,
    NextServer,
    Rebirth,
)
from edge_agent.sparkplug.primary_host import HostEvent, PrimaryHost, state_payload

T0 = 1_700_000_000_000_000_000
TOPICS = Topics("smelter", "edge-01")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


def sample(tag: str, value: object, t_s: float, quality: Quality = Quality.GOOD) -> Sample:
    ns = T0 + int(t_s * 1e9)
    return Sample(tag, value, quality, ns, ns)  # type: ignore[arg-type]


def make_node(deadband: float = 0.0) -> tuple[EdgeNode, Clock]:
    hints = [
        TagInfo("fsf.matte_temp", "°C"),
        TagInfo("fsf.o2_flow", "Nm³/h", writable=True),
        TagInfo("kiln.running", "", "boolean"),
    ]
    clock = Clock()
    return EdgeNode(TOPICS, Catalogue(hints), deadband=lambda _t: deadband, clock_ns=clock), clock


def decoded(messages: Iterable[Message]) -> list[tuple[str, pb.Payload]]:
    return [(m.topic.split("/", 2)[2], codec.decode(m.payload)) for m in messages]


def start(node: EdgeNode, clock: Clock, current: dict[str, Sample] | None = None) -> list[Message]:
    node.new_session(7)
    clock.now = T0 + 10 * 10**9
    return node.births(current or {})


def test_births_declare_every_metric_with_seq_from_zero() -> None:
    node, clock = make_node()
    current = {"fsf.matte_temp": sample("fsf.matte_temp", 1210.5, 9)}
    msgs = decoded(start(node, clock, current))
    assert [t for t, _ in msgs] == [
        "NBIRTH/edge-01",
        "DBIRTH/edge-01/fsf",
        "DBIRTH/edge-01/kiln",
    ]
    assert [p.seq for _, p in msgs] == [0, 1, 2]
    nbirth = msgs[0][1]
    by_name = {m.name: m for m in nbirth.metrics}
    assert by_name["bdSeq"].long_value == 7
    assert by_name["bdSeq"].datatype == DataType.INT64
    rebirth = by_name["Node Control/Rebirth"]
    assert (rebirth.boolean_value, rebirth.HasField("alias")) == (False, False)
    assert by_name["Node Control/Next Server"].datatype == DataType.BOOLEAN
    fsf = {m.name: m for m in msgs[1][1].metrics}
    temp = fsf["matte_temp"]
    assert temp.double_value == 1210.5
    assert temp.datatype == DataType.DOUBLE
    assert temp.timestamp == (T0 + 9 * 10**9) // 10**6
    assert codec.property_map(temp) == {"engUnit": "°C", "Quality": 192}
    flow = fsf["o2_flow"]
    assert flow.is_null
    assert codec.property_map(flow)["Quality"] == 0
    aliases = [m.alias for _, p in msgs for m in p.metrics if m.HasField("alias")]
    assert len(aliases) == len(set(aliases))


def test_ndeath_carries_bdseq_and_no_seq() -> None:
    node, _clock = make_node()
    will = node.new_session(255)
    assert (will.topic, will.qos, will.retain) == ("spBv1.0/smelter/NDEATH/edge-01", 1, False)
    p = codec.decode(will.payload)
    assert not p.HasField("seq")
    assert [(m.name, m.long_value, m.datatype) for m in p.metrics] == [("bdSeq", 255, 4)]


def test_data_by_exception_with_aliases_only() -> None:
    node, clock = make_node()
    start(node, clock)
    msgs = decoded(
        node.data(
            [
                sample("fsf.matte_temp", 1200.0, 11),
                sample("fsf.matte_temp", 1200.0, 12),  # unchanged: not reported
                sample("fsf.matte_temp", 1201.0, 13),
            ]
        )
    )
    assert [t for t, _ in msgs] == ["DDATA/edge-01/fsf"]
    metrics = msgs[0][1].metrics
    assert [m.double_value for m in metrics] == [1200.0, 1201.0]
    assert all(not m.HasField("name") and not m.HasField("datatype") for m in metrics)
    assert not any(m.is_historical for m in metrics)


def test_an_implausible_value_is_a_bad_null_metric_with_reason_and_raw() -> None:
    node, clock = make_node()
    start(node, clock, {"fsf.matte_temp": sample("fsf.matte_temp", 1250.0, 9)})
    ns = T0 + 11 * 10**9
    spike = Sample("fsf.matte_temp", None, Quality.BAD, ns, ns, "out_of_range", raw=3000.0)
    msgs = dict(decoded(node.data([spike])))
    (metric,) = msgs["DDATA/edge-01/fsf"].metrics
    assert metric.is_null
    props = codec.property_map(metric)
    assert props == {"Quality": 0, "reason": "out_of_range", "raw": 3000.0}


def test_deadband_suppresses_small_moves_but_not_quality_changes() -> None:
    node, clock = make_node(deadband=2.0)
    start(node, clock, {"fsf.matte_temp": sample("fsf.matte_temp", 1200.0, 9)})
    msgs = decoded(
        node.data(
            [
                sample("fsf.matte_temp", 1201.5, 11),
                sample("fsf.matte_temp", 1201.5, 12, Quality.UNCERTAIN),
                sample("fsf.matte_temp", 1203.0, 13, Quality.UNCERTAIN),  # within 2.0
                sample("fsf.matte_temp", 1204.0, 14, Quality.UNCERTAIN),
            ]
        )
    )
    values = [(m.double_value, codec.property_map(m).get("Quality")) for m in msgs[0][1].metrics]
    assert values == [(1201.5, 500), (1204.0, 500)]


def test_seq_wraps_from_255_to_0_across_every_message_kind() -> None:
    node, clock = make_node()
    seqs = [p.seq for _, p in decoded(start(node, clock))]
    for i in range(300):
        seqs += [p.seq for _, p in decoded(node.data([sample("fsf.matte_temp", float(i), 11 + i)]))]
    seqs.append(codec.decode(node.command_result("ok").payload).seq)
    assert seqs == [i % 256 for i in range(len(seqs))]
    assert len(seqs) > 256


def test_backlog_is_forwarded_as_history_unfiltered() -> None:
    node, clock = make_node()
    node.new_session(0)
    clock.now = T0 + 100 * 10**9
    node.births({"fsf.matte_temp": sample("fsf.matte_temp", 1205.0, 99)})
    backlog = [sample("fsf.matte_temp", 1205.0, t) for t in (50, 60, 70)]
    live = sample("fsf.matte_temp", 1206.0, 101)
    msgs = decoded(node.data([*backlog, live]))
    hist, now = msgs[0][1].metrics, msgs[1][1].metrics
    assert [m.is_historical for m in hist] == [True, True, True]
    assert [m.timestamp for m in hist] == [(T0 + t * 10**9) // 10**6 for t in (50, 60, 70)]
    assert [(m.double_value, m.is_historical) for m in now] == [(1206.0, False)]


def test_device_dies_when_all_its_metrics_are_bad_and_is_reborn_on_return() -> None:
    node, clock = make_node()
    start(node, clock, {"kiln.running": sample("kiln.running", True, 9)})
    lost = node.data([Sample.bad("kiln.running", "connection_lost", T0 + 11 * 10**9)])
    assert [t for t, _ in decoded(lost)] == ["DDATA/edge-01/kiln", "DDEATH/edge-01/kiln"]
    assert node.data([Sample.bad("kiln.running", "connection_lost", T0 + 12 * 10**9)]) == []
    back = decoded(node.data([sample("kiln.running", False, 13)]))
    assert [t for t, _ in back] == ["DBIRTH/edge-01/kiln"]
    (running,) = back[0][1].metrics
    assert (running.name, running.boolean_value, running.datatype) == ("running", False, 11)


def test_a_new_tag_or_type_brings_a_complete_rebirth() -> None:
    node, clock = make_node()
    start(node, clock)
    msgs = decoded(
        node.data([sample("kpi.recycled_ratio.day", 0.31, 11), sample("kpi.co2.tph", 2.5, 11)])
    )
    assert [t for t, _ in msgs] == [
        "NBIRTH/edge-01",
        "DBIRTH/edge-01/fsf",
        "DBIRTH/edge-01/kiln",
        "DBIRTH/edge-01/kpi",
    ]
    assert msgs[0][1].seq == 0
    kpi = msgs[3][1].metrics
    assert [(m.name, m.double_value) for m in kpi] == [
        ("co2/tph", 2.5),
        ("recycled_ratio/day", 0.31),
    ]
    assert len(msgs) == 4  # one rebirth for the whole batch, values in the births


def test_rebirth_keeps_bdseq_and_restarts_seq() -> None:
    node, clock = make_node()
    start(node, clock)
    node.data([sample("fsf.matte_temp", 1.0, 11)])
    again = decoded(node.births())
    assert again[0][1].seq == 0
    assert {m.name: m.long_value for m in again[0][1].metrics}["bdSeq"] == 7
    fsf = {m.name: m.double_value for m in again[1][1].metrics}
    assert fsf["matte_temp"] == 1.0


def command(metrics: list[MetricOut]) -> bytes:
    return codec.encode(T0 // 10**6, metrics, None)


def test_commands_are_recognised() -> None:
    node, clock = make_node()
    start(node, clock)
    rebirth = command([MetricOut(0, True, DataType.BOOLEAN, name="Node Control/Rebirth")])
    assert node.command("spBv1.0/smelter/NCMD/edge-01", rebirth) == [Rebirth()]
    nxt = command([MetricOut(0, True, DataType.BOOLEAN, alias=1)])
    assert node.command("spBv1.0/smelter/NCMD/edge-01", nxt) == [NextServer()]
    o2 = node.catalogue.get("fsf.o2_flow")
    assert o2 is not None
    write = command([MetricOut(0, 21000.0, DataType.DOUBLE, alias=o2.alias)])
    assert node.command("spBv1.0/smelter/DCMD/edge-01/fsf", write) == [
        DeviceWrite("fsf.o2_flow", 21000.0, 0)
    ]
    by_name = command([MetricOut(0, -3, DataType.INT32, name="o2_flow", with_datatype=True)])
    assert node.command("spBv1.0/smelter/DCMD/edge-01/fsf", by_name) == [
        DeviceWrite("fsf.o2_flow", -3, 0)
    ]
    (wrong_device,) = node.command("spBv1.0/smelter/DCMD/edge-01/kiln", write)
    assert isinstance(wrong_device, Ignored)
    (garbage,) = node.command("spBv1.0/smelter/NCMD/edge-01", b"\xff\x00garbage")
    assert isinstance(garbage, Ignored)
    assert "not a Sparkplug B payload" in garbage.reason


def test_primary_host_state_rules() -> None:
    host = PrimaryHost("scada")
    assert host.update(state_payload(True, 1000)) is HostEvent.ONLINE
    assert host.update(state_payload(False, 999)) is HostEvent.IGNORED  # a stale will
    assert host.online
    assert host.update(state_payload(False, 1000)) is HostEvent.OFFLINE
    assert host.update(b"ONLINE") is HostEvent.IGNORED
    assert host.last_problem is not None
    assert "not JSON" in host.last_problem


def test_bdseq_persists_and_wraps(tmp_path: Path) -> None:
    store = BdSeqStore(tmp_path / "sparkplug" / "bdseq")
    assert [store.next() for _ in range(3)] == [0, 1, 2]
    store.path.write_text("255\n")
    assert store.next() == 0
    store.path.write_text("garbage")
    assert store.next() == 0


def test_signed_values_round_trip() -> None:
    metrics = [
        MetricOut(0, -5, DataType.INT64, name="a"),
        MetricOut(0, 2**63 + 1, DataType.UINT64, name="b"),
    ]
    p = codec.decode(codec.encode(0, metrics, 1))
    assert [codec.metric_value(m, t) for m, t in zip(p.metrics, (4, 8), strict=True)] == [
        -5,
        2**63 + 1,
    ]


def test_the_first_births_declare_the_kpis_with_units_and_data_needs_no_rebirth() -> None:
    """The runtime's catalogue knows every KPI before the engine computes one: its metrics are
    born with their units, and the first KPI values (float, text, count) fit their birth."""
    from edge_agent.config.loader import load_config
    from edge_agent.runtime import build_catalogue

    cfg = load_config(Path(__file__).resolve().parent.parent / "config" / "demo.toml", [])
    clock = Clock()
    node = EdgeNode(TOPICS, Catalogue(build_catalogue(cfg)), clock_ns=clock)
    births = decoded(start(node, clock))
    kpi = {m.name: m for t, p in births if t == "DBIRTH/edge-01/kpi" for m in p.metrics}
    assert codec.property_map(kpi["heat_margin_mw"])["engUnit"] == "MW"
    assert kpi["advisor/validity"].datatype == DataType.STRING
    assert kpi["recycled_ratio/hour_gaps"].datatype == DataType.INT64
    first_values = [
        sample("kpi.heat_margin_mw", 4.2, 11),
        sample("kpi.advisor.validity", "hold", 11),
        sample("kpi.recycled_ratio.hour_gaps", 0, 11),
    ]
    topics = [t for t, _ in decoded(node.data(first_values))]
    assert topics == ["DDATA/edge-01/kpi"]
