"""The Sparkplug B edge-node state machine, free of I/O.

It turns session events (a new connection, a rebirth request, a batch of samples from the
outbox) into the MQTT messages the specification requires, in order, and tracks what a host
must believe about us: bdSeq, seq, which devices are alive, and the last value each metric
reported. The MQTT glue (`edge_agent/sparkplug/service.py`) publishes what it returns.

Rules kept here (Sparkplug 3.0):
- NDEATH (the will) carries bdSeq and no seq; NBIRTH carries the same bdSeq and seq 0; every
  later message (DBIRTH, NDATA, DDATA, DDEATH) carries the previous seq + 1, 255 wrapping to 0.
- Births declare every metric with name, alias, datatype, current value (or is_null), engineering
  unit and quality; data messages then name metrics by alias only.
- Data is reported by exception: a metric is sent when its value moves beyond its deadband or its
  quality changes.
- Samples produced before the current session's births (the outbox backlog after an outage)
  are forwarded with is_historical = true, unfiltered, so that hosts historise them without
  taking them for live values.
- A device whose every metric is Bad is declared dead (DDEATH); its first non-Bad sample brings a
  DBIRTH.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from drivers.sparkplug import payload as codec
from drivers.sparkplug.payload import BD_SEQ, REBIRTH, DataType, MetricOut, PayloadError
from drivers.sparkplug.topics import Topics
from edge_agent.contracts.samples import Quality, Sample, Value, now_ns
from edge_agent.sparkplug.catalogue import (
    LAST_COMMAND,
    LAST_COMMAND_ALIAS,
    NEXT_SERVER,
    NEXT_SERVER_ALIAS,
    Catalogue,
    MetricDef,
)

_MS = 1_000_000


@dataclass(frozen=True, slots=True)
class Message:
    """One MQTT publish. Everything but NDEATH is QoS 0 and never retained (spec 6.4.x)."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False


def ndeath(topics: Topics, bd_seq: int, now_ms: int) -> Message:
    """NDEATH: bdSeq (Int64) and no seq; QoS 1, not retained. Registered as the will of every
    CONNECT, and published before an intentional disconnect under MQTT 3.1.1."""
    bd = MetricOut(now_ms, bd_seq, DataType.INT64, name=BD_SEQ, with_datatype=True)
    return Message(topics.node_topic("NDEATH"), codec.encode(now_ms, [bd], None), qos=1)


# ------------------------------------------------------------------------------------- commands


@dataclass(frozen=True, slots=True)
class Rebirth:
    pass


@dataclass(frozen=True, slots=True)
class NextServer:
    pass


@dataclass(frozen=True, slots=True)
class DeviceWrite:
    """A DCMD metric resolved to one of our tags; the control guard decides whether it happens."""

    tag: str
    value: Value | None
    timestamp_ns: int | None


@dataclass(frozen=True, slots=True)
class Ignored:
    """A command this node does not act on, and why (logged; never silently dropped)."""

    reason: str


Command = Rebirth | NextServer | DeviceWrite | Ignored


# ---------------------------------------------------------------------------------- edge node


@dataclass
class _Pending:
    """Metrics gathered for one device's DDATA within one batch."""

    live: list[MetricOut] = field(default_factory=list)
    historical: list[MetricOut] = field(default_factory=list)
    keys: set[tuple[int, int, bool]] = field(default_factory=set)


