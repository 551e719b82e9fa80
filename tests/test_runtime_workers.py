"""Acquisition workers (`[agent] acquisition_workers`), whole-agent runs over real parts: the
Modbus simulator over TCP, child processes started from a real config file, a real Mosquitto.

Every sample the sources read (their own counters, mirrored from the workers) is published on
the main process's bus exactly once and reaches the subscriber (at least once: MQTT QoS 1), as
with one process; then the faults: a worker killed, the agent
stopped and killed, settings that cannot run."""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import pytest

from edge_agent import runtime
from edge_agent.config import AgentConfig
from edge_agent.config.origin import ConfigOrigin
from edge_agent.contracts.samples import Sample
from edge_agent.contracts.status import ComponentStatus
from edge_agent.health import health_document
from edge_agent.supervisor import STOP_SINKS
from tests.support.mqtt_subscriber import Subscriber
from tests.support.plant import PlantSim, StartPlant
from tests.support.services import Mosquitto
from tests.support.toml_file import write_toml
from tests.support.waiting import eventually

pytestmark = [pytest.mark.services, pytest.mark.slow]

LOST_REASONS = {"connection_lost", "access_denied", "worker_lost"}
CYCLES = 20  # polls of each source seen Good before the run is stopped


def agent_doc(sim: PlantSim, broker: Mosquitto, state: Path, workers: int) -> dict[str, Any]:
    """The demo's two Modbus sources on two links (kiln behind the RTU-over-TCP gateway port),
    polled every 100 ms, per-tag MQTT layout."""
    sources = sim.modbus_sources_on_two_links()
    return {
        "agent": {
            "site": "w",
            "instance_id": "w1",
            "state_dir": str(state),
            "acquisition_workers": workers,
        },
        "source": sources,
        "outbox": {"synchronous": "normal"},
        "mqtt": {"host": broker.host, "port": broker.port, "topic_root": "wk"},
        "health": {"enabled": False},
    }


def source_statuses(agent: runtime.Agent) -> dict[str, ComponentStatus]:
    return {s.name: s for s in agent.board.statuses() if s.kind == "source"}


def received(sub: Subscriber) -> set[tuple[str, int]]:
    """(tag, ts_ns) of every sample message but the lost-connection ones (QoS 1 may repeat)."""
    out: set[tuple[str, int]] = set()
    for m in sub.snapshot():
        if not m.topic.startswith(("wk/w/offgas/", "wk/w/kiln/")):
            continue  # the agent's status topic and such
        body = json.loads(m.payload)
        if body.get("reason") not in LOST_REASONS:
            out.add((m.topic.removeprefix("wk/w/").replace("/", "."), body["ts_ns"]))
    return out


class Published:
    """A tap on the main process's bus: every sample published there, repeats counted."""

    def __init__(self) -> None:
        self.samples: Counter[tuple[str, int]] = Counter()

    def __call__(self, batch: Sequence[Sample]) -> Sequence[Sample]:
        self.samples.update((s.tag, s.ts_ns) for s in batch if s.reason not in LOST_REASONS)
        return ()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("workers", [0, 2])
async def test_every_sample_read_arrives_once_with_or_without_workers(
    plant_sim_factory: StartPlant, mosquitto: Mosquitto, tmp_path: Path, workers: int
) -> None:
    sim = await plant_sim_factory(serve_opcua=False, modbus_rtu_over_tcp_port=0)
    doc = agent_doc(sim, mosquitto, tmp_path / "state", workers)
    path = write_toml(tmp_path / "agent.toml", doc)
    cfg = AgentConfig.model_validate(doc)
    sub = await asyncio.to_thread(Subscriber, mosquitto.host, mosquitto.port, "wk/#")
    agent = runtime.Agent(cfg, await runtime.open_writer(cfg), ConfigOrigin(path))
    outbox = agent.outbox
    assert outbox is not None
    services = runtime.build_services(agent)
    published = Published()
    agent.bus.add_tap(published)
    names = {s.name for s in services}
    assert ({"worker.0", "worker.1"} <= names) == (workers == 2)
    assert ("source.offgas" in names) == (workers == 0)  # read in a worker, not here
    producers = [asyncio.create_task(s.run()) for s in services if s.stop_order < STOP_SINKS]
    delivery = [asyncio.create_task(s.run()) for s in services if s.stop_order >= STOP_SINKS]
    try:
        await eventually(
            lambda: all(
                s.counters["reads_total"] >= CYCLES and s.healthy
                for s in source_statuses(agent).values()
            ),
            60,
            "both sources read and connected",
        )
        for task in producers:  # acquisition stops first: the workers flush what they read
            task.cancel()
        await asyncio.gather(*producers, return_exceptions=True)
        head = outbox.state.head_id
        await eventually(lambda: all(a >= head for a in outbox.state.acked.values()), 30,
                         "the sink confirmed every batch")  # fmt: skip
        read = sum(s.counters["samples_read_total"] for s in source_statuses(agent).values())
        _, health = health_document(agent.board)  # /healthz: who reads what
        shown = cast(dict[str, dict[str, Any]], health.get("workers", {}))
        assert {name: w["detail"] for name, w in shown.items()} == (
            {"worker.0": "sources kiln", "worker.1": "sources offgas"} if workers else {}
        )
        await eventually(lambda: len(received(sub)) >= read, 30, "all at the subscriber")
        got = received(sub)
    finally:
        for task in delivery:
            task.cancel()
        await asyncio.gather(*delivery, return_exceptions=True)
        await outbox.close()
        sub.close()
    assert read >= 2 * CYCLES * 7
    assert sum(published.samples.values()) == read, "every sample read is published"
    assert max(published.samples.values()) == 1, "none twice"
    assert got == set(published.samples), "and arrives"
    tags = {t["id"] for s in doc["source"] for t in s["tag"]}
    assert {tag for tag, _ in got} == tags
    if workers:  # each worker was its own process, and stopped cleanly when asked
        shards = [s for s in agent.board.statuses() if s.kind == "worker"]
        assert len({s.gauges["pid"] for s in shards} - {0.0, float(os.getpid())}) == 2
        assert [(s.state, s.gauges["exit_code"]) for s in shards] == [("stopped", 0.0)] * 2
