"""The Sparkplug B 3.0 host-application state machine for one edge node, free of I/O.

It turns the messages an edge node publishes into samples for the configured tags, and tells
its caller when to ask the node for a rebirth. What a host must believe about a node follows
the specification:

- NBIRTH starts a session: its bdSeq, its seq (the baseline for every later message of the
  node, devices included), and the node metrics' names, aliases and datatypes. DBIRTH does the
  same for one device. Aliases are unique across a node, so one table serves all its devices.
- NDATA/DDATA name metrics by alias (or by name); values decode with the datatype of the birth.
- A seq that is not the previous one + 1 (a lost message), an unknown alias, or data from a
  node or device that has not been born means this host's picture is incomplete: it asks for a
  rebirth (NCMD `Node Control/Rebirth` = true), at most once per `rebirth_interval_ns` until
  a birth arrives. A message after a gap is still applied: it is newer than what it replaces.
- NDEATH is honoured only when its bdSeq matches the NBIRTH's (a late will of an earlier
  session must not kill the current one); then every tag of the node goes Bad `node_offline`.
  DDEATH makes the device's tags Bad `device_offline`. So does `offline()`, which the driver
  calls when its own connection or the bridge to the node is gone: silence is never Good.
- A metric flagged `is_historical` (the node's backlog after an outage) is returned apart from
  the live samples: it is history for the outbox, never the latest value.

Quality travels in the `Quality` property (192 good, 500 stale, 0 bad; other codes by OPC DA
ranges); a null or Bad metric becomes a Bad sample with reason `bad_at_source`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

from drivers.sparkplug import payload as codec
from drivers.sparkplug import sparkplug_b_pb2 as pb
from drivers.sparkplug.payload import BD_SEQ, QUALITY_PROPERTY, REBIRTH, DataType, PayloadError
from drivers.sparkplug.topics import NAMESPACE, Topics
from edge_agent.contracts.samples import Quality, Sample

_MS = 1_000_000
NODE_OFFLINE = "node_offline"
DEVICE_OFFLINE = "device_offline"
AWAITING_BIRTH = "awaiting_birth"
NOT_IN_BIRTH = "metric_not_in_birth"
BAD_AT_SOURCE = "bad_at_source"
INVALID_VALUE = "invalid_value"


@dataclass(frozen=True, slots=True)
class HostTag:
    """One configured tag: `device` None for a node metric, `metric` the name as born."""

    tag: str
    device: str | None
    metric: str


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message the host publishes (a rebirth request)."""

    topic: str
    payload: bytes
    qos: int = 0


class Verb(Enum):
    NBIRTH = "NBIRTH"
    NDATA = "NDATA"
    NDEATH = "NDEATH"
    DBIRTH = "DBIRTH"
    DDATA = "DDATA"
    DDEATH = "DDEATH"


@dataclass
class Update:
    """What one message changed: live samples, history, messages to send, and problems seen
    (each a short sentence for the log: the driver logs the first of a kind loudly)."""

    live: list[Sample] = field(default_factory=list)
    history: list[Sample] = field(default_factory=list)
    outgoing: list[Outgoing] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    event: str | None = None  # "node_birth", "device_birth", "node_death", ... for the log


@dataclass(frozen=True, slots=True)
class _Known:
    """A metric as born: which device, which name, which datatype, and our tag (if configured)."""

    device: str | None
    name: str
    datatype: int | None
    tag: str | None


