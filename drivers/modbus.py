"""Modbus driver (pymodbus): planned block reads, per-request quality, writes, on every transport.

The transports are `tcp`, `rtu_over_tcp` (RTU framing with CRC on a TCP socket, as serial
gateways speak it), `rtu` and `ascii` on a serial port. The driver plans and decodes; the line
itself belongs to a `ModbusBus` (drivers/modbus_bus.py) that every source on the same port or
gateway shares, and that serialises, paces and keeps each device's health.

The library's defaults (3 s timeout, 3 retries: 12 s per request) are sized for interactive use;
a poller must notice a dead device within one poll interval, so the timeout is at most the poll
interval (but not below 250 ms) and the retries come from the source config. The client's own
reconnect loop is turned off: the acquisition layer supervises reconnects.

Modbus has no source timestamp: samples carry `source_ns=None`, and the acquisition time (when
the response arrived) stands in for it.
"""

from __future__ import annotations

import asyncio
import math
import struct
import time
from collections.abc import Sequence
from itertools import repeat
from typing import Any

import structlog
from pymodbus.exceptions import ModbusException

from drivers import modbus_codec
from drivers.base import WriteRefused
from drivers.modbus_bus import Client, LinkSettings, ModbusBus, ModbusBuses, NoAnswer
from drivers.modbus_plan import ReadPlan, ReadRequest
from edge_agent.contracts.modbus import ModbusPoint, ModbusSettings
from edge_agent.contracts.samples import Quality, Sample, Value, now_ns

log = structlog.get_logger(__name__)

MIN_TIMEOUT_S = 0.25
BUSY = 6

# What a request came back with: the response, or a reason its tags are Bad ("timeout", ...).
_Outcome = Any

# The client's read method for each table.
READS = {
    "coil": "read_coils",
    "discrete_input": "read_discrete_inputs",
    "holding": "read_holding_registers",
    "input": "read_input_registers",
}

EXCEPTION_NAMES = {
    1: "illegal_function",
    2: "illegal_data_address",
    3: "illegal_data_value",
    4: "server_device_failure",
    5: "acknowledge",
    6: "server_device_busy",
    8: "memory_parity_error",
    10: "gateway_path_unavailable",
    11: "gateway_target_failed_to_respond",
}


def exception_reason(code: int) -> str:
    """A stable reason for an exception reply: `modbus_exception_2_illegal_data_address`."""
    return f"modbus_exception_{code}_{EXCEPTION_NAMES.get(code, 'unknown')}"


def link_settings(source: ModbusSettings) -> LinkSettings:
    return LinkSettings(
        transport=source.transport,
        endpoint=source.endpoint,
        serial_port=source.serial_port or "",
        baudrate=source.baudrate,
        bytesize=source.bytesize,
        parity=source.parity,
        stopbits=source.stopbits,
        inter_frame_ms=source.inter_frame_ms,
        pause_between_requests_ms=source.pause_between_requests_ms,
        pause_after_connect_ms=source.pause_after_connect_ms,
    )


def wire_tags(source: ModbusSettings) -> list[ModbusPoint]:
    """The tags with the addresses on the wire: `address_base = 1` devices count from 1."""
    if source.address_base == 0:
        return list(source.tag)
    return [t.model_copy(update={"address": t.address - source.address_base}) for t in source.tag]


def read_plan(source: ModbusSettings) -> ReadPlan:
    """The requests that read the source's tags, after its workarounds."""
    max_gap = 0 if source.one_request_per_tag else source.max_gap
    return ReadPlan(wire_tags(source), max_gap, source.max_registers, source.one_request_per_tag)


