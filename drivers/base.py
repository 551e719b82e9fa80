"""What the acquisition layer expects of a protocol driver."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from edge_agent.contracts.samples import Sample, Value


class Driver(Protocol):
    """One connection (or a small pool of sessions) to one source.

    `read` never raises for a tag that cannot be read: that tag comes back as a Bad sample with a
    reason. It raises `DriverConnectionError` when the connection itself is gone, so that the
    acquisition layer can mark every tag of the source Bad and reconnect.
    """

    async def connect(self) -> None: ...

    async def read(self) -> list[Sample]: ...

    async def write(self, tag_id: str, value: Value) -> None: ...

    async def close(self) -> None: ...


@runtime_checkable
class ReportsRanges(Protocol):
    """A driver whose server states each tag's instrument range (OPC UA: EURange). Acquisition
    takes them, after each connect, as the validity ranges of tags that configure none."""

    def value_ranges(self) -> dict[str, tuple[float, float]]: ...


@runtime_checkable
class HistoryDriver(Protocol):
    """A driver that also receives history: samples of the past (a Sparkplug node's backlog,
    `is_historical`) that belong in the outbox and the databases but must never replace the
    latest value the KPIs read."""

    def drain_history(self) -> list[Sample]: ...


@runtime_checkable
class PushDriver(Protocol):
    """A driver whose values arrive when the other side sends them (MQTT, Sparkplug): a single
    read right after connecting would find nothing yet, so a one-shot reader waits first."""

    async def settled(self, timeout_s: float) -> None: ...


class DriverError(Exception):
    """Base for driver failures; the message says what the operator can do."""


class DriverConnectionError(DriverError):
    """The connection to the source is lost or cannot be made."""

    # What the source's tags say while this lasts (Sample.reason).
    reason = "connection_lost"


class DriverAccessDenied(DriverConnectionError):
    """The server refused us (credentials, certificate trust): retrying alone will not help."""

    reason = "access_denied"


class WriteRefused(DriverError):
    """The device refused a write (out of range, not writable, exception reply)."""
