"""The one retry policy: capped exponential backoff with jitter, cut short by connection probes.

Every reconnect loop of the agent waits with `Backoff` (the supervisor's restarts, the sources,
the MQTT connection, the InfluxDB sink). The delay doubles so that a broken peer is not hammered
with expensive attempts (TLS handshakes, logins, full requests); but a long outage lets the delay
grow to its cap, and without more the agent would stay away up to a whole cap after the server is
back. So while waiting out a delay longer than `probe_every_s`, `wait()` asks a cheap probe
(`tcp_probe`: does anyone accept a TCP connection there?) every `probe_every_s` and ends the wait
as soon as it answers yes. Delivery then resumes within about `probe_every_s` of the server
accepting connections again, however long the outage was.

Probe only after "unreachable": when the server did answer but refused (CONNACK "not authorized",
HTTP 401), it accepts connections all along, a probe would say yes at once and turn the backoff
into a fixed fast retry loop. Callers pass a probe for the first kind of failure only.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

Probe = Callable[[], Awaitable[bool]]

PROBE_EVERY_S = 0.5
PROBE_TIMEOUT_S = 0.5


@dataclass
class Backoff:
    """Delay before retry number n: initial * factor**(n-1), capped, times 1 ± jitter.

    The jitter keeps several failed clients from reconnecting to one gateway in lockstep.
    """

    initial_s: float = 0.5
    max_s: float = 30.0
    factor: float = 2.0
    jitter: float = 0.2
    probe_every_s: float = PROBE_EVERY_S
    failures: int = field(default=0, init=False)

    def delay_s(self, failures: int, rand: Callable[[], float] = random.random) -> float:
        """The delay after `failures` consecutive failures (pure; `next_delay` counts)."""
        base = min(self.max_s, self.initial_s * self.factor ** max(0, failures - 1))
        return max(0.0, base * (1.0 + self.jitter * (2.0 * rand() - 1.0)))

    def next_delay(self) -> float:
        """Count one more failure and return the delay before the next attempt."""
        self.failures += 1
        return self.delay_s(self.failures)

    def reset(self) -> None:
        """A success: the next failure starts from `initial_s` again."""
        self.failures = 0

    async def wait(self, probe: Probe | None = None, delay_s: float | None = None) -> bool:
        """Count a failure and sleep its delay (or `delay_s`, e.g. a Retry-After).

        With a probe, a delay longer than `probe_every_s` is spent probing at that interval; it
        ends early when the probe answers yes. Returns True if it ended early.
        """
        delay = self.next_delay() if delay_s is None else delay_s
        if probe is None or delay <= self.probe_every_s:
            await asyncio.sleep(delay)
            return False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + delay
        while (remaining := deadline - loop.time()) > 0:
            await asyncio.sleep(min(self.probe_every_s, remaining))
            if remaining > self.probe_every_s and await probe():
                return True
        return False


async def tcp_probe(host: str, port: int, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """True if something accepts a TCP connection at host:port now (closed again at once)."""
    try:
        async with asyncio.timeout(timeout_s):
            _, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True
