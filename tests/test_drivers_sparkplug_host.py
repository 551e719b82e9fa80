"""The Sparkplug host state machine without a broker, fed by our own edge node's messages."""

from __future__ import annotations

from collections.abc import Iterable

from drivers.sparkplug import payload as codec
from drivers.sparkplug.host import (
    AWAITING_BIRTH,
    BAD_AT_SOURCE,
    DEVICE_OFFLINE,
    NODE_OFFLINE,
    NOT_IN_BIRTH,
    HostTag,
    NodeHost,
    Update,
    quality_of_code,
)
from drivers.sparkplug.payload import REBIRTH, DataType, MetricOut
from drivers.sparkplug.topics import Topics
from edge_agent.contracts.catalogue import TagInfo
from edge_agent.contracts.samples import Quality, Sample
from edge_agent.sparkplug.catalogue import Catalogue
from edge_agent.sparkplug.node import EdgeNode, Message

T0 = 1_700_000_000_000_000_000
S = 10**9
TOPICS = Topics("smelter", "unit-kiln")
TAGS = [
    HostTag("kiln.feed_tph", "kiln", "feed_tph"),
    HostTag("kiln.running", "kiln", "running"),
    HostTag("plant.kiln_bdseq", None, "bdSeq"),
]


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


def edge_node() -> tuple[EdgeNode, Clock]:
    hints = [TagInfo("kiln.feed_tph", "t/h"), TagInfo("kiln.running", "", "boolean")]
    clock = Clock()
    return EdgeNode(TOPICS, Catalogue(hints), clock_ns=clock), clock


def good(tag: str, value: float | bool, t_ns: int) -> Sample:
    return Sample(tag, value, Quality.GOOD, t_ns, t_ns)


def feed(host: NodeHost, messages: Iterable[Message], now: int = T0) -> Update:
    total = Update()
    for m in messages:
        u = host.feed(m.topic, m.payload, now)
        total.live += u.live
        total.history += u.history
        total.outgoing += u.outgoing
        total.problems += u.problems
    return total


def born() -> tuple[NodeHost, EdgeNode, Clock, Update]:
    node, clock = edge_node()
    node.new_session(3)
    current = {
        "kiln.feed_tph": good("kiln.feed_tph", 8.5, T0),
        "kiln.running": good("kiln.running", True, T0),
    }
    host = NodeHost(TOPICS, TAGS)
    return host, node, clock, feed(host, node.births(current))


def latest(update: Update) -> dict[str, Sample]:
    return {s.tag: s for s in update.live}


def is_rebirth(update: Update) -> bool:
    if not update.outgoing:
        return False
    out = update.outgoing[-1]
    metric = codec.decode(out.payload).metrics[0]
    return (
        out.topic == "spBv1.0/smelter/NCMD/unit-kiln"
        and metric.name == REBIRTH
        and metric.boolean_value
    )


def test_births_give_values_datatypes_and_source_timestamps() -> None:
    host, _, _, update = born()
    values = latest(update)
    assert values["kiln.feed_tph"].value == 8.5
    assert values["kiln.feed_tph"].source_ns == T0  # the unit's timestamp, kept (ms precision)
    assert values["kiln.running"].value is True
    assert values["plant.kiln_bdseq"].value == 3  # a node metric: device omitted
    assert host.online
    assert host.bd_seq == 3
    assert host.devices_online == ["kiln"]
    assert not update.outgoing
    assert not update.problems


def test_data_by_alias_in_sequence() -> None:
    host, node, clock, _ = born()
    clock.now = T0 + 2 * S
    update = feed(host, node.data([good("kiln.feed_tph", 9.25, T0 + 2 * S)]))
    assert latest(update)["kiln.feed_tph"].value == 9.25
    assert latest(update)["kiln.feed_tph"].source_ns == T0 + 2 * S
    assert not update.outgoing


def test_bad_at_the_unit_stays_bad_here() -> None:
    host, node, _, _ = born()
    update = feed(host, node.data([Sample("kiln.feed_tph", None, Quality.BAD, T0 + S, None, "x")]))
    s = latest(update)["kiln.feed_tph"]
    assert s.quality is Quality.BAD
    assert s.value is None
    assert s.reason == BAD_AT_SOURCE


def test_uncertain_travels_as_stale_and_comes_back_uncertain() -> None:
    host, node, _, _ = born()
    update = feed(host, node.data([Sample("kiln.feed_tph", 7.0, Quality.UNCERTAIN, T0 + S, None)]))
    assert latest(update)["kiln.feed_tph"].quality is Quality.UNCERTAIN
    assert quality_of_code(192) is Quality.GOOD
    assert quality_of_code(0) is Quality.BAD


def test_seq_gap_requests_rebirth_and_the_rebirth_recovers() -> None:
    host, node, _, _ = born()
    node.data([good("kiln.feed_tph", 9.0, T0 + S)])  # published, but this host never gets it
    update = feed(host, node.data([good("kiln.feed_tph", 9.5, T0 + 2 * S)]))
    assert is_rebirth(update)
    assert latest(update)["kiln.feed_tph"].value == 9.5  # newer than what it replaces: applied
    assert host.seq_gaps == 1
    again = feed(host, node.data([good("kiln.feed_tph", 9.7, T0 + 3 * S)]), now=T0 + S)
    assert not again.outgoing  # in sequence again, and within the rebirth interval anyway
    reborn = feed(host, node.births())
    assert not reborn.outgoing
    assert host.births == 2


