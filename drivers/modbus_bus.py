"""One Modbus link (a serial port, a gateway, a TCP server) and the one connection that serves it.

Every source that names the same serial port or the same endpoint shares one `ModbusBus`: an
RS-485 line carries one frame at a time, and most gateways serve one connection badly when
requests overlap. The bus owns the connection and the request lock, so it is the one place that
serialises, paces and keeps fair:

- one request on the line at a time, in the order asked (`asyncio.Lock` wakes waiters first in,
  first out, and a driver takes the lock per request, so sources sharing a bus take turns request
  by request: no device waits more than one round of the others);
- before each frame the line is silent for the inter-frame time (3.5 character times at the
  configured baud rate, as the serial line specification asks; settable) or for
  `pause_between_requests_ms`, whichever is longer; after a connect, `pause_after_connect_ms`;
- each unit id keeps its health: after `unreachable_after` timeouts in a row it is backed off and
  asked only every `unreachable_retry_s` until it answers, so one dead slave costs one timeout per
  back-off period instead of one per cycle, and the live ones keep their poll rate.

pymodbus does the framing (socket, RTU, ASCII) and the CRC; what it does not tell apart is "no
answer" from "an answer that failed its check". The bus watches the received bytes to tell them
apart: a corrupt frame (`crc_error`) costs only that request and says nothing against the
device, while silence counts towards the back-off. pymodbus's own "close the link after a few
unanswered requests" is turned off: on a shared bus one silent unit must not cut off the others.
"""

from __future__ import annotations

import asyncio
import errno
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import structlog
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusIOException
from pymodbus.framer import FramerType

from drivers.base import DriverAccessDenied, DriverConnectionError
from drivers.modbus_responses import register_responses

log = structlog.get_logger(__name__)

Transport = Literal["tcp", "rtu_over_tcp", "rtu", "ascii"]
Client = AsyncModbusTcpClient | AsyncModbusSerialClient
# Above 19200 baud the specification fixes the inter-frame silence at 1.75 ms.
FAST_LINE_BAUD, FAST_LINE_SILENCE_S = 19200, 0.00175
NEVER_DISCONNECT = 1_000_000_000


