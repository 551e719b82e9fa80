"""The Sparkplug B edge node on a live MQTT connection, fed from the outbox (built by `sink.py`).

One task runs the whole session so that every message leaves in the order the state machine
(`node.EdgeNode`) produced it and seq numbers stay continuous:

1. Each CONNECT carries a will (NDEATH) with the next bdSeq, persisted in `agent.state_dir`.
2. After CONNACK (subscriptions to NCMD, DCMD and the primary host's STATE renewed first), and
   once the primary host, if one is configured, has said `online: true`, the node publishes
   NBIRTH and a DBIRTH per device declaring the tag store's current values.
3. It then reads the outbox: samples produced before those births (everything that waited while
   the broker or the host was away) go out as historical DDATA, later ones by exception.
   Sparkplug data is QoS 0, so a batch counts as delivered once paho has written it to the open
   connection; a batch whose messages were not all written before the connection broke is not
   acknowledged and is replayed, as history, in the next session. What was written to the socket
   but not yet read by the broker when the connection broke is lost: at most the kernel's TCP send
   buffer (typically 16 KiB to 4 MiB), in practice the last batch or two.
4. Commands between batches: NCMD Rebirth republishes the births (same bdSeq), NCMD Next Server
   and a primary host going offline make the node leave (NDEATH) and connect to the next server,
   DCMD writes go to the control path, whose answer is logged and published as an NDATA.
5. On cancellation (agent shutdown) it leaves cleanly: MQTT 5 disconnects with reason 0x04 so the
   broker publishes the NDEATH will; MQTT 3.1.1 publishes the NDEATH itself, then disconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence

import structlog

from drivers.mqtt_client import MqttClient, Received, Will
from drivers.sparkplug.topics import Topics, state_topic
from edge_agent.alarms import records
from edge_agent.config import MqttSection
from edge_agent.contracts.samples import Sample, now_ns
from edge_agent.outbox import Batch, Cursor
from edge_agent.sinks.state import SinkState
from edge_agent.sparkplug import alarms as alarm_metrics
from edge_agent.sparkplug.bdseq import BdSeqStore
from edge_agent.sparkplug.catalogue import Catalogue
from edge_agent.sparkplug.dcmd import DcmdHandler, Refused, refuse_all
from edge_agent.sparkplug.node import (
    DeviceWrite,
    EdgeNode,
    Ignored,
    Message,
    NextServer,
    Rebirth,
    ndeath,
)
from edge_agent.sparkplug.primary_host import HostEvent, PrimaryHost

log = structlog.get_logger("edge_agent.sparkplug")

SINK_NAME = "mqtt"


# --------------------------------------------------------------------------------- service


class _Leave(Exception):
    """Leave this server and connect to the next one (NCMD Next Server, primary host offline)."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class _SessionLost(Exception):
    """The connection dropped while a publish was waiting to be written."""