class ModbusDriver:
    """Reads and writes the tags of one `ModbusSettings` over the bus of its link."""

    def __init__(self, source: ModbusSettings, buses: ModbusBuses | None = None) -> None:
        self.source = source
        self.bus: ModbusBus = (buses or ModbusBuses()).bus(source.link, link_settings(source))
        self.plan = read_plan(source)
        self._tags = {t.id: t for t in wire_tags(source)}
        self._attached = False
        self._cycle_start = 0.0
        self._skipped: dict[int, int] = {}  # unit id -> cycles skipped since its last try
        self._decoders: dict[ReadRequest, list[modbus_codec.Segment]] = {}
        self._log = log.bind(source=source.name)

    @property
    def timeout_s(self) -> float:
        """At most the poll interval (a dead device shows within one cycle), at least 250 ms."""
        return min(self.source.timeout_s, max(self.source.poll_interval_s, MIN_TIMEOUT_S))

    async def connect(self) -> None:
        if not self._attached:
            self.bus.attach()
            self._attached = True
        await self.bus.connect(self.timeout_s)

    async def close(self) -> None:
        if self._attached:
            self._attached = False
            self.bus.detach()

    async def read(self) -> list[Sample]:
        """Every request of the plan, in order, one on the bus at a time.

        The next request is queued on the bus before the previous response is decoded, so that
        decoding overlaps the device's turnaround instead of adding to it. A unit id that timed
        out is not asked again in the same cycle (its tags are Bad "timeout"): a silent device
        costs one timeout per cycle, and once backed off, one per back-off period.
        """
        requests = list(self.plan.requests)
        self._cycle_start = time.monotonic()
        samples: list[Sample] = []
        skip: dict[int, str] = {}  # unit id -> why its remaining requests are not sent
        upcoming: asyncio.Task[_Outcome] | None = None
        try:
            for i, request in enumerate(requests):
                if request.unit_id in skip:
                    samples.extend(_bad(request, skip[request.unit_id]))
                    continue
                if self._waiting(request.unit_id):
                    skip[request.unit_id] = "device_unreachable"
                    samples.extend(_bad(request, "device_unreachable"))
                    continue
                if upcoming is not None:
                    outcome, upcoming = await upcoming, None
                else:
                    outcome = await self._fetch(request)
                outcome = self._health(request.unit_id, outcome)
                if outcome in ("timeout", "device_unreachable"):
                    skip[request.unit_id] = outcome
                elif self._prefetch(requests, i + 1, skip):
                    upcoming = asyncio.create_task(self._fetch(requests[i + 1]))
                    await asyncio.sleep(0)  # let it take its place in the bus's queue
                samples.extend(self._interpret(request, outcome))
        finally:
            if upcoming is not None:
                upcoming.cancel()
        return samples

    def _prefetch(self, requests: list[ReadRequest], i: int, skip: dict[int, str]) -> bool:
        """Queue request i early? Not to a unit that is being skipped or is backed off."""
        if i >= len(requests) or requests[i].unit_id in skip:
            return False
        return not self.bus.device(requests[i].unit_id).backed_off

    def _waiting(self, unit_id: int) -> bool:
        """Skip this backed-off unit in this cycle? Until its retry is due, in time or in cycles.

        Counting cycles as well keeps a retry every k poll intervals on every k-th cycle on a
        busy machine, where a cycle may start less late than the one that backed off.
        """
        if not self.bus.device(unit_id).waiting(time.monotonic()):
            return False
        skipped = self._skipped.get(unit_id, 0)
        if skipped + 1 >= round(self.source.unreachable_retry_s / self.source.poll_interval_s, 6):
            return False
        self._skipped[unit_id] = skipped + 1
        return True

    def _health(self, unit_id: int, outcome: _Outcome) -> _Outcome:
        """Count timeouts towards the unit's back-off; any answer (even corrupt) clears it."""
        self._skipped.pop(unit_id, None)
        health = self.bus.device(unit_id)
        if outcome != "timeout":
            if health.backed_off:
                self._log.info("modbus_device_reachable", unit_id=unit_id)
            health.timeouts, health.backed_off = 0, False
            return outcome
        health.timeouts += 1
        if health.backed_off or health.timeouts >= self.source.unreachable_after:
            if not health.backed_off:
                self._log.warning(
                    "modbus_device_unreachable",
                    unit_id=unit_id,
                    timeouts=health.timeouts,
                    retry_every_s=self.source.unreachable_retry_s,
                )
            health.backed_off = True
            # From this cycle's start, less half a cycle, so that a retry every k poll intervals
            # lands on every k-th cycle and not one later: cycles start late by however busy the
            # machine is, the next one maybe less late than this one.
            retry_s = self.source.unreachable_retry_s
            slack = min(retry_s, self.source.poll_interval_s) / 2
            health.next_try = self._cycle_start + retry_s - slack
            return "device_unreachable"
        return outcome

    async def _fetch(self, request: ReadRequest) -> _Outcome:
        """The response to one request, or why there is none; raises if the link is gone."""
        read = READS[request.table]
        start, count, unit_id = request.start, request.count, request.unit_id

        def call(client: Client) -> Any:
            return getattr(client, read)(start, count=count, device_id=unit_id)

        for attempt in range(self.source.busy_retries + 1):
            if attempt:
                await asyncio.sleep(self.source.busy_retry_wait_ms / 1000)
            try:
                response = await self.bus.execute(call, self.timeout_s, self.source.retries)
            except NoAnswer as exc:
                return exc.reason
            except ModbusException as exc:
                return f"modbus_error: {exc}"
            if not (response.isError() and response.exception_code == BUSY):
                break
        return response

    def _interpret(self, request: ReadRequest, outcome: _Outcome) -> list[Sample]:
        acq = now_ns()
        if isinstance(outcome, str):
            return _bad(request, outcome, acq)
        if outcome.isError():
            reason = exception_reason(outcome.exception_code)
            split = self.plan.split(request)
            self._decoders.pop(request, None)
            self._log.warning(
                "modbus_exception_reply",
                unit_id=request.unit_id,
                table=request.table,
                start=request.start,
                count=request.count,
                reason=reason,
                splitting=split,
            )
            return _bad(request, reason, acq)
        if request.bits:
            return _decode_bits(request, outcome.bits, acq)
        decoders = self._decoders.get(request)
        if decoders is None:
            decoders = self._decoders[request] = modbus_codec.block_segments(
                request.tags, request.start
            )
        # Our response classes keep the data bytes (drivers/modbus_responses.py).
        block = getattr(outcome, "block", None)
        return _decode_block(decoders, outcome.registers, request, acq, block)

    async def write(self, tag_id: str, value: Value) -> None:
        tag = self._tags.get(tag_id)
        if tag is None:
            raise WriteRefused(f"source {self.source.name} has no tag {tag_id!r}")
        _check_writable(tag, value)
        registers = [] if tag.table == "coil" else modbus_codec.encode(tag, value)

        def call(client: Client) -> Any:
            if tag.table == "coil":
                return client.write_coil(tag.address, bool(value), device_id=tag.unit_id)
            return client.write_registers(tag.address, registers, device_id=tag.unit_id)

        try:
            response = await self.bus.execute(call, self.timeout_s, self.source.retries)
        except NoAnswer as exc:
            raise WriteRefused(f"tag {tag_id}: no valid answer ({exc.reason})") from exc
        except ModbusException as exc:
            raise WriteRefused(f"tag {tag_id}: write failed: {exc}") from exc
        if response.isError():
            raise WriteRefused(
                f"tag {tag_id}: device refused: {exception_reason(response.exception_code)}"
            )