@dataclass(frozen=True)
class LinkSettings:
    """How to reach a link and keep its line discipline; equal for every source sharing it."""

    transport: Transport
    endpoint: str = ""  # tcp://host[:port] for tcp and rtu_over_tcp
    serial_port: str = ""  # for rtu and ascii
    baudrate: int = 19200
    bytesize: int = 8
    parity: str = "E"
    stopbits: int = 1
    inter_frame_ms: float | None = None
    pause_between_requests_ms: float = 0.0
    pause_after_connect_ms: float = 0.0

    @property
    def serial(self) -> bool:
        return self.transport in ("rtu", "ascii")

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) of a TCP link; 502 when the endpoint names no port."""
        parts = urlsplit(self.endpoint)
        if parts.scheme != "tcp" or not parts.hostname:
            raise ValueError(f"Modbus endpoint {self.endpoint!r} is not tcp://host[:port]")
        return parts.hostname, parts.port or 502

    def describe(self) -> str:
        """`/dev/ttyUSB0 (rtu, 19200 8E1)` or `tcp://10.0.0.5:502 (rtu_over_tcp)`: for messages."""
        if self.serial:
            frame = f"{self.baudrate} {self.bytesize}{self.parity}{self.stopbits}"
            return f"{self.serial_port} ({self.transport}, {frame})"
        return f"{self.endpoint} ({self.transport})"

    @property
    def char_time_s(self) -> float:
        """One character on the line: start bit, data bits, parity bit, stop bits."""
        bits = 1 + self.bytesize + (self.parity != "N") + self.stopbits
        return bits / self.baudrate

    @property
    def silence_s(self) -> float:
        """The quiet time before each frame: configured, or what the line discipline needs."""
        if self.inter_frame_ms is not None:
            silence = self.inter_frame_ms / 1000
        elif not self.serial:
            silence = 0.0  # TCP framing delimits frames itself; a gateway paces its own line
        elif self.baudrate > FAST_LINE_BAUD:
            silence = FAST_LINE_SILENCE_S
        else:
            silence = 3.5 * self.char_time_s
        return max(silence, self.pause_between_requests_ms / 1000)


class NoAnswer(Exception):
    """A request got no valid answer: silence (`timeout`) or a frame that failed its check."""

    def __init__(self, reason: Literal["timeout", "crc_error"]) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class DeviceHealth:
    """One unit id on a bus: consecutive timeouts and, once backed off, when to try again."""

    timeouts: int = 0
    backed_off: bool = False
    next_try: float = 0.0

    def waiting(self, now: float) -> bool:
        """Backed off and not yet due for its next try: do not spend line time on it."""
        return self.backed_off and now < self.next_try


class ModbusBus:
    """The connection of one link, its request lock, pacing and per-device health."""

    def __init__(self, link: LinkSettings) -> None:
        self.link = link
        self.devices: dict[int, DeviceHealth] = {}
        self._lock = asyncio.Lock()
        self._client: Client | None = None
        self._users = 0
        self._quiet_from = 0.0  # monotonic time the line went quiet
        self._silence_s = link.silence_s
        self._heard = False  # bytes arrived for the request in flight
        self._log = log.bind(link=link.describe())

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.connected

    def device(self, unit_id: int) -> DeviceHealth:
        health = self.devices.get(unit_id)
        if health is None:
            health = self.devices[unit_id] = DeviceHealth()
        return health

    def attach(self) -> None:
        """A driver starts using the bus (the link closes when the last one detaches)."""
        self._users += 1

    def detach(self) -> None:
        self._users -= 1
        if self._users <= 0:
            self._users = 0
            self.close()

    async def connect(self, timeout_s: float) -> None:
        """Open the link unless it is open; raises `DriverConnectionError` naming the problem."""
        async with self._lock:
            if self.connected:
                return
            self.close()
            if self.link.serial:
                _check_serial_port(self.link.serial_port)
            client = self._new_client(timeout_s)
            try:
                opened = await client.connect()
            except Exception as exc:  # pyserial's and termios's errors share no base class
                client.close()
                raise DriverConnectionError(
                    f"serial port {self.link.describe()} refuses its settings: {exc} (a "
                    "pseudo-terminal accepts parity N only)"
                ) from exc
            if not opened:
                client.close()
                raise DriverConnectionError(self._cannot_connect())
            client.set_max_no_responses(NEVER_DISCONNECT)
            self._client = client
            if self.link.pause_after_connect_ms:
                await asyncio.sleep(self.link.pause_after_connect_ms / 1000)
            self._quiet_from = time.monotonic()
            self._log.info("modbus_link_open")

    def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            client.close()

    async def execute(
        self,
        call: Callable[[Client], Awaitable[Any]],
        timeout_s: float,
        retries: int,
    ) -> Any:
        """One request on the line (`call` issues it on the client); its response or `NoAnswer`.

        Raises `DriverConnectionError` when the link itself is gone. The timeout and retries are
        the asking source's: sources sharing a bus may poll at different rates.
        """
        async with self._lock:
            client = self._client
            if client is None or not client.connected:
                raise DriverConnectionError(f"Modbus link {self.link.describe()} is lost")
            if self._silence_s:
                wait = self._quiet_from + self._silence_s - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
            client.ctx.comm_params.timeout_connect = timeout_s
            client.ctx.retries = retries
            self._heard = False
            try:
                return await call(client)
            except ConnectionException as exc:
                raise DriverConnectionError(f"Modbus link {self.link.describe()}: {exc}") from exc
            except ModbusIOException as exc:
                if not client.connected:
                    raise DriverConnectionError(
                        f"Modbus link {self.link.describe()} is lost"
                    ) from exc
                raise NoAnswer("crc_error" if self._heard else "timeout") from exc
            finally:
                self._quiet_from = time.monotonic()

    def _trace(self, sending: bool, data: bytes) -> bytes:
        if not sending and data:
            self._heard = True
        return data

    def _new_client(self, timeout_s: float) -> Client:
        common: dict[str, Any] = {
            "timeout": timeout_s,
            "retries": 0,
            "reconnect_delay": 0,  # the acquisition layer supervises reconnects
            "trace_packet": self._trace,
        }
        link = self.link
        client: Client
        if link.serial:
            framer = FramerType.RTU if link.transport == "rtu" else FramerType.ASCII
            client = AsyncModbusSerialClient(
                link.serial_port, framer=framer, baudrate=link.baudrate, bytesize=link.bytesize,
                parity=link.parity, stopbits=link.stopbits, **common,
            )  # fmt: skip
        else:
            host, port = link.address
            framer = FramerType.RTU if link.transport == "rtu_over_tcp" else FramerType.SOCKET
            client = AsyncModbusTcpClient(host, port=port, framer=framer, **common)
        register_responses(client)
        return client

    def _cannot_connect(self) -> str:
        if self.link.serial:
            return (
                f"cannot open serial port {self.link.serial_port}: check that no other program "
                "holds it and that the adapter works"
            )
        return (
            f"cannot connect to Modbus server {self.link.endpoint}: check that the device or "
            "gateway is up and the address right"
        )


def _check_serial_port(port: str) -> None:
    """Name the two problems every serial installation meets first, before pyserial hides them."""
    if not os.path.exists(port):
        raise DriverConnectionError(
            f"serial port {port} does not exist: check the cable or USB adapter and the name "
            "(ls -l /dev/serial/by-id/ lists adapters by a name that survives re-plugging)"
        )
    try:
        fd = os.open(port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    except PermissionError as exc:
        raise DriverAccessDenied(
            f"permission denied on serial port {port}: add the service user to the dialout "
            "group (SupplementaryGroups=dialout in the systemd unit; usermod -aG dialout USER)"
        ) from exc
    except OSError as exc:
        if exc.errno == errno.EBUSY:
            raise DriverConnectionError(
                f"serial port {port} is busy: another program holds it"
            ) from exc
        raise DriverConnectionError(f"cannot open serial port {port}: {exc.strerror}") from exc
    os.close(fd)


class ModbusBuses:
    """The buses of one agent: sources that name the same link get the same bus."""

    def __init__(self) -> None:
        self._buses: dict[str, ModbusBus] = {}

    def bus(self, key: str, link: LinkSettings) -> ModbusBus:
        """The bus for `key` (the source's link), made on first use."""
        bus = self._buses.get(key)
        if bus is None:
            bus = self._buses[key] = ModbusBus(link)
        elif bus.link != link:
            # The configuration refuses this; a hand-built source list could still do it.
            raise ValueError(f"sources on {key} disagree on the link settings")
        return bus
