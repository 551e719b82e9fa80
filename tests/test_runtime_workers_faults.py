"""Acquisition workers under the faults a plant PC sees: a worker killed (its tags Bad
`worker_lost` at once, restarted with backoff, Good again, counters carried on), the agent
stopped with SIGTERM (workers stop cleanly, none left behind), the agent killed with SIGKILL
(the workers notice and exit: no orphan), a worker handed a file that disagrees with its agent."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from edge_agent.config import AgentConfig
from edge_agent.config.origin import ConfigOrigin
from edge_agent.contracts.link_frames import encode_frame
from edge_agent.contracts.samples import Quality
from edge_agent.runtime import EXIT_OK, Agent, run_agent
from tests.support.plant import PlantSim, StartPlant
from tests.support.toml_file import write_toml
from tests.support.waiting import eventually

pytestmark = [pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent


def agent_doc(sim: PlantSim, state: Path) -> dict[str, Any]:
    """The demo's two Modbus sources on two links, two workers, no sink (nothing to deliver)."""
    sources = sim.modbus_sources_on_two_links()
    return {
        "agent": {"state_dir": str(state), "acquisition_workers": 2, "log_format": "json"},
        "source": sources,
        "health": {"enabled": False},
    }


def worker(agent: Agent, source: str) -> dict[str, float]:
    [status] = [s for s in agent.board.statuses() if s.kind == "worker" and source in s.detail]
    return {"state_running": float(status.state == "running"), **status.gauges, **status.counters}


def source_counter(agent: Agent, source: str, key: str) -> float:
    [status] = [s for s in agent.board.statuses() if s.kind == "source" and s.name == source]
    return status.counters[key]


def alive(pid: int) -> bool:
    """Running (a zombie, dead but not yet reaped by whoever inherited it, is not)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return text.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.timeout(120)
async def test_a_killed_worker_makes_its_tags_bad_and_comes_back(
    plant_sim_factory: StartPlant, tmp_path: Path
) -> None:
    sim = await plant_sim_factory(serve_opcua=False, modbus_rtu_over_tcp_port=0)
    doc = agent_doc(sim, tmp_path / "state")
    path = write_toml(tmp_path / "agent.toml", doc)
    started: list[Agent] = []
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_agent(
            AgentConfig.model_validate(doc),
            stop=stop,
            on_started=started.append,
            origin=ConfigOrigin(path),
        )
    )
    try:
        await eventually(lambda: started, 30, "the agent started")
        agent = started[0]
        kiln = [t["id"] for s in doc["source"] if s["name"] == "kiln" for t in s["tag"]]
        offgas = [t["id"] for s in doc["source"] if s["name"] == "offgas" for t in s["tag"]]

        def quality(tag: str) -> Quality | None:
            sample = agent.store.get(tag)
            return None if sample is None else sample.quality

        await eventually(lambda: all(quality(t) is Quality.GOOD for t in kiln), 60, "kiln Good")
        await eventually(lambda: source_counter(agent, "kiln", "reads_total") >= 5, 30, "reads")
        before = worker(agent, "kiln")
        reads_before = source_counter(agent, "kiln", "reads_total")
        os.kill(int(before["pid"]), signal.SIGKILL)

        def lost() -> bool:
            samples = [agent.store.get(t) for t in kiln]
            return all(s is not None and s.reason == "worker_lost" for s in samples)

        await eventually(lost, 30, "every kiln tag Bad worker_lost")
        assert all(agent.store.get(t).quality is Quality.BAD for t in kiln)  # type: ignore[union-attr]
        # The other worker's tags carry on.
        assert not [t for t in offgas if agent.store.get(t).reason == "worker_lost"]  # type: ignore[union-attr]
        # At least one restart: under load a restarted worker may itself fail once and restart.
        await eventually(lambda: worker(agent, "kiln")["starts_total"] >= 2, 30, "restarted")
        await eventually(lambda: all(quality(t) is Quality.GOOD for t in kiln), 60, "Good again")
        after = worker(agent, "kiln")
        assert after["pid"] != before["pid"]
        assert after["state_running"] == 1.0
        assert not alive(int(before["pid"]))
        # Counters carry on from the lost worker's, and its loss is counted.
        await eventually(
            lambda: source_counter(agent, "kiln", "reads_total") > reads_before, 30, "counted on"
        )
        assert source_counter(agent, "kiln", "connection_losses_total") >= 1
    finally:
        stop.set()
        code = await task
    assert code == EXIT_OK


async def start_agent(
    doc: dict[str, Any], tmp_path: Path, *options: str
) -> asyncio.subprocess.Process:
    path = write_toml(tmp_path / "agent.toml", doc)
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge_agent.cli", "run", "--config", str(path), "--force", *options,
        stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL, cwd=ROOT,
    )  # fmt: skip


async def events(proc: asyncio.subprocess.Process, found: list[dict[str, Any]]) -> None:
    """Collect the agent's JSON log lines (its workers' included: they share its stderr)."""
    assert proc.stderr is not None
    async for line in proc.stderr:
        try:
            found.append(json.loads(line))
        except ValueError:
            found.append({"event": "text", "line": line.decode(errors="replace")})


def worker_pids(found: list[dict[str, Any]]) -> set[int]:
    """From the main process's `worker_started` lines (the ones with `tags`)."""
    return {e["pid"] for e in found if e.get("event") == "worker_started" and "tags" in e}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