class EdgeNode:
    def __init__(
        self,
        topics: Topics,
        catalogue: Catalogue,
        *,
        deadband: Callable[[str], float] = lambda _tag: 0.0,
        clock_ns: Callable[[], int] = now_ns,
    ) -> None:
        self.topics = topics
        self.catalogue = catalogue
        self._deadband = deadband
        self._clock_ns = clock_ns
        self.bd_seq = 0
        self.born = False
        self.live_since_ns: int | None = None
        self._seq = 0
        self._alive: dict[str, bool] = {}
        self._latest: dict[str, Sample] = {}
        self._sent: dict[str, tuple[Value | None, Quality]] = {}
        self._bands: dict[str, float] = {}
        self.suppressed = 0  # live samples not sent: unchanged or within the deadband

    # ------------------------------------------------------------------------------- session

    def new_session(self, bd_seq: int) -> Message:
        """A new MQTT connection is about to be made: returns the will (NDEATH) to register."""
        if not 0 <= bd_seq <= 255:
            raise ValueError(f"bdSeq {bd_seq} is outside 0..255")
        self.bd_seq = bd_seq
        self.born = False
        return self.death()

    def death(self) -> Message:
        """NDEATH with this session's bdSeq, for an intentional disconnect."""
        return ndeath(self.topics, self.bd_seq, self._clock_ns() // _MS)

    def end_session(self) -> None:
        """The connection is gone (or about to be): nothing more is published until births."""
        self.born = False

    def births(self, current: Mapping[str, Sample] | None = None) -> list[Message]:
        """NBIRTH (seq 0) and one DBIRTH per device.

        With `current` (the tag store at the start of a session), that is what the births declare
        and where the live stream starts: anything produced earlier is history. Without it (a
        rebirth within the session), the births repeat the latest values this session reported.
        """
        if current is not None:
            self.live_since_ns = self._clock_ns()
            self._latest = dict(current)
        for tag, sample in self._latest.items():
            if not self.catalogue.fits(tag, sample.value):
                self.catalogue.declare(tag, sample.value)
        self._seq = 0
        out = [self._nbirth()]
        self._alive = {}
        for device in self.catalogue.devices():
            out.append(self._dbirth(device))
        self.born = True
        return out

    # ---------------------------------------------------------------------------------- data

    def data(self, samples: Sequence[Sample]) -> list[Message]:
        """The messages for one outbox batch, in the order they must be published."""
        if not self.born:
            raise RuntimeError("data before births: the session has not been established")
        out: list[Message] = []
        pending: dict[str, _Pending] = {}
        saw_live = False
        # New or retyped metrics need a birth before any data names them: one for the batch.
        fits = self.catalogue.fits
        misfits = [s for s in samples if not fits(s.tag, s.value)]
        for s in reversed(misfits):  # so that the birth declares a tag's first live value
            self.catalogue.declare(s.tag, s.value)
            if not self._historical(s):
                self._latest[s.tag] = s
        if misfits:
            out += self.births()
        retyped = {s.tag for s in misfits}  # only these can stop fitting within the batch
        live_since = self.live_since_ns
        latest, alive, get = self._latest, self._alive, self.catalogue.get
        for s in samples:
            historical = live_since is None or s.acq_ns < live_since
            if not historical:
                saw_live = True
                latest[s.tag] = s
            if retyped and s.tag in retyped and not fits(s.tag, s.value):  # retyped again
                self.catalogue.declare(s.tag, s.value)
                out += self._flush(pending)
                out += self.births()
            d = get(s.tag)
            assert d is not None
            if historical:
                out += self._add(pending, d, self._metric(d, s, historical=True))
                continue
            if not alive.get(d.device, False):
                if s.quality is not Quality.BAD:
                    out += self._flush(pending, d.device)
                    out.append(self._dbirth(d.device))
                continue
            if self._changed(d, s):
                out += self._add(pending, d, self._metric(d, s))
                self._sent[s.tag] = (s.value, s.quality)
            else:
                self.suppressed += 1
        out += self._flush(pending)
        if saw_live:
            out += self._deaths()
        return out

    def _historical(self, s: Sample) -> bool:
        """Produced before this session's births: the outbox held it while nobody listened."""
        return self.live_since_ns is None or s.acq_ns < self.live_since_ns

    def command_result(self, text: str) -> Message:
        """NDATA reporting what became of the last command (e.g. a DCMD the guard refused)."""
        now_ms = self._clock_ns() // _MS
        m = MetricOut(now_ms, text, DataType.STRING, alias=LAST_COMMAND_ALIAS)
        return self._node_message("NDATA", [m])

    # ------------------------------------------------------------------------------ commands

    def command(self, topic: str, data: bytes) -> list[Command]:
        """Interpret an NCMD or DCMD addressed to this node."""
        kind = self.topics.parse_command(topic)
        if kind is None:
            return [Ignored(f"not a command topic of this edge node: {topic}")]
        try:
            payload = codec.decode(data)
            metrics = codec.command_metrics(payload, self.catalogue.datatypes())
        except PayloadError as exc:
            return [Ignored(str(exc))]
        verb, device = kind
        if verb == "NCMD":
            return [self._node_command(m) for m in metrics]
        assert device is not None
        return [self._device_command(device, m) for m in metrics]

    def _node_command(self, m: codec.MetricIn) -> Command:
        name = m.name
        if name is None and m.alias == NEXT_SERVER_ALIAS:
            name = NEXT_SERVER
        if name in (REBIRTH, NEXT_SERVER):
            if m.value is not True:
                return Ignored(f"NCMD {name} = {m.value!r}: only true requests the action")
            return Rebirth() if name == REBIRTH else NextServer()
        return Ignored(f"NCMD metric {name or m.alias!r} is not one this edge node accepts")

    def _device_command(self, device: str, m: codec.MetricIn) -> Command:
        if m.alias is not None:
            d = self.catalogue.by_alias(m.alias)
        else:
            d = self.catalogue.by_name(device, m.name or "")
        label = m.name if m.name is not None else f"alias {m.alias}"
        if d is None or d.device != device:
            return Ignored(f"DCMD {device}/{label}: no such metric on this device")
        ts_ns = m.timestamp_ms * _MS if m.timestamp_ms is not None else None
        return DeviceWrite(d.tag, m.value, ts_ns)

    # ------------------------------------------------------------------------------ internals

    def _next_seq(self) -> int:
        seq = self._seq
        self._seq = (self._seq + 1) % 256
        return seq

    def _node_message(self, verb: str, metrics: Iterable[MetricOut]) -> Message:
        now_ms = self._clock_ns() // _MS
        body = codec.encode(now_ms, metrics, self._next_seq())
        return Message(self.topics.node_topic(verb), body)

    def _device_message(self, verb: str, device: str, metrics: Iterable[MetricOut]) -> Message:
        now_ms = self._clock_ns() // _MS
        body = codec.encode(now_ms, metrics, self._next_seq())
        return Message(self.topics.device_topic(verb, device), body)

    def _nbirth(self) -> Message:
        now_ms = self._clock_ns() // _MS
        metrics = [
            MetricOut(now_ms, self.bd_seq, DataType.INT64, name=BD_SEQ, with_datatype=True),
            MetricOut(now_ms, False, DataType.BOOLEAN, name=REBIRTH, with_datatype=True),
            MetricOut(now_ms, False, DataType.BOOLEAN, name=NEXT_SERVER, alias=NEXT_SERVER_ALIAS,
                      with_datatype=True),
            MetricOut(now_ms, "", DataType.STRING, name=LAST_COMMAND, alias=LAST_COMMAND_ALIAS,
                      with_datatype=True),
        ]  # fmt: skip
        return self._node_message("NBIRTH", metrics)

    def _dbirth(self, device: str) -> Message:
        now_ms = self._clock_ns() // _MS
        metrics = []
        for d in sorted(self.catalogue.of_device(device), key=lambda d: d.name):
            s = self._latest.get(d.tag)
            if s is None:
                m = MetricOut(now_ms, None, d.datatype, d.name, d.alias, Quality.BAD, d.unit, True)
            else:
                m = self._metric(d, s, birth=True)
            metrics.append(m)
            self._sent[d.tag] = (m.value, m.quality)
        self._alive[device] = True
        return self._device_message("DBIRTH", device, metrics)

    def _metric(
        self, d: MetricDef, s: Sample, *, birth: bool = False, historical: bool = False
    ) -> MetricOut:
        return MetricOut(
            timestamp_ms=s.ts_ns // _MS,
            value=s.value,
            datatype=d.datatype,
            name=d.name if birth else None,
            alias=d.alias,
            quality=s.quality,
            unit=d.unit if birth else None,
            with_datatype=birth,
            historical=historical,
            reason=s.reason,
            raw=float(s.raw) if isinstance(s.raw, int | float) else None,
        )

    def _changed(self, d: MetricDef, s: Sample) -> bool:
        previous = self._sent.get(d.tag)
        if previous is None:
            return True
        old, quality = previous
        if quality is not s.quality:
            return True
        new = s.value
        # two floats, the common case, first: without the isinstance calls of _is_number
        if (type(new) is float and type(old) is float) or (_is_number(old) and _is_number(new)):
            assert isinstance(old, int | float)
            assert isinstance(new, int | float)
            if new != new or old != old:  # NaN
                return (new != new) != (old != old)
            band = self._band(d.tag)
            return abs(new - old) > band if band > 0 else new != old
        return bool(new != old)

    def _band(self, tag: str) -> float:
        """The tag's deadband, asked of the configuration once per tag."""
        band = self._bands.get(tag)
        if band is None:
            band = self._bands[tag] = self._deadband(tag)
        return band

    def _add(self, pending: dict[str, _Pending], d: MetricDef, m: MetricOut) -> list[Message]:
        """Queue a metric for its device's DDATA; a message may carry several values of one
        metric only with distinct timestamps, so a repeated (alias, timestamp) flushes first."""
        flushed: list[Message] = []
        key = (d.alias, m.timestamp_ms, m.historical)
        p = pending.get(d.device)
        if p is not None and key in p.keys:
            flushed = self._flush(pending, d.device)
            p = None
        if p is None:
            p = pending[d.device] = _Pending()
        p.keys.add(key)
        (p.historical if m.historical else p.live).append(m)
        return flushed

    def _flush(self, pending: dict[str, _Pending], only: str | None = None) -> list[Message]:
        out: list[Message] = []
        for device in sorted(pending):
            if only is not None and device != only:
                continue
            p = pending.pop(device)
            if p.historical:
                out.append(self._device_message("DDATA", device, p.historical))
            if p.live:
                live = sorted(p.live, key=lambda m: m.timestamp_ms)  # spec: chronological
                out.append(self._device_message("DDATA", device, live))
        return out

    def _deaths(self) -> list[Message]:
        out = []
        for device, alive in sorted(self._alive.items()):
            if not alive:
                continue
            known = [self._latest[d.tag] for d in self.catalogue.of_device(device)
                     if d.tag in self._latest]  # fmt: skip
            if known and all(s.quality is Quality.BAD for s in known):
                self._alive[device] = False
                out.append(self._device_message("DDEATH", device, []))
        return out


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
