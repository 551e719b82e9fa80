"""MQTT JSON sink: the outbox's batches as a unified namespace, confirmed by PUBACK.

Topics (ISA-95 style; a tag id's dots become topic levels):

- `layout = "tag"`: `{root}/{site}/{unit}/{name…}`, one message per sample, e.g.
  `plant/demo/fsf/matte_temp` with `{"value": 1231.5, "quality": "good",
  "ts": "2026-11-27T04:00:00.000Z", "ts_ns": 1795…, "unit": "°C"}`.
  A Bad sample has `"value": null` and a `"reason"`; `reason` also appears on Uncertain samples
  that carry one. A value that cannot be true (plausibility: reason `out_of_range`,
  `no_value_marker`, `implausible_step`) is Bad too, with what the device said in `"raw"`.
  `unit` is the tag's engineering unit where the configuration gives one.
- `layout = "batch"`: `{root}/{site}/_batch/{unit}`, one message per plant unit per outbox batch
  (an acquisition cycle), for tag counts where one message per sample is too many. Payload
  `edge-agent/batch/2` by default (compact: samples sharing a timestamp share a group, values
  keyed by tag, quality and reason only where not Good; `drivers/json_batch.py`), or the previous
  `edge-agent/batch/1` with `batch_schema = 1`. With batch/2, the tags' engineering units are on
  `{root}/{site}/_meta/{unit}` (retained, after every connect). docs/delivery.md has both.
- Alarms (docs/alarms.md): `{root}/{site}/_alarms/{alarm id}`, retained, the alarm's current
  state after each event; `{root}/{site}/_alarms/{alarm id}/event`, each event, not retained.
- Agent status: `{root}/{site}/_agent/{instance_id}/status`, retained, `online` after every
  connect and `offline` as the last will (and on a clean shutdown). The `_` prefix cannot clash
  with a unit, whose ids start with a letter.

Identity and duplicates: `ts` is the source timestamp, or the acquisition time where the
instrument gives none; `(tag, ts_ns)` identifies a sample. Delivery is at least once (a batch is
published again after a reconnect or restart until every message of it has a PUBACK), so a
consumer that must not count twice drops a message whose `(topic, ts_ns)` it has already seen.

Non-finite numbers (NaN, ±inf) are not JSON: such a sample is published as Bad with
`"value": null` and reason `not_finite:nan` (or `inf`, `-inf`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from drivers.backoff import Backoff
from drivers.conditions import Condition
from drivers.json_batch import BatchWriter
from drivers.mqtt_client import MqttClient, MqttError, Will
from edge_agent.alarms import records
from edge_agent.config import AgentConfig, MqttSection
from edge_agent.contracts.catalogue import TagCatalogue
from edge_agent.contracts.samples import Quality, Sample
from edge_agent.logs import emitter
from edge_agent.outbox import Batch, Outbox
from edge_agent.sinks.state import SinkState

log = structlog.get_logger("edge_agent.sinks.mqtt")

META_SCHEMA = "edge-agent/meta/1"
IDLE_WAKEUP_S = 5.0
DISCONNECTED_CHECK_S = 1.0
ACK_EVERY_S = 0.25  # while a backlog drains: the crash-replay bound's share (docs/delivery.md)


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    retain: bool = False


class JsonEncoder:
    """Turns outbox batches into MQTT messages, applying report by exception if configured."""

    def __init__(self, settings: MqttSection, site: str, units: dict[str, str]) -> None:
        self.settings = settings
        self.prefix = f"{settings.topic_root}/{site}"
        self.site = site
        self.units = units
        self.writer = BatchWriter(site, units, set_aside=records.UNIT)
        self._topics: dict[str, str] = {}
        self._last: dict[str, tuple[Any, Quality]] = {}
        self.suppressed = 0

    def topic(self, tag: str) -> str:
        topic = self._topics.get(tag)
        if topic is None:
            topic = self._topics[tag] = f"{self.prefix}/{tag.replace('.', '/')}"
        return topic

    def status_topic(self, instance_id: str) -> str:
        return f"{self.prefix}/_agent/{instance_id}/status"

    def encode(self, batches: Iterable[Batch]) -> list[Message]:
        """Each batch's messages: the plant values, then its alarm records (docs/alarms.md).

        The writer sets the records aside in the same pass that encodes the values (its per-tag
        cache knows a record's reserved unit), so a batch without one costs no extra test.
        """
        out: list[Message] = []
        retain = self.settings.retain
        for batch in batches:
            samples: Sequence[Sample] = batch.samples
            if self.settings.report_by_exception:
                plain, alarm_records = records.split(samples)
                samples = [*self._exceptions(plain), *alarm_records]
            if self.settings.layout == "tag":
                alarms = self._per_tag(samples, out)
            else:
                write = (
                    self.writer.compact if self.settings.batch_schema == 2 else self.writer.previous
                )
                payloads, alarms = write(samples)
                out.extend(Message(self.batch_topic(u), p, retain) for u, p in payloads)
            out.extend(self._alarms(alarms))
        return out

    def alarm_topic(self, alarm_id: str) -> str:
        return f"{self.prefix}/_alarms/{alarm_id}"

    def _alarms(self, alarm_records: Sequence[Sample]) -> list[Message]:
        """Each event twice: the alarm's current state, retained (a SCADA connecting later sees
        what is active), and the event itself on the alarm's event stream, not retained."""
        out: list[Message] = []
        for record in alarm_records:
            topic = self.alarm_topic(record.tag.removeprefix(records.PREFIX))
            payload = str(record.value).encode()
            out.append(Message(topic, payload, retain=True))
            out.append(Message(f"{topic}/event", payload))
        return out

    def _per_tag(self, samples: Sequence[Sample], out: list[Message]) -> list[Sample]:
        """One message per plant value onto `out`; the alarm records back."""
        writer, retain = self.writer, self.settings.retain
        alarms: list[Sample] = []
        for s in samples:
            if writer.tag(s.tag).unit is None:
                alarms.append(s)
            else:
                out.append(Message(self.topic(s.tag), writer.per_tag(s), retain))
        return alarms

    def batch_topic(self, unit: str) -> str:
        return f"{self.prefix}/_batch/{unit}"

    def metadata(self) -> list[Message]:
        """Retained per unit (batch/2 only): what `batch/2` leaves out of every message, the
        tags' engineering units, on `{root}/{site}/_meta/{unit}`; sent after every connect."""
        if self.settings.layout != "batch" or self.settings.batch_schema != 2:
            return []
        per_unit: dict[str, dict[str, str]] = {}
        for tag, unit in sorted(self.units.items()):
            per_unit.setdefault(tag.partition(".")[0], {})[tag] = unit
        return [
            Message(f"{self.prefix}/_meta/{plant_unit}",
                    json.dumps({"schema": META_SCHEMA, "site": self.site, "unit": plant_unit,
                                "units": units}, ensure_ascii=False).encode(), retain=True)
            for plant_unit, units in per_unit.items()
        ]  # fmt: skip

    def _exceptions(self, samples: Sequence[Sample]) -> Sequence[Sample]:
        """Report by exception: keep a sample if its quality changed or it left the deadband."""
        if not self.settings.report_by_exception:
            return samples
        kept: list[Sample] = []
        for s in samples:
            last = self._last.get(s.tag)
            if last is None or last[1] is not s.quality or self._moved(s, last[0]):
                self._last[s.tag] = (s.value, s.quality)
                kept.append(s)
            else:
                self.suppressed += 1
        return kept

    def _moved(self, sample: Sample, last: Any) -> bool:
        value = sample.value
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not isinstance(last, int | float)
            or isinstance(last, bool)
        ):
            return bool(value != last)
        band = self.settings.deadbands.get(sample.tag, self.settings.deadband)
        delta = abs(float(value) - float(last))
        return not delta <= band if band > 0 else bool(value != last)  # NaN always moves


