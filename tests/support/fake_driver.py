"""A device in memory and a driver for it that keeps the driver contract (drivers/base.py).

The acquisition tests drive their loop with it; `tests/test_drivers_base_contract.py` runs the
same contract tests against it as against the real drivers, so that what the fake lets those
tests assume is what a real driver does.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from drivers.base import DriverConnectionError, WriteRefused
from edge_agent.contracts.samples import Quality, Sample, Value, now_ns


@dataclass
class FakeDevice:
    """What the fake driver reads and writes: set `down`, `bad` and `values` to script a plant."""

    values: dict[str, Value]
    writable: set[str] = field(default_factory=set)
    bad: dict[str, str] = field(default_factory=dict)  # tag -> reason its read fails
    down: bool = False
    slow_s: float = 0.0  # each read takes this long
    endpoint: str = "fake://device"
    connects: int = 0
    written: dict[str, Value] = field(default_factory=dict)
    session: int = 0  # drivers connected before the last `drop()` have lost their session

    def drop(self) -> None:
        """Close every open session, staying up (a server restart)."""
        self.session += 1

    def driver(self, source: Any = None) -> FakeDriver:
        """A new driver for this device (the signature of acquisition's driver factory)."""
        return FakeDriver(self)


class FakeDriver:
    """One connection to a `FakeDevice`."""

    def __init__(self, device: FakeDevice) -> None:
        self.device = device
        self.connected = False
        self._session = -1

    async def connect(self) -> None:
        self.device.connects += 1
        if self.device.down:
            raise DriverConnectionError(f"cannot reach {self.device.endpoint}")
        self.connected, self._session = True, self.device.session

    async def read(self) -> list[Sample]:
        self._check_connected()
        if self.device.slow_s:
            await asyncio.sleep(self.device.slow_s)
        self._check_connected()
        acq = now_ns()
        bad = self.device.bad
        return [
            Sample(tag, None, Quality.BAD, acq, None, bad[tag])
            if tag in bad
            else Sample(tag, value, Quality.GOOD, acq)
            for tag, value in self.device.values.items()
        ]

    async def write(self, tag_id: str, value: Value) -> None:
        if tag_id not in self.device.values:
            raise WriteRefused(f"{self.device.endpoint} has no tag {tag_id!r}")
        if tag_id not in self.device.writable:
            raise WriteRefused(f"tag {tag_id} is not writable")
        self._check_connected()
        self.device.written[tag_id] = self.device.values[tag_id] = value

    async def close(self) -> None:
        self.connected = False

    def _check_connected(self) -> None:
        if self.device.down or (self.connected and self._session != self.device.session):
            self.connected = False
            raise DriverConnectionError(f"connection to {self.device.endpoint} is lost")
        if not self.connected:
            raise DriverConnectionError(f"not connected to {self.device.endpoint}")