class SparkplugEdgeNode:
    def __init__(
        self,
        mqtt: MqttSection,
        *,
        edge_node_id: str,
        bdseq: BdSeqStore,
        catalogue: Catalogue,
        cursor: Cursor,
        current: Callable[[], Mapping[str, Sample]],
        dcmd: DcmdHandler | None = None,
        password: str | None = None,
        connection_factory: Callable[..., MqttClient] = MqttClient,
        state: SinkState | None = None,
    ) -> None:
        sp = mqtt.sparkplug
        self.settings = mqtt
        self.topics = Topics(sp.group_id, edge_node_id)
        self.node = EdgeNode(self.topics, catalogue, deadband=self._deadband)
        self.host = PrimaryHost(sp.primary_host_id) if sp.primary_host_id else None
        self._bdseq = bdseq
        self._cursor = cursor
        self._current = current
        self._alarm_latest: dict[str, Sample] = {}  # alarm metrics are not in the TagStore
        self._dcmd: DcmdHandler = dcmd or refuse_all
        self._password = password
        self._connection_factory = connection_factory
        self._wake = asyncio.Event()
        self._inbox: list[tuple[str, bytes]] = []
        self._reports: list[str] = []
        self._generation = 0  # bumped on every CONNACK
        self._connect_bd = 0  # bdSeq of the will of the latest CONNECT (set in paho's thread)
        self._session_bd: int | None = None
        self._served_generation = -1
        self._read: asyncio.Task[list[Batch]] | None = None
        self._dcmd_tasks: set[asyncio.Task[None]] = set()
        self.connection: MqttClient | None = None  # the current one, for health and tests
        self.state = state or SinkState(SINK_NAME)
        self.log = log.bind(group=sp.group_id, edge_node=edge_node_id)

    def _deadband(self, tag: str) -> float:
        return self.settings.deadbands.get(tag, self.settings.deadband)

    # ---------------------------------------------------------------------------- lifecycle

    async def run(self) -> None:
        """Serve until cancelled; told to leave, walk on to the next server on the same client."""
        conn = self._connect()
        await conn.start()
        try:
            while True:
                try:
                    await self._serve(conn)
                except _Leave as leave:
                    self.log.warning("sparkplug_leaving_server", server=conn.server, why=leave.why)
                    with_will = await self._say_goodbye(conn)
                    conn.next_server(with_will=with_will)
        finally:
            await asyncio.shield(self._leave(conn))
            if self._read is not None:
                self._read.cancel()
            for task in list(self._dcmd_tasks):
                task.cancel()

    def _connect(self) -> MqttClient:
        conn = self._connection_factory(
            self.settings,
            client_id=self.settings.client_id or f"{self.topics.group}-{self.topics.node}",
            will=self._will,
            password=self._password,
            name="sparkplug",
        )
        for topic in self.topics.subscriptions(self.host.host_id if self.host else None):
            conn.subscribe(topic, self._on_message, qos=1)
        conn.on_connect(self._on_connected)
        self.connection = conn
        return conn

    def _will(self) -> Will:
        """Called in paho's thread before every CONNECT: the next bdSeq, persisted first."""
        bd = self._bdseq.next()
        self._connect_bd = bd
        m = ndeath(self.topics, bd, _now_ms())
        return Will(m.topic, m.payload, qos=1, retain=False)

    def _on_connected(self) -> None:
        self._generation += 1
        self._session_bd = self._connect_bd
        self._wake.set()

    def _on_message(self, message: Received) -> None:
        self._inbox.append((message.topic, message.payload))
        self._wake.set()

    async def _say_goodbye(self, conn: MqttClient) -> bool:
        """Before an intentional disconnect hosts must see an NDEATH (spec: before the
        DISCONNECT). Returns True when the broker is to publish it as the will (MQTT 5)."""
        self.node.end_session()
        if not conn.connected.is_set() or self._session_bd is None:
            return False
        if conn.v5:
            self.log.info("sparkplug_ndeath_sent", bd_seq=self._session_bd, via="will")
            return True  # 0x04: the broker publishes our NDEATH will
        await self._publish_death(conn)
        return False

    async def _leave(self, conn: MqttClient) -> None:
        with_will = await self._say_goodbye(conn)
        try:
            await conn.close(with_will=with_will)
        except Exception:  # paho can trip over its own thread ending first: nothing to undo
            self.log.warning("sparkplug_close_failed", exc_info=True)

    async def _publish_death(self, conn: MqttClient) -> None:
        """MQTT 3.1.1 has no disconnect-with-will: publish the NDEATH and wait for its PUBACK."""
        death = self.node.death()
        try:
            async with asyncio.timeout(5.0):
                await conn.publish(death.topic, death.payload, qos=1)
        except Exception as exc:
            # The DISCONNECT that follows cancels the will too: hosts miss this death.
            self.log.warning("sparkplug_ndeath_failed", error=repr(exc))
        else:
            self.log.info("sparkplug_ndeath_sent", bd_seq=self._session_bd, via="publish")

    # ------------------------------------------------------------------------------- session

    async def _serve(self, conn: MqttClient) -> None:
        while True:
            self._wake.clear()
            self._report_state(conn)
            try:
                busy = await self._step(conn)
            except _SessionLost:
                self.log.info("sparkplug_session_lost", server=conn.server)
                busy = False
            if not busy:
                await self._wait_for_news()

    async def _step(self, conn: MqttClient) -> bool:
        """Do what is due now; True when it forwarded a batch (more may be waiting)."""
        if self._generation != self._served_generation and conn.connected.is_set():
            self._new_session()
        for topic, payload in self._take_inbox():
            await self._handle(conn, topic, payload)
        if not self._may_publish(conn):
            return False
        if not self.node.born:
            current = {**self._current(), **self._alarm_latest}
            await self._births(conn, self.node.births(current))
        for text in self._take_reports():
            await self._publish(conn, [self.node.command_result(text)])
        batches = self._ready_batches()
        if batches is None:
            self._ensure_read()
            return False
        samples = [s for b in batches for s in b.samples]
        plain, alarm_records = records.split(samples)
        if alarm_records:  # alarm events as metrics of their unit's device
            metrics = alarm_metrics.metric_samples(alarm_records)
            self._alarm_latest.update((m.tag, m) for m in metrics)
            plain = [*plain, *metrics]
        await self._publish(conn, self.node.data(plain))
        self.state.confirmed(len(batches), len(samples))  # counted before the cursor moves
        await self._cursor.ack(batches[-1].id)  # written to an open connection: delivered
        self.state.samples_suppressed_total = self.node.suppressed
        return True

    def _report_state(self, conn: MqttClient) -> None:
        """For /healthz and the watchdog: progress on every turn, idle ones included."""
        st = self.state
        st.progress += 1
        if not conn.connected.is_set():
            st.state, st.detail = "disconnected", conn.last_error
        elif not self.node.born and self.host is not None and not self.host.online:
            st.state = "waiting_for_primary_host"
            st.detail = f"STATE of {self.host.host_id} is not online"
        else:
            st.state, st.healthy, st.detail = "connected", True, ""

    def _new_session(self) -> None:
        assert self._session_bd is not None
        self._served_generation = self._generation
        self.node.new_session(self._session_bd)
        if self.host is not None:
            self.host.online = False  # this server's retained STATE decides
        self.log.info("sparkplug_session", bd_seq=self._session_bd)

    def _may_publish(self, conn: MqttClient) -> bool:
        if not conn.connected.is_set() or self._served_generation != self._generation:
            return False
        return self.host is None or self.host.online

    async def _births(self, conn: MqttClient, messages: list[Message]) -> None:
        await self._publish(conn, messages)
        self.log.info(
            "sparkplug_births", bd_seq=self.node.bd_seq, devices=len(messages) - 1,
            live_since_ns=self.node.live_since_ns,
        )  # fmt: skip

    async def _publish(self, conn: MqttClient, messages: Sequence[Message]) -> None:
        """Hand messages to paho in order and wait until all are written to the socket."""
        generation = self._generation
        futures = [conn.publish(m.topic, m.payload, qos=m.qos, retain=m.retain) for m in messages]
        if not futures:
            return
        done = asyncio.gather(*futures)
        while not done.done():
            # A QoS 0 publish on a dead socket is never written and its future never resolves:
            # a new CONNACK (or a dropped connection) ends the wait instead.
            if generation != self._generation or not conn.connected.is_set():
                done.cancel()
                with contextlib.suppress(BaseException):
                    await done
                self.node.end_session()
                raise _SessionLost
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.2):  # not wait_for: in 3.11 it can eat a cancel
                    await asyncio.shield(done)
        done.result()

    # ------------------------------------------------------------------------------ commands

    async def _handle(self, conn: MqttClient, topic: str, payload: bytes) -> None:
        if self.host is not None and topic == state_topic(self.host.host_id):
            self._on_state(payload)
            return
        for command in self.node.command(topic, payload):
            if isinstance(command, Rebirth):
                self.log.info("sparkplug_rebirth_requested")
                if self.node.born:
                    await self._births(conn, self.node.births())
            elif isinstance(command, NextServer):
                raise _Leave("NCMD Node Control/Next Server")
            elif isinstance(command, DeviceWrite):
                task = asyncio.create_task(self._write(command))
                self._dcmd_tasks.add(task)
                task.add_done_callback(self._dcmd_tasks.discard)
            elif isinstance(command, Ignored):
                self.log.warning("sparkplug_command_ignored", topic=topic, reason=command.reason)

    def _on_state(self, payload: bytes) -> None:
        assert self.host is not None
        was_born = self.node.born
        event = self.host.update(payload)
        if event is HostEvent.IGNORED:
            self.log.warning("sparkplug_state_ignored", problem=self.host.last_problem)
        elif event is HostEvent.ONLINE:
            self.log.info("sparkplug_primary_host_online", host=self.host.host_id)
        else:
            self.log.warning("sparkplug_primary_host_offline", host=self.host.host_id)
            # Leave only a live session, or walk on when there is another server to try.
            if was_born or self.settings.backup_servers:
                raise _Leave(f"primary host {self.host.host_id} is offline")

    async def _write(self, command: DeviceWrite) -> None:
        """Ask the control path; its answer becomes a log line and an NDATA for the host."""
        tag, value = command.tag, command.value
        try:
            outcome = await self._dcmd(tag, value, command.timestamp_ns, None)
        except Exception as exc:  # a bug in the control path must not pass for a refusal
            self.log.exception("sparkplug_dcmd_failed", tag=tag)
            outcome = Refused("failed", "internal_error", repr(exc))
        emit = self.log.info if outcome.result == "written" else self.log.warning
        emit("sparkplug_dcmd", tag=tag, value=value, result=outcome.result,
             reason=outcome.reason, detail=outcome.detail)  # fmt: skip
        reason = f" ({outcome.reason})" if outcome.reason else ""
        self._reports.append(f"{tag} = {value!r}: {outcome.result}{reason}: {outcome.detail}")
        self._wake.set()

    # ------------------------------------------------------------------------------ plumbing

    def _take_inbox(self) -> list[tuple[str, bytes]]:
        inbox, self._inbox = self._inbox, []
        return inbox

    def _take_reports(self) -> list[str]:
        reports, self._reports = self._reports, []
        return reports

    def _ensure_read(self) -> None:
        if self._read is None:
            self._read = asyncio.create_task(self._cursor.read(self.settings.max_samples_per_read))
            self._read.add_done_callback(lambda _t: self._wake.set())

    def _ready_batches(self) -> list[Batch] | None:
        if self._read is None or not self._read.done():
            return None
        task, self._read = self._read, None
        return task.result()

    async def _wait_for_news(self) -> None:
        """Sleep until a message, a connection event or outbox data; poll the connection flag
        briefly because MqttClient signals a lost connection only by clearing it."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.5):  # not wait_for: in 3.11 it can eat a cancel
                await self._wake.wait()


def _now_ms() -> int:
    return now_ns() // 1_000_000
