"""Fakes for the control path's unit tests: a small configuration, a TagStore filled by hand and a
driver that records every write (and, like a device plus acquisition, makes it visible in the
store). Integration tests use the real simulators instead (tests/support/plant.py)."""

from __future__ import annotations

import asyncio
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivers.base import DriverConnectionError, WriteRefused
from edge_agent.config import AgentConfig
from edge_agent.contracts.samples import Quality, Sample, Value, now_ns
from edge_agent.tagstore import TagStore

NS = 1_000_000_000

CONFIG = """
[agent]
site = "demo"
instance_id = "edge-test"

[[source]]
name = "fsf"
protocol = "opcua"
endpoint = "opc.tcp://127.0.0.1:4840/"

[[source.tag]]
id = "fsf.fuel_flow_sp"
node = "ns=2;s=fsf.fuel_flow_sp"
writable = true
min = 0.0
max = 1500.0

[[source.tag]]
id = "fsf.o2_flow_sp"
node = "ns=2;s=fsf.o2_flow_sp"
writable = true
min = 20000.0
max = 45000.0

[[source.tag]]
id = "fsf.escrap_feed_sp"
node = "ns=2;s=fsf.escrap_feed_sp"
writable = true
min = 0.0
max = 40.0

[[source.tag]]
id = "fsf.matte_temp"
node = "ns=2;s=fsf.matte_temp"

[[source.tag]]
id = "fsf.advisor_permissive"
node = "ns=2;s=fsf.advisor_permissive"

[[source.tag]]
id = "fsf.agent_heartbeat"
node = "ns=2;s=fsf.agent_heartbeat"
writable = true
min = 0
max = 1000

[control]
mode = "closed_loop"
permissive_max_age_s = 5.0
command_max_age_s = 10.0
readback_timeout_s = 0.5

[[control.allow]]
tag = "fsf.fuel_flow_sp"
min = 0.0
max = 1200.0
max_rate_per_min = 100.0
origins = ["advisor", "scada"]
min_interval_s = 10.0
recommendation = "kpi.advisor.fuel_flow_sp"

[[control.allow]]
tag = "fsf.o2_flow_sp"
min = 25000.0
max = 40000.0
max_rate_per_min = 1000.0
origins = ["scada"]
min_interval_s = 0.0
"""

SETPOINTS: dict[str, float] = {
    "fsf.fuel_flow_sp": 500.0,
    "fsf.o2_flow_sp": 30000.0,
    "fsf.escrap_feed_sp": 10.0,
}


def config(tmp_path: Path, text: str = CONFIG, **control: Any) -> AgentConfig:
    data = tomllib.loads(text)
    data["agent"]["state_dir"] = str(tmp_path / "state")
    data["control"].update(control)
    return AgentConfig.model_validate(data)


def good(tag: str, value: Value, acq_ns: int | None = None) -> Sample:
    return Sample(tag, value, Quality.GOOD, acq_ns if acq_ns is not None else now_ns())


def plant_store(permissive: Value = True) -> TagStore:
    """Every setpoint Good and fresh at its initial value, the permissive as given."""
    store = TagStore()
    store.update(good(tag, value) for tag, value in SETPOINTS.items())
    store.update([good("fsf.matte_temp", 1250.0), good("fsf.advisor_permissive", permissive)])
    return store


async def stop_tasks(*tasks: asyncio.Task[Any], within_s: float = 10.0) -> None:
    """Cancel until done, as the supervisor does (3.11's wait_for can swallow one cancellation),
    so a teardown can never hang on a task that missed its cancel."""
    pending = {t for t in tasks if not t.done()}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while pending and loop.time() < deadline:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.1)
    assert not pending, f"tasks ignored cancellation: {pending}"


@dataclass
class RecordingDriver:
    """Records writes; echoes each into the store as acquisition would after the next poll.

    `echo=False` models a source that is no longer read; `takes_effect=False` a device that
    acknowledges a write but keeps its old value; `fail` makes every write raise (a refused write
    or a lost connection)."""

    store: TagStore
    writes: list[tuple[str, Value]] = field(default_factory=list)
    echo: bool = True
    takes_effect: bool = True
    fail: Exception | None = None
    wrote: asyncio.Event = field(default_factory=asyncio.Event)

    async def connect(self) -> None:
        return None

    async def read(self) -> list[Sample]:
        return []

    async def write(self, tag_id: str, value: Value) -> None:
        if self.fail is not None:
            raise self.fail
        self.writes.append((tag_id, value))
        self.wrote.set()
        old = self.store.get(tag_id)
        if self.echo:
            kept = value if self.takes_effect or old is None else old.value
            assert kept is not None
            self.store.update([good(tag_id, kept)])

    async def close(self) -> None:
        return None


__all__ = [
    "CONFIG",
    "NS",
    "SETPOINTS",
    "DriverConnectionError",
    "RecordingDriver",
    "WriteRefused",
    "config",
    "good",
    "plant_store",
    "stop_tasks",
]
