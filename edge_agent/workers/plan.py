"""Which sources an acquisition worker process reads, and which stay in the main process.

`[agent] acquisition_workers = k` (k ≥ 1) moves the sources that can be read anywhere into k
worker processes; the rest stay with the main process, which always keeps the SampleBus and
everything after it. A source stays in the main process when

- the control path may write to it (a writable tag, an allowlisted setpoint, the heartbeat):
  writes go through the live driver, which lives where the source is read;
- it carries the server's OPC UA Alarms & Conditions (they feed the main process's alarms);
- a tag's `quality_from` names a tag of another source (the gate reads the latest value of
  that tag, which only the main process's TagStore holds for every source);
- it is an MQTT or Sparkplug source (push sources, hand-ons of what a broker sends: cheap);
- it shares its Modbus link (serial port, gateway) with a source that stays: one link is one
  connection, in one process.

Sources sharing a Modbus link move together. The groups are dealt out largest first (by tag
count) to the worker with the fewest tags so far, ties to the lower worker number, so the same
file always gives the same plan. More workers than movable groups is not an error: the extra
workers are not started, and the plan says so (`unused`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from dataclasses import dataclass

from edge_agent.config import AgentConfig, ModbusSource, OpcUaSource, Source


@dataclass(frozen=True)
class Shard:
    """What one worker process reads."""

    index: int
    sources: tuple[str, ...]
    tags: int


@dataclass(frozen=True)
class ShardPlan:
    shards: tuple[Shard, ...]
    local: tuple[str, ...]  # enabled sources read by the main process
    kept: dict[str, str]  # source name -> why it stays in the main process
    unused: int  # workers asked for that have nothing to read

    def as_log(self) -> dict[str, object]:
        return {
            "workers": [
                {"worker": s.index, "sources": list(s.sources), "tags": s.tags} for s in self.shards
            ],
            "local": list(self.local),
            "kept": self.kept,
            "unused_workers": self.unused,
        }

    def describe(self) -> list[str]:
        """`check-config`'s lines for the plan (nothing when there are no workers)."""
        lines = [
            f"    worker {s.index}: {', '.join(s.sources)} ({s.tags} tags)" for s in self.shards
        ]
        lines += [f"    main process: {name} ({why})" for name, why in self.kept.items()]
        if self.unused:
            lines.append(f"    {self.unused} worker(s) not started: nothing more can move")
        return lines


def plan_shards(cfg: AgentConfig) -> ShardPlan:
    wanted = cfg.agent.acquisition_workers
    sources = [s for s in cfg.source if s.enabled]
    if wanted == 0:
        return ShardPlan((), tuple(s.name for s in sources), {}, 0)
    kept = {s.name: why for s in sources if (why := _why_local(cfg, s)) is not None}
    groups: dict[str, list[Source]] = {}
    for s in sources:
        groups.setdefault(_link_key(s), []).append(s)
    for group in groups.values():  # one link, one process: a source that stays keeps its link
        anchor = next((s.name for s in group if s.name in kept), None)
        for s in group:
            if anchor is not None and s.name not in kept:
                kept[s.name] = f"shares its link with {anchor}"
    movable = [g for g in groups.values() if not any(s.name in kept for s in g)]
    movable.sort(key=lambda g: (-sum(len(s.tag) for s in g), g[0].name))
    count = min(wanted, len(movable))
    dealt: list[list[Source]] = [[] for _ in range(count)]
    loads = [0] * count
    for group in movable:
        i = min(range(count), key=lambda k: (loads[k], k))
        dealt[i] += group
        loads[i] += sum(len(s.tag) for s in group)
    order = {s.name: n for n, s in enumerate(cfg.source)}
    shards = tuple(
        Shard(i, tuple(sorted((s.name for s in d), key=order.__getitem__)), loads[i])
        for i, d in enumerate(dealt)
    )
    local = tuple(s.name for s in sources if s.name in kept)
    return ShardPlan(shards, local, kept, wanted - count)


def narrowed(cfg: AgentConfig, names: Collection[str]) -> AgentConfig:
    """The configuration as one process reads it: only the sources named (the rest unchanged)."""
    return cfg.model_copy(update={"source": [s for s in cfg.source if s.name in names]})


def fingerprint(cfg: AgentConfig, names: Collection[str]) -> str:
    """A digest of the named sources' settings: a worker that loads the file again compares it
    with its main process's, so a file edited since the agent loaded it cannot split the two."""
    text = "\n".join(s.model_dump_json() for s in cfg.source if s.name in names)
    return hashlib.sha256(text.encode()).hexdigest()


def _why_local(cfg: AgentConfig, source: Source) -> str | None:
    if not isinstance(source, ModbusSource | OpcUaSource):
        return f"{source.protocol} sources are read where the broker's messages arrive"
    written = {a.tag for a in cfg.control.allow} | {cfg.control.heartbeat.tag}
    if any(t.writable or t.id in written for t in source.tag):
        return "the control path writes to it"
    if isinstance(source, OpcUaSource) and source.conditions.enabled:
        return "its OPC UA conditions feed the alarms"
    own = {t.id for t in source.tag}
    foreign = [t.quality_from.tag for t in source.tag
               if t.quality_from is not None and t.quality_from.tag not in own]  # fmt: skip
    if foreign:
        return f"quality_from names {foreign[0]} of another source"
    return None


def _link_key(source: Source) -> str:
    if isinstance(source, ModbusSource):
        return f"modbus {source.link}"
    return f"{source.protocol} {source.name}"
