"""Acquisition: one supervised loop per source that turns driver reads into published samples.

Each source is read on a fixed-rate schedule whose deadlines are multiples of the interval from
its start, so the reading rate does not drift by the read's own duration; a read that overruns
its slot is counted and logged, and the missed slots are skipped rather than bunched up.

A lost connection is never a silent gap: every tag of the source is published Bad with the
reason ("connection_lost", "access_denied") as soon as the loss is seen, and again after each
failed reconnect attempt. Reconnects back off exponentially with jitter, capped at a few seconds
so that the source is Good again within 10 s of its server's return; each attempt builds a new
driver (and so a new client), which recovers from whatever state the old client was left in.

Every batch passes plausibility first (`edge_agent.plausibility`: validity ranges, the server's
EURange, "no value" markers, step limits), so that a value that cannot be true is Bad before
anything sees it. Then `quality_from` lets a device status tag veto the quality of the tags it
vouches for: while `status & mask != 0` (an analyser calibrating), those tags are downgraded,
whatever their read said.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import structlog

from drivers.backoff import Backoff
from drivers.base import Driver, DriverConnectionError, HistoryDriver, ReportsRanges, WriteRefused
from edge_agent.config import (
    AgentConfig,
    MqttSource,
    OpcUaSource,
    QualityFrom,
    Source,
    SparkplugSource,
)
from edge_agent.contracts.samples import Quality, Sample, Value, now_ns
from edge_agent.contracts.status import ComponentStatus, SourceStats, StatusRegistry
from edge_agent.pipeline import SampleBus
from edge_agent.plausibility import Plausibility
from edge_agent.supervisor import Service
from edge_agent.tagstore import TagStore

log = structlog.get_logger(__name__)

RECONNECT_INITIAL_S = 0.25
# With jitter the longest wait is the cap; connect and first read must fit in the rest of 10 s.
RECONNECT_CAP_S = 5.0
# A source that overruns usually does so every cycle: log the first, then a count each minute.
OVERRUN_LOG_EVERY_S = 60.0

DriverFactory = Callable[[Source], Driver]


def make_driver(source: Source, shared: dict[str, Any] | None = None) -> Driver:
    """The protocol driver for a source (imported lazily: each pulls in a protocol library).

    `shared` holds what the drivers of one agent share (the Modbus buses: sources on one serial
    port or gateway use one connection); without it a driver has its link to itself.
    """
    if isinstance(source, OpcUaSource):
        from drivers.opcua import OpcUaDriver

        return OpcUaDriver(source)
    if isinstance(source, MqttSource | SparkplugSource):
        from drivers.mqtt_source import make_source

        return make_source(source)
    from drivers.modbus import ModbusDriver
    from drivers.modbus_bus import ModbusBuses

    buses = None if shared is None else shared.setdefault("modbus_buses", ModbusBuses())
    return ModbusDriver(source, buses)


def shared_driver_factory() -> DriverFactory:
    """A factory whose drivers share links: one per agent."""
    shared: dict[str, Any] = {}
    return lambda source: make_driver(source, shared)


class QualityGate:
    """Applies `quality_from`: the status tags' latest values veto their dependents' quality."""

    def __init__(self, rules: dict[str, QualityFrom], bus: SampleBus) -> None:
        self.rules = rules
        self.bus = bus

    def apply(self, samples: Sequence[Sample]) -> Sequence[Sample]:
        """The batch with the vetoed samples downgraded; the batch itself for a source without
        `quality_from` (most of them: nothing to do per sample then)."""
        if not self.rules:
            return samples
        latest = {s.tag: s for s in samples}
        return [self._gate(s, latest) if s.tag in self.rules else s for s in samples]

    def _gate(self, sample: Sample, latest: dict[str, Sample]) -> Sample:
        if sample.quality is Quality.BAD:
            return sample
        rule = self.rules[sample.tag]
        status = latest.get(rule.tag) or self.bus.store.get(rule.tag)
        if status is None or not status.good or not isinstance(status.value, int | bool):
            return _downgrade(sample, Quality.UNCERTAIN, f"status_unknown {rule.tag}")
        if int(status.value) & rule.mask:
            return _downgrade(
                sample, Quality(rule.quality), f"device_status {rule.tag}={status.value}"
            )
        return sample


def _downgrade(sample: Sample, quality: Quality, reason: str) -> Sample:
    value = None if quality is Quality.BAD else sample.value
    return Sample(sample.tag, value, quality, sample.acq_ns, sample.source_ns, reason)


class SourcePoller:
    """Connects, reads on schedule, publishes, and reconnects one source, forever."""

    def __init__(
        self, source: Source, bus: SampleBus, factory: DriverFactory = make_driver
    ) -> None:
        self.source = source
        self.bus = bus
        self.factory = factory
        self.tag_ids = [t.id for t in source.tag]
        self.tag_set = frozenset(self.tag_ids)  # what every batch of this source holds at most
        rules = {t.id: t.quality_from for t in source.tag if t.quality_from is not None}
        self.gate = QualityGate(rules, bus)
        self.plausibility = Plausibility.for_tags(source.tag)
        self._own_ranges = {
            t.id for t in source.tag if t.valid_min is not None or t.valid_max is not None
        }
        self.stats = SourceStats(source.name, source.protocol, len(self.tag_ids))
        self.log = log.bind(source=source.name)
        self._driver: Driver | None = None
        self.backoff = Backoff(RECONNECT_INITIAL_S, RECONNECT_CAP_S)

    async def run(self) -> None:
        backoff = self.backoff
        failures = 0
        me = asyncio.current_task()
        while True:
            if me is not None and me.cancelling():  # swallowed on the way (see _poll): honour it
                raise asyncio.CancelledError
            driver = self.factory(self.source)
            try:
                await driver.connect()
            except DriverConnectionError as exc:
                failures += 1
                await self._lost(exc, loud=failures == 1)
                await driver.close()
                await asyncio.sleep(backoff.next_delay())
                continue
            backoff.reset()
            failures = 0
            self._connected(driver)
            try:
                await self._poll(driver)
            except DriverConnectionError as exc:
                self.stats.connection_losses += 1
                failures = 1  # logged loudly here; the reconnect attempts that follow, quietly
                await self._lost(exc, loud=True)
            finally:
                self._driver = None
                self.stats.connected = False
                await driver.close()
            await asyncio.sleep(backoff.next_delay())

    async def write(self, tag_id: str, value: Value) -> None:
        """Write through the live connection; refused (not queued) while disconnected."""
        if self._driver is None:
            raise WriteRefused(f"source {self.source.name} is not connected")
        await self._driver.write(tag_id, value)

    def _connected(self, driver: Driver) -> None:
        if isinstance(driver, ReportsRanges):
            self.plausibility.learn_ranges(driver.value_ranges(), self._own_ranges)
        self._driver = driver
        self.stats.connected = True
        self.stats.connects += 1
        self.stats.last_error = None
        self.log.info("source_connected", endpoint=self.source.endpoint, tags=len(self.tag_ids))

    async def _lost(self, exc: DriverConnectionError, loud: bool) -> None:
        self.stats.connected = False
        self.stats.last_error = str(exc)
        (self.log.error if loud else self.log.debug)(
            "source_unavailable", reason=exc.reason, error=str(exc)
        )
        acq = now_ns()
        await self.bus.publish(
            [Sample(t, None, Quality.BAD, acq, None, exc.reason) for t in self.tag_ids],
            self.tag_set,
        )

    async def _poll(self, driver: Driver) -> None:
        loop = asyncio.get_running_loop()
        interval = self.source.poll_interval_s
        deadline = loop.time()
        last_overrun_log = -OVERRUN_LOG_EVERY_S
        me = asyncio.current_task()
        # The previous cycle's batch, on its way to the outbox while this cycle reads: the read
        # and the commit overlap, so a slow fsync does not stretch the cycle (issue 19).
        committing: asyncio.Future[None] | None = None
        # Asked once per connection: a runtime-checkable protocol's isinstance costs 10-20 µs.
        history = driver if isinstance(driver, HistoryDriver) else None
        try:
            while True:
                # Python 3.11's asyncio.wait_for (inside both protocol libraries) can swallow a
                # cancellation that races a response; the request stays cancelled, so honour it.
                if me is not None and me.cancelling():
                    raise asyncio.CancelledError
                started = time.perf_counter()
                samples = await driver.read()
                elapsed = time.perf_counter() - started
                self.stats.reads += 1
                self.stats.samples += len(samples)
                self.stats.last_read_s = elapsed
                self.stats.read_seconds_total += elapsed
                self.stats.read_latency.observe(elapsed)
                # This batch queues behind the previous one before the loop waits for that:
                # a stop that lands while the previous batch still waits for the disk hands
                # this one on too (it was read and counted), in order.
                previous = committing
                committing = asyncio.ensure_future(self._hand_on(samples, history, previous))
                if previous is not None:  # one cycle of this source waits for the disk, no more
                    await asyncio.shield(previous)
                deadline += interval
                now = loop.time()
                if now > deadline:
                    missed = int((now - deadline) // interval) + 1
                    deadline += missed * interval
                    self.stats.overruns += missed
                    if now - last_overrun_log >= OVERRUN_LOG_EVERY_S:
                        last_overrun_log = now
                        self.log.warning(
                            "source_overrun",
                            read_s=round(elapsed, 3),
                            interval_s=interval,
                            overruns=self.stats.overruns,
                        )
                await asyncio.sleep(deadline - now)
        finally:
            # Stopping or reconnecting: the batch already read reaches the outbox first (and
            # before any Bad samples of a lost connection), even if this task is cancelled.
            if committing is not None:
                await asyncio.shield(committing)

    async def _hand_on(
        self,
        samples: Sequence[Sample],
        history: HistoryDriver | None,
        after: asyncio.Future[None] | None = None,
    ) -> None:
        """Quality rules, then the bus (TagStore, taps, outbox commit); history to the outbox.

        `after` (the previous batch's hand-on) finishes first, so batches reach the bus in the
        order they were read; its failure is the poll loop's to raise, not this batch's."""
        if after is not None:
            with contextlib.suppress(Exception):
                await after
        await self.bus.publish(self.gate.apply(self.plausibility.apply(samples)), self.tag_set)
        if history is not None:
            await self.bus.record(history.drain_history())


class SourceHealth:
    """StatusProvider for one acquisition loop, from its `SourceStats` and its tags' samples.

    Progress is the newest acquisition timestamp among the source's tags in the TagStore: every
    poll publishes, and so does every failed connection attempt (Bad samples), so the value moves
    while the loop is alive, connected or not, and stops only when the loop hangs.
    """

    def __init__(self, stats: SourceStats, tags: Sequence[str], store: TagStore) -> None:
        self._stats = stats
        self._tags = list(tags)
        self._store = store

    def status(self) -> ComponentStatus:
        st = self._stats
        newest = self._store.newest_acq_ns(self._tags)
        return ComponentStatus(
            name=st.source,
            kind="source",
            state=_source_state(st),
            healthy=st.connected,
            detail=st.last_error or "",
            progress=newest,
            watched=bool(self._tags),
            counters={
                "samples_read_total": float(st.samples),
                "reads_total": float(st.reads),
                "poll_overruns_total": float(st.overruns),
                "connects_total": float(st.connects),
                "connection_losses_total": float(st.connection_losses),
            },
            gauges={"tags": float(st.tags), "last_read_seconds": st.last_read_s},
            histograms={"read_latency_seconds": st.read_latency},
        )


def _source_state(st: SourceStats) -> str:
    if st.connected:
        return "connected"
    return "disconnected" if st.connects else "connecting"


class Acquisition:
    """All sources of a config: their services, counters and write path.

    With a `board`, each source's `SourceHealth` goes on it (the counters live in the pollers:
    `pollers[i].stats`).
    """

    def __init__(
        self,
        cfg: AgentConfig,
        bus: SampleBus,
        factory: DriverFactory | None = None,
        board: StatusRegistry | None = None,
    ) -> None:
        factory = factory or shared_driver_factory()
        self.pollers = [SourcePoller(s, bus, factory) for s in cfg.source if s.enabled]
        self._by_tag = {t: p for p in self.pollers for t in p.tag_ids}
        if board is not None:
            for p in self.pollers:
                board.add(SourceHealth(p.stats, p.tag_ids, bus.store))

    def services(self) -> list[Service]:
        return [Service(f"source.{p.source.name}", p.run) for p in self.pollers]

    async def write(self, tag_id: str, value: Value) -> None:
        poller = self._by_tag.get(tag_id)
        if poller is None:
            raise WriteRefused(f"no source has tag {tag_id!r}")
        await poller.write(tag_id, value)


def build_services(
    cfg: AgentConfig, bus: SampleBus, board: StatusRegistry | None = None
) -> list[Service]:
    """One supervised service per enabled source (the runtime keeps the `Acquisition` itself,
    because control writes through its connections)."""
    return Acquisition(cfg, bus, board=board).services()


__all__ = [
    "Acquisition",
    "QualityGate",
    "SourceHealth",
    "SourcePoller",
    "build_services",
    "make_driver",
    "shared_driver_factory",
]