def test_rebirth_requests_are_paced() -> None:
    host = NodeHost(TOPICS, TAGS, rebirth_interval_ns=5 * S)
    node, _ = edge_node()
    node.new_session(0)
    node.births({})
    msgs = node.data([good("kiln.feed_tph", 1.0, T0)])
    assert is_rebirth(feed(host, msgs, now=T0))  # DATA before BIRTH
    assert not feed(host, msgs, now=T0 + S).outgoing
    assert is_rebirth(feed(host, msgs, now=T0 + 6 * S))


def test_unknown_alias_requests_rebirth() -> None:
    host, _node, _, _ = born()
    body = codec.encode(0, [MetricOut(0, 1.0, DataType.DOUBLE, alias=999)], 2)  # NBIRTH 0, DBIRTH 1
    update = host.feed("spBv1.0/smelter/DDATA/unit-kiln/kiln", body, T0)
    assert is_rebirth(update)
    assert "unknown alias" in update.problems[-1]


def test_ndeath_with_matching_bdseq_makes_every_tag_bad_node_offline() -> None:
    host, node, _, _ = born()
    update = feed(host, [node.death()], now=T0 + 5 * S)
    assert {s.tag: s.reason for s in update.live} == {t.tag: NODE_OFFLINE for t in TAGS}
    assert all(s.quality is Quality.BAD and s.acq_ns == T0 + 5 * S for s in update.live)
    assert not host.online


def test_ndeath_of_an_earlier_session_is_ignored() -> None:
    host, _node, _, _ = born()
    old_will = EdgeNode(TOPICS, Catalogue()).new_session(2)  # bdSeq 2, the previous session
    update = host.feed(old_will.topic, old_will.payload, T0)
    assert not update.live
    assert host.online
    assert "bdSeq 2 ignored" in update.problems[0]


def test_ddeath_makes_the_device_tags_bad_device_offline() -> None:
    host, node, _, _ = born()
    bad = [
        Sample(t, None, Quality.BAD, T0 + S, None, "connection_lost")
        for t in ("kiln.feed_tph", "kiln.running")
    ]
    update = feed(host, node.data(bad))
    assert latest(update)["kiln.feed_tph"].reason == DEVICE_OFFLINE
    assert host.devices_online == []
    # DDATA from a dead device is data before its birth: ask again (seq: DDATA 2, DDEATH 3)
    body = codec.encode(0, [MetricOut(0, 1.0, DataType.DOUBLE, alias=16)], 4)
    assert is_rebirth(host.feed("spBv1.0/smelter/DDATA/unit-kiln/kiln", body, T0 + 10 * S))


def test_historical_metrics_are_history_not_live() -> None:
    host, node, clock, _ = born()
    node.end_session()
    clock.now = T0 + 60 * S
    node.new_session(4)
    births = node.births({"kiln.feed_tph": good("kiln.feed_tph", 9.9, T0 + 60 * S)})
    feed(host, births)
    backlog = [good("kiln.feed_tph", 5.0 + i, T0 + 30 * S + i * S) for i in range(3)]
    update = feed(host, node.data(backlog))
    assert [s.value for s in update.history] == [5.0, 6.0, 7.0]
    assert [s.source_ns for s in update.history] == [T0 + 30 * S + i * S for i in range(3)]
    assert not update.live


def test_configured_metric_missing_from_birth_is_bad_by_name() -> None:
    host = NodeHost(TOPICS, [*TAGS, HostTag("kiln.nope", "kiln", "nope")])
    node, _ = edge_node()
    node.new_session(0)
    update = feed(host, node.births({}))
    assert latest(update)["kiln.nope"].reason == NOT_IN_BIRTH
    assert latest(update)["kiln.feed_tph"].reason == BAD_AT_SOURCE  # born null: nothing read yet


def test_offline_and_awaiting_mark_everything_bad() -> None:
    host, _, _, _ = born()
    assert {s.reason for s in host.offline(T0)} == {NODE_OFFLINE}
    assert not host.online
    assert {s.reason for s in host.awaiting(T0)} == {AWAITING_BIRTH}


def test_garbage_and_foreign_topics() -> None:
    host, _, _, _ = born()
    update = host.feed("spBv1.0/smelter/NDATA/unit-kiln", b"\xff\xff\xff", T0)
    assert update.problems
    assert is_rebirth(update)
    assert host.feed("spBv1.0/smelter/NDATA/other-node", b"\xff", T0) == Update()
    assert host.feed("spBv1.0/smelter/NCMD/unit-kiln", b"\xff", T0) == Update()
    assert host.feed("plant/site/x", b"{}", T0) == Update()


def test_nan_metric_is_bad_and_the_rest_of_the_message_applies() -> None:
    host, _node, _, _ = born()
    body = codec.encode(
        0,
        [
            MetricOut(0, float("nan"), DataType.DOUBLE, alias=16),
            MetricOut(0, False, DataType.BOOLEAN, alias=17),
        ],
        2,
    )
    update = host.feed("spBv1.0/smelter/DDATA/unit-kiln/kiln", body, T0)
    values = latest(update)
    assert values["kiln.feed_tph"].quality is Quality.BAD
    assert values["kiln.running"].value is False