async def test_stopping_or_killing_the_agent_leaves_no_worker_behind(
    plant_sim_factory: StartPlant, tmp_path: Path, how: signal.Signals
) -> None:
    sim = await plant_sim_factory(serve_opcua=False, modbus_rtu_over_tcp_port=0)
    doc = agent_doc(sim, tmp_path / "state")
    doc["agent"]["acquisition_workers"] = 0  # the workers come from --set: they get it too
    proc = await start_agent(doc, tmp_path, "--set", "agent.acquisition_workers=2")
    found: list[dict[str, Any]] = []
    reader = asyncio.create_task(events(proc, found))
    try:
        await eventually(
            lambda: sum(e.get("event") == "source_connected" for e in found) >= 2, 60,
            "both workers connected",
        )  # fmt: skip
        pids = worker_pids(found)
        assert len(pids) == 2
        assert proc.pid not in pids
        proc.send_signal(how)
        code = await asyncio.wait_for(proc.wait(), 60)
        await eventually(lambda: not any(alive(p) for p in pids), 30, "no worker left running")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await asyncio.wait_for(reader, 30)
    if how == signal.SIGTERM:  # a clean stop: each worker handed on what it read and exited 0
        assert code == EXIT_OK
        stopped = [e for e in found if e.get("event") == "worker_stopped"]
        assert sorted((e["pid"], e["exit_code"]) for e in stopped) == sorted((p, 0) for p in pids)
        assert not [e for e in found if e.get("event") in ("worker_lost", "worker_stop_timeout")]
    else:
        assert code == -signal.SIGKILL


@pytest.mark.timeout(60)
async def test_a_worker_refuses_a_file_that_disagrees_with_its_agent(tmp_path: Path) -> None:
    doc = {
        "agent": {"state_dir": str(tmp_path / "state"), "acquisition_workers": 1},
        "source": [{"name": "d0", "protocol": "modbus", "endpoint": "tcp://127.0.0.1:1",
                    "tag": [{"id": "d0.t0", "unit_id": 1, "table": "holding", "address": 0,
                             "type": "float32"}]}],
    }  # fmt: skip
    path = write_toml(tmp_path / "agent.toml", doc)
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge_agent.workers.child", "--config", str(path), "--worker", "0",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    # The agent loaded d0 with other settings than the file now has (its digest differs).
    start = encode_frame("start", ((), ("d0",), None, "0" * 64))
    out, err = await asyncio.wait_for(child.communicate(start), 30)
    assert child.returncode == 2
    assert out == b""  # nothing but frames ever goes to the link, and no frame was due
    message = err.decode()
    assert f"{path}: acquisition worker 0 was asked to read d0, but the file now says" in message
    assert "reload the agent" in message


@pytest.mark.timeout(120)
async def test_a_reload_restarts_the_workers_on_the_new_file(
    plant_sim_factory: StartPlant, tmp_path: Path
) -> None:
    sim = await plant_sim_factory(serve_opcua=False, modbus_rtu_over_tcp_port=0)
    doc = agent_doc(sim, tmp_path / "state")
    doc["agent"]["acquisition_workers"] = 1
    proc = await start_agent(doc, tmp_path)
    found: list[dict[str, Any]] = []
    reader = asyncio.create_task(events(proc, found))
    try:
        # Once the worker has loaded the file (it reads it itself: an edit before that is one
        # it refuses, as it should, until the agent reloads).
        await eventually(
            lambda: sum(e.get("event") == "source_connected" for e in found) >= 2, 60,
            "the one worker reading both sources",
        )  # fmt: skip
        [first] = worker_pids(found)
        doc["agent"]["acquisition_workers"] = 2
        write_toml(tmp_path / "agent.toml", doc)
        proc.send_signal(signal.SIGHUP)
        await eventually(lambda: len(worker_pids(found)) == 3, 60, "two new workers")
        await eventually(
            lambda: sum(e.get("event") == "source_connected" for e in found) >= 4, 60,
            "both sources read again",
        )  # fmt: skip
        stopped = [(e["pid"], e["exit_code"]) for e in found if e.get("event") == "worker_stopped"]
        assert stopped == [(first, 0)]  # the old worker stopped cleanly, before the new ones
        assert not alive(first)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 60) == EXIT_OK
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await asyncio.wait_for(reader, 30)