def _check_writable(tag: ModbusPoint, value: Value) -> None:
    if not tag.writable:
        raise WriteRefused(f"tag {tag.id} is not writable (set writable = true with bounds)")
    if tag.table not in ("coil", "holding"):
        raise WriteRefused(f"tag {tag.id}: {tag.table} table is read-only")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return
    if (tag.min is not None and value < tag.min) or (tag.max is not None and value > tag.max):
        raise WriteRefused(f"tag {tag.id}: {value} is outside [{tag.min}, {tag.max}]")


def _bad(request: ReadRequest, reason: str, acq: int | None = None) -> list[Sample]:
    acq = now_ns() if acq is None else acq
    return [Sample(t.id, None, Quality.BAD, acq, None, reason) for t in request.tags]


def _decode_bits(request: ReadRequest, bits: Sequence[bool], acq: int) -> list[Sample]:
    if len(bits) < request.count:
        return _bad(request, "short_response", acq)
    return [
        Sample(t.id, bool(bits[t.address - request.start]), Quality.GOOD, acq) for t in request.tags
    ]


def _decode_block(
    segments: list[modbus_codec.Segment],
    registers: Sequence[int],
    request: ReadRequest,
    acq: int,
    block: bytes | None = None,
) -> list[Sample]:
    """The block's samples; `block` is the registers' bytes where the response kept them."""
    if len(registers) < request.count:
        return _bad(request, "short_response", acq)
    if not block:
        block = struct.pack(f">{len(registers)}H", *registers)
    samples: list[Sample] = []
    for ids, at, decode, floats in segments:
        values = decode(block, at)
        # The sum of floats is finite only if each is: one check for the common case.
        if floats and not math.isfinite(sum(values)):  # type: ignore[arg-type]
            samples.extend(_finite_or_bad(ids, values, acq))
        else:
            # map over the constructor: no Python loop of our own per value (0.2 µs a sample)
            samples.extend(map(Sample, ids, values, repeat(Quality.GOOD), repeat(acq)))
    return samples


def _finite_or_bad(ids: Sequence[str], values: Sequence[Value], acq: int) -> list[Sample]:
    return [
        Sample(i, v, Quality.GOOD, acq)
        if not isinstance(v, float) or math.isfinite(v)
        else Sample(i, None, Quality.BAD, acq, None, "not_finite")
        for i, v in zip(ids, values, strict=True)
    ]
