"""The bus-time model: how much of a serial line one poll cycle of its sources books.

A serial bus has a hard budget: at 9600 baud a full 125-register read is about 0.3 s of line
time, so a handful of devices polled every second can overbook it, and then every source on it
overruns. The model counts what the line must carry per cycle (each request and answer frame in
characters at the configured baud rate and framing, plus the inter-frame silences and pauses)
and sets it beside the poll interval, so that an integrator sees an overbooked bus at
commissioning (`edge-agent probe`) instead of as overruns in production. Device turnaround
(the time a slave takes to answer) is not in it: it is not known in advance.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from drivers.modbus import link_settings, read_plan
from drivers.modbus_bus import LinkSettings
from drivers.modbus_plan import ReadRequest
from edge_agent.contracts.modbus import ModbusSettings

# A bus booked above this share of its shortest poll interval has no room for retries.
OVERBOOKED = 0.8
# What the line suggests when every answer fails its check.
WRONG_LINE_SETTINGS = (
    "every answer failed its CRC: wrong baud rate, parity or stop bits suspected "
    "(the source is set to {settings}; compare with the device's menu)"
)


def frame_bytes(request: ReadRequest) -> tuple[int, int]:
    """Bytes of the read request and of its answer in RTU framing (unit id to CRC)."""
    data = math.ceil(request.count / 8) if request.bits else 2 * request.count
    return 8, 5 + data


def frame_chars(request: ReadRequest, transport: str) -> int:
    """Characters on the line for one request and its answer."""
    asked, answer = frame_bytes(request)
    if transport == "ascii":
        # ':' + two hex digits per byte (the 2-byte CRC becomes a 1-byte LRC) + CR LF.
        return sum(3 + 2 * (n - 1) for n in (asked, answer))
    return asked + answer


def cycle_line_s(requests: Iterable[ReadRequest], link: LinkSettings) -> float:
    """Line time of one cycle: characters at the baud rate, and a silence before each frame."""
    total = 0.0
    for request in requests:
        total += frame_chars(request, link.transport) * link.char_time_s + 2 * link.silence_s
    return total


@dataclass(frozen=True)
class SourceLoad:
    """One source's share of a bus: its requests' line time per cycle, and its poll interval."""

    name: str
    requests: int
    line_s: float
    poll_interval_s: float


@dataclass(frozen=True)
class BusTime:
    """One bus's booking: the share of line time its sources need at their poll rates."""

    link: LinkSettings
    loads: tuple[SourceLoad, ...]

    @property
    def booked(self) -> float:
        return sum(load.line_s / load.poll_interval_s for load in self.loads)

    @property
    def overbooked(self) -> bool:
        return self.booked > OVERBOOKED

    def describe(self) -> str:
        parts = ", ".join(
            f"{load.name} {load.requests} requests = {load.line_s * 1000:.1f} ms of line time "
            f"every {load.poll_interval_s * 1000:.0f} ms"
            for load in self.loads
        )
        text = f"bus {self.link.describe()}: {parts}; {self.booked:.0%} of the line booked"
        if self.overbooked:
            text += (
                ": OVERBOOKED, raise poll_interval_s or the baud rate, merge reads (max_gap) "
                "or split the devices over two buses"
            )
        return text


def source_load(
    name: str, plan: Sequence[ReadRequest], link: LinkSettings, poll_s: float
) -> SourceLoad:
    return SourceLoad(name, len(plan), cycle_line_s(plan, link), poll_s)


def bus_times(sources: Iterable[ModbusSettings]) -> list[BusTime]:
    """The booking of every serial line among `sources`, grouped by the bus they share.

    For `rtu_over_tcp` the line is the gateway's serial side, modelled at the source's
    `baudrate` and framing (set them to the gateway's); plain TCP has no line to book.
    """
    buses: dict[str, tuple[LinkSettings, list[SourceLoad]]] = {}
    for src in sources:
        if src.transport == "tcp":
            continue
        link = link_settings(src)
        if src.transport == "rtu_over_tcp":
            link = replace(link, transport="rtu")
        plan = read_plan(src).requests
        entry = buses.setdefault(src.link, (link, []))
        entry[1].append(source_load(src.name, plan, link, src.poll_interval_s))
    return [BusTime(link, tuple(loads)) for link, loads in buses.values()]


def line_settings_suspect(reasons: Iterable[str | None]) -> bool:
    """True when every request of a read failed its check: the line's settings, not noise."""
    seen = list(reasons)
    return bool(seen) and all(r == "crc_error" for r in seen)
