"""Acquisition worker processes: `[agent] acquisition_workers = k` spreads the sources that can
move over k child processes (docs/operations.md, "Acquisition workers").

    workers = Workers(cfg, origin, bus, board)
    acquisition.Acquisition(workers.local_config, bus, board=board)   # what stays here
    services += workers.services()                                    # one per worker

`plan.py` decides who reads what, `process.py` is the main process's side of one worker,
`child.py` the worker itself; the frames between them are `edge_agent/contracts/link_frames.py`.
"""

from __future__ import annotations

import structlog

from edge_agent.config import AgentConfig
from edge_agent.config.origin import ConfigOrigin
from edge_agent.contracts.status import StatusRegistry
from edge_agent.pipeline import SampleBus
from edge_agent.supervisor import Service
from edge_agent.workers.plan import ShardPlan, narrowed, plan_shards
from edge_agent.workers.process import WORKER_LOST, WorkerProcess, build

log = structlog.get_logger(__name__)


class Workers:
    """The plan of one configuration and a `WorkerProcess` per shard of it."""

    def __init__(
        self,
        cfg: AgentConfig,
        origin: ConfigOrigin | None,
        bus: SampleBus,
        board: StatusRegistry | None = None,
    ) -> None:
        self.plan = plan_shards(cfg)
        self.local_config = narrowed(cfg, self.plan.local) if self.plan.shards else cfg
        self.processes: list[WorkerProcess] = []
        if not cfg.agent.acquisition_workers:
            return
        log.info("acquisition_plan", **self.plan.as_log())
        if self.plan.unused:
            log.warning(
                "acquisition_workers_unused",
                acquisition_workers=cfg.agent.acquisition_workers,
                started=len(self.plan.shards),
                reason="fewer sources (or Modbus links) that can move than workers",
            )
        if self.plan.shards and origin is None:
            raise RuntimeError(
                f"agent.acquisition_workers = {cfg.agent.acquisition_workers} needs the agent "
                "started from a file (edge-agent run --config FILE): each worker loads it"
            )
        if origin is not None:
            self.processes = build(self.plan.shards, cfg, origin, bus, board)

    def services(self) -> list[Service]:
        return [p.service() for p in self.processes]


__all__ = ["WORKER_LOST", "ShardPlan", "WorkerProcess", "Workers", "plan_shards"]