class NodeHost:
    """The host's picture of one edge node (`group_id`/`edge_node_id`) and its devices."""

    def __init__(
        self, topics: Topics, tags: Iterable[HostTag], *, rebirth_interval_ns: int = 5_000_000_000
    ) -> None:
        self.topics = topics
        self.tags = list(tags)
        self._by_name = {(t.device, t.metric): t.tag for t in self.tags}
        self._by_device: dict[str | None, list[str]] = {}
        for t in self.tags:
            self._by_device.setdefault(t.device, []).append(t.tag)
        self.rebirth_interval_ns = rebirth_interval_ns
        self.online = False
        self.bd_seq: int | None = None
        self.births = 0
        self.rebirths_requested = 0
        self.seq_gaps = 0
        self._seq: int | None = None
        self._aliases: dict[int, _Known] = {}
        self._names: dict[tuple[str | None, str], _Known] = {}
        self._devices: set[str] = set()
        self._last_rebirth_ns: int | None = None

    @property
    def devices_online(self) -> list[str]:
        return sorted(self._devices)

    def subscriptions(self) -> list[str]:
        """Everything the node publishes: node messages and its devices' messages."""
        return [
            f"{NAMESPACE}/{self.topics.group}/+/{self.topics.node}",
            f"{NAMESPACE}/{self.topics.group}/+/{self.topics.node}/+",
        ]

    # ----------------------------------------------------------------------------- messages

    def feed(self, topic: str, data: bytes, now_ns: int) -> Update:
        """Apply one message received on `topic`; commands and foreign topics change nothing."""
        update = Update()
        parsed = self._parse_topic(topic)
        if parsed is None:
            return update
        verb, device = parsed
        try:
            payload = codec.decode(data)
        except PayloadError as exc:
            update.problems.append(f"{topic}: {exc}")
            self._ask_rebirth(update, now_ns, "undecodable message")
            return update
        if verb is Verb.NDEATH:
            self._ndeath(payload, update, now_ns)
        elif verb is Verb.NBIRTH:
            self._nbirth(payload, update, now_ns)
        elif not self.online:
            self._ask_rebirth(update, now_ns, f"{verb.value} before NBIRTH")
        else:
            self._check_seq(payload, update, now_ns, verb)
            if verb is Verb.DBIRTH:
                assert device is not None
                self._dbirth(device, payload, update, now_ns)
            elif verb is Verb.DDEATH:
                assert device is not None
                self._ddeath(device, update, now_ns)
            elif device is not None and device not in self._devices:
                self._ask_rebirth(update, now_ns, f"DDATA from {device} before its DBIRTH")
            else:
                self._data(payload, update, now_ns)
        return update

    def offline(self, now_ns: int, reason: str = NODE_OFFLINE) -> list[Sample]:
        """The node cannot be heard (our connection, the bridge): every tag Bad; births anew."""
        self._forget()
        return [Sample(t.tag, None, Quality.BAD, now_ns, None, reason) for t in self.tags]

    def awaiting(self, now_ns: int) -> list[Sample]:
        """A fresh connection: nothing is known until the node's births (which we request)."""
        self._forget()
        return [Sample(t.tag, None, Quality.BAD, now_ns, None, AWAITING_BIRTH) for t in self.tags]

    def rebirth_request(self, now_ns: int) -> Outgoing:
        """NCMD `Node Control/Rebirth` = true: the one command every edge node must obey."""
        self._last_rebirth_ns = now_ns
        self.rebirths_requested += 1
        now_ms = now_ns // _MS
        metric = codec.MetricOut(now_ms, True, DataType.BOOLEAN, name=REBIRTH, with_datatype=True)
        return Outgoing(self.topics.node_topic("NCMD"), codec.encode(now_ms, [metric], None))

    # ---------------------------------------------------------------------------- internals

    def _parse_topic(self, topic: str) -> tuple[Verb, str | None] | None:
        parts = topic.split("/")
        if len(parts) not in (4, 5) or parts[0] != NAMESPACE or parts[1] != self.topics.group:
            return None
        if parts[3] != self.topics.node:
            return None
        try:
            verb = Verb(parts[2])
        except ValueError:
            return None  # NCMD, DCMD: commands, ours or another host's
        is_device = verb in (Verb.DBIRTH, Verb.DDATA, Verb.DDEATH)
        if is_device != (len(parts) == 5):
            return None
        return verb, parts[4] if is_device else None

    def _forget(self) -> None:
        self.online = False
        self._seq = None
        self._aliases.clear()
        self._names.clear()
        self._devices.clear()

    def _ask_rebirth(self, update: Update, now_ns: int, why: str) -> None:
        update.problems.append(f"rebirth needed: {why}")
        last = self._last_rebirth_ns
        if last is None or now_ns - last >= self.rebirth_interval_ns:
            update.outgoing.append(self.rebirth_request(now_ns))

    def _check_seq(self, payload: pb.Payload, update: Update, now_ns: int, verb: Verb) -> None:
        seq = payload.seq if payload.HasField("seq") else None
        expected = None if self._seq is None else (self._seq + 1) % 256
        if seq is None or seq > 255:
            self._ask_rebirth(update, now_ns, f"{verb.value} without a valid seq ({seq})")
        elif expected is not None and seq != expected:
            self.seq_gaps += 1
            self._ask_rebirth(update, now_ns, f"seq {seq} after {self._seq} (expected {expected})")
        if seq is not None:
            self._seq = seq % 256

    def _nbirth(self, payload: pb.Payload, update: Update, now_ns: int) -> None:
        self._forget()
        bd_seq = _bd_seq(payload)
        if bd_seq is None or not payload.HasField("seq"):
            update.problems.append("NBIRTH without bdSeq or seq: ignored")
            self._ask_rebirth(update, now_ns, "malformed NBIRTH")
            return
        self.online = True
        self.bd_seq = bd_seq
        self._seq = payload.seq % 256
        self.births += 1
        self._last_rebirth_ns = None
        update.event = "node_birth"
        self._learn(None, payload, update, now_ns)

    def _dbirth(self, device: str, payload: pb.Payload, update: Update, now_ns: int) -> None:
        for alias in [a for a, k in self._aliases.items() if k.device == device]:
            del self._aliases[alias]
        for key in [k for k in self._names if k[0] == device]:
            del self._names[key]
        self._devices.add(device)
        update.event = "device_birth"
        self._learn(device, payload, update, now_ns)

    def _learn(self, device: str | None, payload: pb.Payload, update: Update, now_ns: int) -> None:
        """Record a birth's metrics and publish the configured tags' values from it."""
        born: set[str] = set()
        for m in payload.metrics:
            if not m.HasField("name"):
                update.problems.append(f"birth of {device or 'node'}: a metric without a name")
                continue
            tag = self._by_name.get((device, m.name))
            known = _Known(device, m.name, m.datatype if m.HasField("datatype") else None, tag)
            self._names[(device, m.name)] = known
            if m.HasField("alias"):
                self._aliases[m.alias] = known
            if tag is not None:
                born.add(tag)
                self._emit(known, m, payload, update, now_ns)
        for tag in self._by_device.get(device, []):
            if tag not in born:
                update.live.append(Sample(tag, None, Quality.BAD, now_ns, None, NOT_IN_BIRTH))

    def _data(self, payload: pb.Payload, update: Update, now_ns: int) -> None:
        unknown = 0
        for m in payload.metrics:
            if m.HasField("alias"):
                known = self._aliases.get(m.alias)
            else:
                known = self._names.get((None, m.name)) if m.HasField("name") else None
                # a device metric by name: only one device can match in a DDATA
                if known is None and m.HasField("name"):
                    known = next(
                        (k for (d, n), k in self._names.items() if n == m.name and d), None
                    )
            if known is None:
                unknown += 1
            elif known.tag is not None:
                self._emit(known, m, payload, update, now_ns)
        if unknown:
            self._ask_rebirth(update, now_ns, f"{unknown} metric(s) with an unknown alias")

    def _ddeath(self, device: str, update: Update, now_ns: int) -> None:
        self._devices.discard(device)
        update.event = "device_death"
        update.live.extend(
            Sample(t, None, Quality.BAD, now_ns, None, DEVICE_OFFLINE)
            for t in self._by_device.get(device, [])
        )

    def _ndeath(self, payload: pb.Payload, update: Update, now_ns: int) -> None:
        bd_seq = _bd_seq(payload)
        if not self.online or bd_seq != self.bd_seq:
            update.problems.append(
                f"NDEATH with bdSeq {bd_seq} ignored: the current session's bdSeq is "
                f"{self.bd_seq if self.online else 'none (not born)'}"
            )
            return
        update.event = "node_death"
        update.live.extend(self.offline(now_ns))

    def _emit(
        self, known: _Known, m: pb.Payload.Metric, payload: pb.Payload, update: Update, now: int
    ) -> None:
        assert known.tag is not None
        ts_ms = m.timestamp if m.HasField("timestamp") else payload.timestamp
        source_ns = ts_ms * _MS if ts_ms else None
        target = update.history if m.is_historical else update.live
        try:
            value = codec.metric_value(m, known.datatype, known.name)
        except PayloadError as exc:
            update.problems.append(f"{known.tag}: {exc}")
            target.append(Sample(known.tag, None, Quality.BAD, now, source_ns, INVALID_VALUE))
            return
        quality = _quality(m)
        if value is None or quality is Quality.BAD:
            target.append(Sample(known.tag, None, Quality.BAD, now, source_ns, BAD_AT_SOURCE))
        else:
            target.append(Sample(known.tag, value, quality, now, source_ns))


def _bd_seq(payload: pb.Payload) -> int | None:
    for m in payload.metrics:
        if m.name == BD_SEQ:
            value = codec.metric_value(m, m.datatype or DataType.INT64)
            return value if isinstance(value, int) and not isinstance(value, bool) else None
    return None


def _quality(m: pb.Payload.Metric) -> Quality:
    if not m.HasField("properties"):
        return Quality.GOOD
    for key, prop in zip(m.properties.keys, m.properties.values, strict=False):
        if key == QUALITY_PROPERTY:
            return quality_of_code(int(prop.int_value))
    return Quality.GOOD


def quality_of_code(code: int) -> Quality:
    """Sparkplug/Ignition quality codes; 500 is Ignition's 'stale'."""
    if code == 500:
        return Quality.UNCERTAIN
    if code >= 192:
        return Quality.GOOD
    return Quality.UNCERTAIN if code >= 64 else Quality.BAD
