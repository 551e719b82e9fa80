"""InfluxDB sink: line protocol over `api = "v2"` (influxdb-client async) or `api = "v1"` (/write).

Schema (narrow: one point per sample): `edge_agent/sinks/line_protocol.py`, docs/influxdb.md.

Errors never cost accepted data: NaN and infinities become Bad points with a reason; on a 400
(or 413) the batch is split in halves until the offending point is alone, which is quarantined
in the outbox (persisted, logged with the server's reason) while the rest is delivered; 429 and
5xx are retried with capped backoff honouring Retry-After; 401/403 keep the data in the outbox,
mark the sink unhealthy and log an error when it starts, a summary while it lasts and a line when
it ends; unreachable servers are probed every half second and written to as soon as they answer.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import gzip
import importlib
import time
import urllib.parse
from collections.abc import Sequence
from typing import Protocol

import aiohttp
import structlog

from drivers.backoff import Backoff, tcp_probe
from drivers.conditions import Condition
from edge_agent.config import AgentConfig, InfluxSection
from edge_agent.logs import emitter
from edge_agent.outbox import Outbox
from edge_agent.sinks.line_protocol import LineEncoder
from edge_agent.sinks.state import SinkState

log = structlog.get_logger("edge_agent.sinks.influx")

IDLE_WAKEUP_S = 5.0


# ------------------------------------------------------------------------------------- writers


class WriteError(Exception):
    """The server answered with an error status; carries what the retry logic needs."""

    def __init__(self, status: int, message: str, retry_after: str | None = None) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message
        self.retry_after = retry_after


class Writer(Protocol):
    async def write(self, lines: Sequence[str]) -> None: ...
    async def close(self) -> None: ...


class V1Writer:
    """POST /write?db=&rp=&precision= with basic auth: InfluxDB 1.x before 1.8 (and later)."""

    def __init__(self, settings: InfluxSection, password: str | None) -> None:
        self.settings = settings
        # InfluxDB 1.x spells microseconds "u".
        precision = "u" if settings.precision == "us" else settings.precision
        params = {"db": settings.db or "", "precision": precision}
        if settings.rp:
            params["rp"] = settings.rp
        self._params = params
        self._headers = {"Content-Type": "text/plain; charset=utf-8"}
        if settings.username is not None:
            credentials = f"{settings.username}:{password or ''}".encode()
            self._headers["Authorization"] = "Basic " + base64.b64encode(credentials).decode()
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=settings.timeout_s), trust_env=False
        )

    async def write(self, lines: Sequence[str]) -> None:
        body = ("\n".join(lines) + "\n").encode()
        headers = dict(self._headers)
        if self.settings.gzip:
            body = await asyncio.to_thread(gzip.compress, body, 1)
            headers["Content-Encoding"] = "gzip"
        url = self.settings.url.rstrip("/") + "/write"
        async with self._session.post(url, params=self._params, data=body, headers=headers) as resp:
            if resp.status // 100 == 2:
                return
            text = await resp.text(errors="replace")
            raise WriteError(resp.status, text.strip()[:500], resp.headers.get("Retry-After"))

    async def close(self) -> None:
        await self._session.close()


V2_CLIENT_MODULE = "influxdb_client.client.influxdb_client_async"


class V2Writer:
    """influxdb-client's async write API: InfluxDB 2.x/3.x, 1.8+, VictoriaMetrics."""

    def __init__(self, settings: InfluxSection, token: str | None) -> None:
        from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
        from influxdb_client.domain.write_precision import WritePrecision

        self.settings = settings
        self._client = InfluxDBClientAsync(
            url=settings.url,
            token=token or "",
            org=settings.org or "",
            enable_gzip=settings.gzip,
            timeout=int(settings.timeout_s * 1000),
        )
        self._api = self._client.write_api()
        self._precision = getattr(WritePrecision, settings.precision.upper())

    async def write(self, lines: Sequence[str]) -> None:
        from influxdb_client.client.exceptions import InfluxDBError

        try:
            await self._api.write(
                bucket=self.settings.bucket or "",
                org=self.settings.org or "",
                record="\n".join(lines).encode(),
                write_precision=self._precision,
            )
        except InfluxDBError as exc:
            status = int(getattr(exc, "status", None) or getattr(exc.response, "status", 0) or 0)
            message = str(exc.message)[:500]
            if status == 404:
                message = await self._v1_hint() or message
            raise WriteError(status, message, exc.retry_after) from exc

    async def _v1_hint(self) -> str | None:
        """What a 404 on /api/v2/write means when the server is InfluxDB 1.x (before 1.8)."""
        url = self.settings.url.rstrip("/") + "/ping"
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout_s)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout, trust_env=False) as session,
                session.get(url) as resp,
            ):
                version = resp.headers.get("X-Influxdb-Version", "")
        except (aiohttp.ClientError, OSError, TimeoutError):
            return None
        if not version.startswith("1."):
            return None
        return (
            f"{self.settings.url} is InfluxDB {version}, which has no v2 write API: "
            'set [influx] api = "v1" and db = "<database>" (data is kept in the outbox)'
        )

    async def close(self) -> None:
        await self._client.close()  # type: ignore[no-untyped-call]


