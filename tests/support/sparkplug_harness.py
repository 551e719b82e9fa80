"""Runs a Sparkplug edge node in-process against a test broker, fed through the real bus and
outbox (the tests that kill the agent run `edge-agent run` itself)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_agent.config import AgentConfig, MqttSection, SparkplugSection
from edge_agent.config.loader import load_config
from edge_agent.contracts.samples import Quality, Sample, Value, now_ns
from edge_agent.outbox import Outbox
from edge_agent.pipeline import SampleBus
from edge_agent.runtime import build_catalogue
from edge_agent.sparkplug.bdseq import BdSeqStore
from edge_agent.sparkplug.dcmd import DcmdHandler
from edge_agent.sparkplug.service import SparkplugEdgeNode
from edge_agent.sparkplug.sink import node_catalogue
from edge_agent.tagstore import TagStore

ROOT = Path(__file__).resolve().parents[2]
GROUP, NODE = "smelter", "edge-01"


def make_config(port: int, state_dir: Path, **mqtt: Any) -> AgentConfig:
    base = load_config(ROOT / "config" / "demo.toml")
    sparkplug = SparkplugSection(
        group_id=GROUP, edge_node_id=NODE, primary_host_id=mqtt.pop("primary_host_id", None)
    )
    section = MqttSection(
        host="127.0.0.1", port=port, format="sparkplug_b", protocol=mqtt.pop("protocol", "5"),
        keepalive_s=5, reconnect_min_s=1, reconnect_max_s=1, sparkplug=sparkplug, **mqtt,
    )  # fmt: skip
    agent = base.agent.model_copy(update={"state_dir": state_dir})
    # The demo's alarms would add their metrics to the births these tests count (their own
    # Sparkplug test is in test_alarms_outputs.py).
    return base.model_copy(update={"mqtt": section, "agent": agent, "alarm": []})


@dataclass
class Running:
    edge: SparkplugEdgeNode
    bus: SampleBus
    store: TagStore
    outbox: Outbox
    cfg: AgentConfig
    task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.edge.run())

    async def publish(self, values: dict[str, Value | None]) -> None:
        """One batch through the real bus: tag store and outbox. None means a Bad sample."""
        t = now_ns()
        samples = [
            Sample(tag, v, Quality.GOOD, t, t) if v is not None else Sample.bad(tag, "lost", t)
            for tag, v in values.items()
        ]
        await self.bus.publish(samples)


@asynccontextmanager
async def running_edge(
    port: int, tmp_path: Path, dcmd: DcmdHandler | None = None, start: bool = True, **mqtt: Any
) -> AsyncIterator[Running]:
    cfg = make_config(port, tmp_path / "state", **mqtt)
    outbox = await Outbox.open(tmp_path / "outbox.db", ["mqtt"], synchronous="normal")
    store = TagStore()
    bus = SampleBus(store, outbox)
    assert cfg.mqtt is not None
    edge = SparkplugEdgeNode(
        cfg.mqtt,
        edge_node_id=NODE,
        bdseq=BdSeqStore(cfg.agent.state_dir / "sparkplug" / "bdseq"),
        catalogue=node_catalogue(cfg, build_catalogue(cfg)),
        cursor=outbox.cursor("mqtt"),
        current=store.snapshot,
        dcmd=dcmd,
    )
    running = Running(edge, bus, store, outbox, cfg)
    if start:
        running.start()
    try:
        yield running
    finally:
        if running.task is not None:
            running.task.cancel()
            await asyncio.gather(running.task, return_exceptions=True)
        await outbox.close()
