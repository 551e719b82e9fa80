"""An agent with the web view, on the test's loop, pointed at a simulated plant: start, stop and
start again on the same port (what a browser sees as an agent restart)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any
from urllib.error import HTTPError
from urllib.request import Request, urlopen

from edge_agent.config import AgentConfig
from edge_agent.runtime import Agent, run_agent
from simulators.simulation import free_port
from tests.support.plant import PlantSim
from tests.support.waiting import eventually


def web_config(sim: PlantSim, state_dir: Path, port: int, **sections: Any) -> AgentConfig:
    """The demo configuration without sinks (nothing to deliver to), the fsf source polled
    every 0.5 s, a short history ring in 2 s buckets so that charts fill within a test."""
    doc = sim.agent_config_dict()
    doc.pop("mqtt", None)
    doc.pop("influx", None)
    doc["agent"] = {**doc.get("agent", {}), "state_dir": str(state_dir)}
    doc["health"] = {"listen": f"127.0.0.1:{port}"}
    doc["web"] = {"history_s": 240, "history_step_s": 2}
    doc["control"] = {**doc.get("control", {}), "commands": False}
    for source in doc["source"]:
        source["poll_interval_s"] = 0.5
    doc.update(sections)
    return AgentConfig.model_validate(doc)


class WebAgent:
    """`run_agent` as a task; `agent` is the running Agent (its TagStore, its board)."""

    def __init__(self, cfg: AgentConfig) -> None:
        self.cfg = cfg
        self.port = int(cfg.health.listen.rpartition(":")[2])
        self.url = f"http://127.0.0.1:{self.port}"
        self.agent: Agent | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[int] | None = None

    async def start(self) -> None:
        self._stop = asyncio.Event()
        self.agent = None
        started: list[Agent] = []
        self._task = asyncio.create_task(
            run_agent(self.cfg, stop=self._stop, on_started=started.append)
        )
        await eventually(lambda: started, 20, "the agent to start")
        self.agent = started[0]
        await eventually(self._answers, 20, "the health listener to answer")

    async def _answers(self) -> bool:
        code, _ = await http_get(self.url + "/healthz")
        return code in (200, 503)

    async def stop(self) -> None:
        if self._task is not None:
            self._stop.set()
            await self._task
            self._task = None


async def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """(status, body) of a GET on loopback; (0, "") when nothing answers."""

    def fetch() -> tuple[int, str]:
        try:
            with urlopen(Request(url, headers=headers or {}), timeout=5) as resp:
                return int(resp.status), resp.read().decode()
        except HTTPError as err:
            return err.code, err.read().decode()
        except OSError:
            return 0, ""

    return await asyncio.to_thread(fetch)


async def get_json(url: str) -> Any:
    code, body = await http_get(url)
    assert code == 200, f"{url}: {code} {body[:200]}"
    return json.loads(body)


def new_port() -> int:
    return free_port()
