"""Modbus TCP driver (pymodbus): planned block reads, per-request quality, writes.

One driver owns one client, and so one TCP connection, and issues one request at a time: many
devices and gateways serve a single connection badly when requests overlap. `pacing_ms` spaces
requests for devices that need breathing room.

The library's defaults (3 s timeout, 3 retries: 12 s per request) are sized for interactive use;
a poller must notice a dead device within one poll interval, so the timeout is at most the poll
interval (but not below 250 ms) and the retries come from the source config. The client's own
reconnect loop is turned off: the acquisition layer supervises reconnects and throws the client
away on each one.

Modbus has no source timestamp: samples carry `source_ns=None`, and the acquisition time (when
the response arrived) stands in for it.
"""

from __future__ import annotations

import asyncio
import math
import struct
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import structlog
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from drivers import modbus_codec
from drivers.base import DriverConnectionError, WriteRefused
from drivers.modbus_plan import ReadPlan, ReadRequest
from edge_agent.contracts.modbus import ModbusPoint, ModbusSettings
from edge_agent.contracts.samples import Quality, Sample, Value, now_ns

log = structlog.get_logger(__name__)

MIN_TIMEOUT_S = 0.25

# What a request came back with: the response, or a reason its tags are Bad ("timeout", ...).
_Outcome = Any

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


def parse_endpoint(endpoint: str) -> tuple[str, int]:
    """`tcp://host:port` (port 502 when omitted)."""
    parts = urlsplit(endpoint)
    if parts.scheme != "tcp" or not parts.hostname:
        raise ValueError(f"Modbus endpoint {endpoint!r} is not tcp://host[:port]")
    return parts.hostname, parts.port or 502


class ModbusDriver:
    """Reads and writes the tags of one Modbus source (`ModbusSettings`)."""

    def __init__(self, source: ModbusSettings) -> None:
        self.source = source
        self.host, self.port = parse_endpoint(source.endpoint)
        self.plan = ReadPlan(source.tag, source.max_gap, source.max_registers)
        self._tags = {t.id: t for t in source.tag}
        self._client: AsyncModbusTcpClient | None = None
        self._decoders: dict[ReadRequest, list[modbus_codec.Segment]] = {}
        self._log = log.bind(source=source.name)

    @property
    def timeout_s(self) -> float:
        """At most the poll interval (a dead device shows within one cycle), at least 250 ms."""
        return min(self.source.timeout_s, max(self.source.poll_interval_s, MIN_TIMEOUT_S))

    async def connect(self) -> None:
        await self.close()
        client = AsyncModbusTcpClient(
            self.host,
            port=self.port,
            name=self.source.name,
            timeout=self.timeout_s,
            retries=self.source.retries,
            reconnect_delay=0,
        )
        if not await client.connect():
            client.close()
            raise DriverConnectionError(
                f"cannot connect to Modbus server {self.host}:{self.port} "
                f"(source {self.source.name}): check that the device is up and the address right"
            )
        self._client = client

    async def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def read(self) -> list[Sample]:
        """Every request of the plan, in order, one in flight at a time.

        The next request goes out before the previous response is decoded, so that decoding
        overlaps the device's turnaround instead of adding to it (still one request in flight:
        pymodbus serialises them). A unit id that timed out is not asked again in the same cycle
        (its tags are Bad "timeout"): a silent device behind a gateway costs one timeout per
        cycle, not one per request.
        """
        requests = list(self.plan.requests)
        samples: list[Sample] = []
        silent: set[int] = set()
        upcoming: asyncio.Task[_Outcome] | None = None
        try:
            for i, request in enumerate(requests):
                if request.unit_id in silent:
                    samples.extend(_bad(request, "timeout"))
                    continue
                if upcoming is not None:
                    outcome, upcoming = await upcoming, None
                else:
                    if i and self.source.pacing_ms:
                        await asyncio.sleep(self.source.pacing_ms / 1000)
                    outcome = await self._fetch(request)
                if outcome == "timeout":
                    silent.add(request.unit_id)
                elif self._prefetch(requests, i + 1, silent):
                    upcoming = asyncio.create_task(self._fetch(requests[i + 1]))
                    await asyncio.sleep(0)  # let it go out on the wire first
                samples.extend(self._interpret(request, outcome))
        finally:
            if upcoming is not None:
                upcoming.cancel()
        return samples

    def _prefetch(self, requests: list[ReadRequest], i: int, silent: set[int]) -> bool:
        """Send request i early? Not when pacing asks for gaps, nor to a silent unit."""
        return not self.source.pacing_ms and i < len(requests) and requests[i].unit_id not in silent

    def _connected_client(self) -> AsyncModbusTcpClient:
        if self._client is None or not self._client.connected:
            raise DriverConnectionError(f"Modbus connection to {self.host}:{self.port} is lost")
        return self._client

    async def _fetch(self, request: ReadRequest) -> _Outcome:
        """The response to one request, or why there is none; raises if the link is gone."""
        client = self._connected_client()
        read = {
            "coil": client.read_coils,
            "discrete_input": client.read_discrete_inputs,
            "holding": client.read_holding_registers,
            "input": client.read_input_registers,
        }[request.table]
        try:
            response = await read(request.start, count=request.count, device_id=request.unit_id)
        except ConnectionException as exc:
            raise DriverConnectionError(
                f"Modbus connection to {self.host}:{self.port}: {exc}"
            ) from exc
        except ModbusIOException:
            # No answer within timeout and retries. A dead link shows as a closed client; a
            # silent unit id behind a gateway costs only its own tags.
            self._connected_client()
            return "timeout"
        except ModbusException as exc:
            return f"modbus_error: {exc}"
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
        return _decode_block(decoders, outcome.registers, request, acq)

    async def write(self, tag_id: str, value: Value) -> None:
        tag = self._tags.get(tag_id)
        if tag is None:
            raise WriteRefused(f"source {self.source.name} has no tag {tag_id!r}")
        _check_writable(tag, value)
        client = self._connected_client()
        try:
            if tag.table == "coil":
                response = await client.write_coil(tag.address, bool(value), device_id=tag.unit_id)
            else:
                registers = modbus_codec.encode(tag, value)
                response = await client.write_registers(
                    tag.address, registers, device_id=tag.unit_id
                )
        except ConnectionException as exc:
            raise DriverConnectionError(
                f"Modbus connection to {self.host}:{self.port}: {exc}"
            ) from exc
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
    segments: list[modbus_codec.Segment], registers: Sequence[int], request: ReadRequest, acq: int
) -> list[Sample]:
    if len(registers) < request.count:
        return _bad(request, "short_response", acq)
    block = struct.pack(f">{len(registers)}H", *registers)
    samples: list[Sample] = []
    good = Quality.GOOD
    for ids, at, decode, floats in segments:
        values = decode(block, at)
        # The sum of floats is finite only if each is: one check for the common case.
        if floats and not math.isfinite(sum(values)):  # type: ignore[arg-type]
            samples.extend(_finite_or_bad(ids, values, acq))
        else:
            samples.extend([Sample(i, v, good, acq) for i, v in zip(ids, values, strict=True)])
    return samples


def _finite_or_bad(ids: Sequence[str], values: Sequence[Value], acq: int) -> list[Sample]:
    return [
        Sample(i, v, Quality.GOOD, acq)
        if not isinstance(v, float) or math.isfinite(v)
        else Sample(i, None, Quality.BAD, acq, None, "not_finite")
        for i, v in zip(ids, values, strict=True)
    ]
