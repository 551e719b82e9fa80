"""SIGHUP reload: validate the file first, then apply it or keep running on the old one.

`systemctl reload edge-agent` sends SIGHUP (the unit's `ExecReload=`). A file that does not
validate must never take a running agent down: the error is logged (`config_reload_rejected`,
one line per problem, the same text `edge-agent check-config` prints) and the agent carries on
with the configuration it has. A valid file that differs is handed to the runtime, which stops the
components and builds them again from it (`config_reloaded`, with the sections that changed).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

import structlog

from edge_agent.config import AgentConfig
from edge_agent.config.loader import ConfigError
from edge_agent.sdnotify import Notifier

log = structlog.get_logger(__name__)


class ReloadRequests:
    """Turns SIGHUP into a validated new configuration, or into nothing."""

    def __init__(self, load: Callable[[], AgentConfig], notifier: Notifier | None = None) -> None:
        self._load = load
        self._notifier = notifier
        self.requested = asyncio.Event()
        self.last_error: list[str] = []

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.add_signal_handler(signal.SIGHUP, self.request)

    def request(self) -> None:
        log.info("config_reload_requested")
        self.requested.set()

    def take(self, current: AgentConfig) -> AgentConfig | None:
        """The new configuration if the file is valid and differs from `current`, else None."""
        self.requested.clear()
        try:
            new = self._load()
        except ConfigError as exc:
            self.last_error = exc.lines
            log.error("config_reload_rejected", errors=exc.lines, keeping="previous configuration")
            if self._notifier is not None:
                # `systemctl status` shows why the reload did nothing (until the next refresh).
                self._notifier.status(f"reload rejected, previous config kept: {exc.lines[0]}")
            return None
        self.last_error = []
        changed = changed_sections(current, new)
        if not changed:
            log.info("config_reload_unchanged")
            return None
        log.info("config_reloaded", changed=changed)
        return new


def changed_sections(old: AgentConfig, new: AgentConfig) -> list[str]:
    """Top-level sections whose content differs (`source.<name>` for individual sources)."""
    changed: list[str] = []
    for name in type(old).model_fields:
        if name == "source":
            continue
        if getattr(old, name) != getattr(new, name):
            changed.append(name)
    before = {s.name: s for s in old.source}
    after = {s.name: s for s in new.source}
    for name in sorted(before.keys() | after.keys()):
        if before.get(name) != after.get(name):
            changed.append(f"source.{name}")
    return changed


async def next_config(
    current: AgentConfig, stop: asyncio.Event, reloads: ReloadRequests | None
) -> AgentConfig | None:
    """Wait for a stop (None) or for a reload that yields a valid, different configuration."""
    if reloads is None:
        await stop.wait()
        return None
    while not stop.is_set():
        waiters = {
            asyncio.create_task(stop.wait()),
            asyncio.create_task(reloads.requested.wait()),
        }
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
        if stop.is_set():
            return None
        new = reloads.take(current)
        if new is not None:
            return new
    return None