def make_writer(settings: InfluxSection) -> Writer:
    if settings.api == "v1":
        return V1Writer(settings, settings.password.resolve() if settings.password else None)
    return V2Writer(settings, settings.token.resolve() if settings.token else None)


# ---------------------------------------------------------------------------------------- sink


class InfluxSink:
    """Service body: read the outbox, write, split around refused points, then confirm."""

    name = "influx"

    def __init__(self, cfg: AgentConfig, outbox: Outbox, writer: Writer | None = None) -> None:
        if cfg.influx is None:
            raise ValueError("InfluxSink needs an [influx] section")
        self.settings = cfg.influx
        self.outbox = outbox
        self.cursor = outbox.cursor(self.name)
        self.state = SinkState(self.name, cursor=self.cursor)
        self.encoder = LineEncoder(cfg.agent.site, self.settings.precision)
        self._writer = writer
        self.backoff = Backoff(self.settings.retry_min_s, self.settings.retry_max_s)
        self.unreachable = Condition("influx_unreachable", emitter(log))
        self.throttled = Condition("influx_write_retry", emitter(log))
        self.refused = Condition("influx_write_refused", emitter(log), level="error")
        self.unauthorized = Condition("influx_unauthorized", emitter(log), level="error")

    async def run(self) -> None:
        if self._writer is None and self.settings.api == "v2":
            # influxdb-client takes about a second to import on a busy edge PC: in a thread, so
            # the sources' first connects on the loop do not time out meanwhile.
            await asyncio.to_thread(importlib.import_module, V2_CLIENT_MODULE)
        writer = self._writer or make_writer(self.settings)
        self.state.state = "connecting"
        try:
            while True:
                self.state.progress += 1
                batches = await self.cursor.read(self.settings.max_samples_per_write, IDLE_WAKEUP_S)
                if not batches:
                    continue
                await self.deliver(writer, self.encoder.lines(batches))
                self.state.confirmed(len(batches), sum(len(b.samples) for b in batches))
                await self.cursor.ack(batches[-1].id)  # after counting: see MqttJsonSink._confirm
        finally:
            if self._writer is None:
                await writer.close()
            self.state.state = "stopped"

    async def deliver(self, writer: Writer, lines: list[str]) -> None:
        """Write all lines; returns once each is stored or quarantined. Retries forever.

        An unreachable server is probed every half second once the backoff has grown, so that
        delivery resumes as soon as it accepts connections again (drivers/backoff.py).
        """
        chunks: list[list[str]] = [lines]
        while chunks:
            chunk = chunks[0]
            probe = delay = None
            try:
                await writer.write(chunk)
            except WriteError as exc:
                if exc.status in (400, 413, 422):
                    chunks[:1] = await self._split(chunk, exc)
                    continue
                delay = self._retry_delay(exc)
                self._failed(exc, delay)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                error = f"{type(exc).__name__}: {exc}"
                self.state.fail("unreachable", error)
                self.unreachable.occurred(url=self.settings.url, error=str(exc) or error)
                probe = self._probe
            else:
                chunks.pop(0)
                self.backoff.reset()
                for condition in (
                    self.unreachable,
                    self.throttled,
                    self.refused,
                    self.unauthorized,
                ):
                    condition.cleared(url=self.settings.url)
                continue
            self.state.retries_total += 1
            self.state.progress += 1  # a retry is the loop alive: not a hang for the watchdog
            await self.backoff.wait(probe, delay)

    async def _probe(self) -> bool:
        url = urllib.parse.urlsplit(self.settings.url)
        port = url.port or (443 if url.scheme == "https" else 80)
        return await tcp_probe(url.hostname or "127.0.0.1", port)

    async def _split(self, chunk: list[str], exc: WriteError) -> list[list[str]]:
        """Halve a refused chunk; a refused single point goes to quarantine instead."""
        if len(chunk) > 1:
            mid = len(chunk) // 2
            return [chunk[:mid], chunk[mid:]]
        reason = f"HTTP {exc.status}: {exc.message}"
        await self.outbox.quarantine(self.name, [(reason, chunk[0])])
        self.state.quarantined_samples_total += 1
        log.warning("influx_point_quarantined", reason=reason, line=chunk[0][:300])
        return []

    def _retry_delay(self, exc: WriteError) -> float | None:
        """The server's Retry-After where it gives one (capped), else None: the backoff's."""
        after = _parse_retry_after(exc.retry_after) if exc.retry_after else None
        if after is None:
            return None
        self.backoff.failures += 1
        return min(max(after, 0.0), self.settings.retry_max_s)

    def _failed(self, exc: WriteError, delay: float | None) -> None:
        if exc.status in (401, 403):
            self.state.fail("unauthorized", str(exc))
            self.unauthorized.occurred(
                status=exc.status,
                message=exc.message,
                action="check the token / username and password; data is kept in the outbox",
            )
        elif exc.status == 429 or exc.status >= 500:
            self.state.fail("throttled" if exc.status == 429 else "server_error", str(exc))
            self.throttled.occurred(status=exc.status, retry_after_s=delay)
        else:
            self.state.fail("refused", str(exc))
            self.refused.occurred(status=exc.status, message=exc.message)


def _parse_retry_after(value: str) -> float | None:
    """Retry-After is either delta-seconds or an HTTP date."""
    value = value.strip()
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when.timestamp() - time.time()