def client_id(cfg: AgentConfig) -> str:
    assert cfg.mqtt is not None
    return cfg.mqtt.client_id or f"edge-agent-{cfg.agent.site}-{cfg.agent.instance_id}"


class MqttJsonSink:
    """Service body: read the outbox, publish, and confirm each batch once all of it is PUBACKed.

    Confirmation is prompt and time-bounded (every `ACK_EVERY_S` while a long backlog drains),
    so that a crash replays only about a second of what was delivered (docs/delivery.md).
    """

    name = "mqtt"

    def __init__(self, cfg: AgentConfig, outbox: Outbox, catalogue: TagCatalogue) -> None:
        if cfg.mqtt is None:
            raise ValueError("MqttJsonSink needs an [mqtt] section")
        self.cfg = cfg
        self.settings = cfg.mqtt
        self.cursor = outbox.cursor(self.name)
        self.state = SinkState(self.name, cursor=self.cursor)
        self.encoder = JsonEncoder(self.settings, cfg.agent.site, catalogue.units())
        self.status_topic = self.encoder.status_topic(cfg.agent.instance_id)
        self.connection: MqttClient | None = None
        self.refused = Condition("mqtt_publish_refused", emitter(log), level="error")

    async def run(self) -> None:
        if self.settings.layout == "batch" and self.settings.batch_schema == 1:
            log.warning(
                "mqtt_batch_schema_deprecated", schema="edge-agent/batch/1",
                advice="move batch subscribers to edge-agent/batch/2 (docs/delivery.md), "
                "then remove mqtt.batch_schema",
            )  # fmt: skip
        password = self.settings.password.resolve() if self.settings.password else None
        conn = MqttClient(
            self.settings,
            client_id=client_id(self.cfg),
            will=lambda: Will(self.status_topic, b"offline", qos=1, retain=True),
            password=password,
            name=self.name,
        )
        conn.on_connect(lambda: self._online(conn))
        self.connection = conn
        self.state.state = "connecting"
        await conn.start()
        try:
            await self._deliver_forever(conn)
        finally:
            await self._offline(conn)

    async def _deliver_forever(self, conn: MqttClient) -> None:
        """Publish each read, confirm it in order; meanwhile the next read is fetched and encoded.

        One read ahead, no more: the outbox is read after the last batch read (not after the
        last confirmed), so the loop's own CPU (decoding, encoding) overlaps the wait for the
        broker's PUBACKs. A refusal or an outage retries only what `todo` still holds; the read
        ahead is published after it, so nothing is confirmed out of order or skipped.
        """
        backoff = Backoff(self.settings.reconnect_min_s, self.settings.reconnect_max_s)
        ahead = asyncio.ensure_future(self._read_encoded(self.cursor.acked))
        try:
            while True:
                self.state.progress += 1
                todo = await ahead
                last_read = todo[-1][0].id if todo else self.cursor.acked
                ahead = asyncio.ensure_future(self._read_encoded(last_read))
                while todo:
                    if not conn.connected.is_set():
                        await self._while_connected(conn, conn.connected.wait())
                    try:
                        await self._while_connected(conn, self._publish(conn, todo))
                    except MqttError as exc:
                        self.state.fail("refused", str(exc))
                        self.state.retries_total += 1
                        self.refused.occurred(error=str(exc))
                        await backoff.wait()
                        continue
                    backoff.reset()
                    self.refused.cleared()
        finally:
            ahead.cancel()
            if ahead.done() and not ahead.cancelled():
                ahead.exception()  # retrieved: the error that ended the loop is the one raised

    async def _read_encoded(self, after: int) -> list[tuple[Batch, list[Message]]]:
        """The next batches after id `after`, each with its messages (empty when idle).

        Encoded once: report by exception must not judge a retried batch a second time."""
        batches = await self.cursor.read(self.settings.max_samples_per_read, IDLE_WAKEUP_S, after)
        todo = [(b, self.encoder.encode([b])) for b in batches]
        self.state.samples_suppressed_total = self.encoder.suppressed
        return todo

    async def _while_connected(self, conn: MqttClient, work: Awaitable[Any]) -> None:
        """Await `work`; while the broker is unreachable, report it and count the wait as progress.

        paho resends unconfirmed messages after a reconnect, so waiting is right; but /healthz
        must show the outage, and the systemd watchdog must not take a broker outage for a hung
        sink (it would restart the agent for nothing).
        """
        task = asyncio.ensure_future(work)
        try:
            while not (await asyncio.wait({task}, timeout=DISCONNECTED_CHECK_S))[0]:
                if not conn.connected.is_set():
                    self.state.state, self.state.healthy = "disconnected", False
                    self.state.detail = conn.last_error or "broker unreachable"
                    self.state.progress += 1
            task.result()
        finally:
            task.cancel()

    async def _publish(self, conn: MqttClient, todo: list[tuple[Batch, list[Message]]]) -> None:
        """Publish all (paho keeps up to max_inflight on the wire); confirm batches in order as
        their PUBACKs arrive, taking them off `todo`, so a retry sends only the rest."""
        sent = [
            (batch, [conn.publish(m.topic, m.payload, qos=1, retain=m.retain) for m in messages])
            for batch, messages in todo
        ]
        loop = asyncio.get_running_loop()
        last_ack = loop.time()
        done = 0
        try:
            for i, (_, futures) in enumerate(sent):
                for fut in futures:  # cheaper than a gather per batch; a done one returns at once
                    await fut
                if loop.time() - last_ack >= ACK_EVERY_S:
                    await self._confirm([b for b, _ in sent[done : i + 1]])
                    del todo[: i + 1 - done]
                    done, last_ack = i + 1, loop.time()
            await self._confirm([b for b, _ in sent[done:]])
            todo.clear()
        finally:
            for _, futures in sent:  # a refusal leaves the rest pending; retrieve, do not leak
                for fut in futures:
                    if fut.done() and not fut.cancelled():
                        fut.exception()

    async def _confirm(self, batches: Sequence[Batch]) -> None:
        if batches:  # counted first: whoever sees the cursor move sees them counted too
            self.state.confirmed(len(batches), sum(len(b.samples) for b in batches))
            await self.cursor.ack(batches[-1].id)

    async def _online(self, conn: MqttClient) -> None:
        self.state.up()
        for m in self.encoder.metadata():
            await conn.publish(m.topic, m.payload, qos=1, retain=True)
        await conn.publish(self.status_topic, b"online", qos=1, retain=True)

    async def _offline(self, conn: MqttClient) -> None:
        """Clean shutdown: say so ourselves (a clean DISCONNECT suppresses the will)."""
        try:
            if conn.connected.is_set():
                await asyncio.wait_for(
                    conn.publish(self.status_topic, b"offline", qos=1, retain=True), 2.0
                )
        except (MqttError, TimeoutError):
            log.warning("mqtt_offline_not_confirmed", topic=self.status_topic)
        finally:
            await conn.close()
            self.state.state = "stopped"
