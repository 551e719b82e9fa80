"""The guarded control path: the only way the agent writes to the plant.

    control = ControlPath(cfg, store, acquisition)   # acquisition routes writes to the sources
    services = control.services()                    # follower, heartbeat, MQTT commands
    await control.command(tag, value, ts_ns, request_id)   # Sparkplug DCMD

Nothing here writes in `advisory` mode (the default); the heartbeat then stays off too unless
switched on. See docs/control.md for what may be written, when, and how the DCS takes part.
"""

from __future__ import annotations

from edge_agent.config import AgentConfig
from edge_agent.contracts.status import ComponentStatus, StatusRegistry
from edge_agent.control.audit import AUDIT_FILE, AuditLog, AuditRecord
from edge_agent.control.commands import CommandHandler, CommandService, CommandTopics
from edge_agent.control.executor import Executor, Outcome, TagWriter
from edge_agent.control.follower import AdvisorFollower
from edge_agent.control.freshness import acquisition_health, advisor_health, all_of
from edge_agent.control.guard import Decision, Guard, Origin, Refusal, WriteRequest
from edge_agent.control.heartbeat import Heartbeat
from edge_agent.supervisor import STOP_ACQUISITION, Service
from edge_agent.tagstore import TagStore

__all__ = [
    "AuditLog",
    "AuditRecord",
    "ControlPath",
    "Decision",
    "Guard",
    "Origin",
    "Outcome",
    "Refusal",
    "TagWriter",
    "WriteRequest",
    "build_services",
]


# Control stops before acquisition: no write starts while the agent's view of the plant goes away,
# and the heartbeat stops before the data that vouches for it does.
STOP_FIRST = STOP_ACQUISITION - 10


class ControlPath:
    """Everything of the control path for one configuration, wired together."""

    def __init__(
        self,
        cfg: AgentConfig,
        store: TagStore,
        writer: TagWriter,
        board: StatusRegistry | None = None,
    ) -> None:
        section = cfg.control
        self.cfg = cfg
        tags = cfg.tags()
        self.acquisition_health = acquisition = acquisition_health(cfg, store)
        self.audit = AuditLog(cfg.agent.state_dir / AUDIT_FILE)
        self.guard = Guard(
            section,
            store,
            all_of(acquisition, self.audit.health),
            {t.id: t.max_age_s for t in tags.values()},
        )
        self.executor = Executor(
            self.guard,
            store,
            self.audit,
            writer,
            write_timeout_s=section.write_timeout_s,
            readback_timeout_s=section.readback_timeout_s,
        )
        root = cfg.mqtt.topic_root if cfg.mqtt is not None else "plant"
        self.topics = CommandTopics(root, cfg.agent.site)
        self.commands = CommandHandler(section, self.topics, self.executor)
        self.follower = AdvisorFollower(
            section, store, self.executor, recommendation_max_age_s=3 * cfg.kpi.interval_s
        )
        hb_tag = tags.get(section.heartbeat.tag)
        self.heartbeat: Heartbeat | None = None
        if section.heartbeat_on and hb_tag is not None:
            wrap_at = int(hb_tag.max) if hb_tag.max is not None else 2**31 - 1
            self.heartbeat = Heartbeat(
                hb_tag.id,
                section.heartbeat.interval_s,
                wrap_at,
                writer,
                all_of(acquisition, advisor_health(cfg, store)),
            )
        self.command_service: CommandService | None = None
        if cfg.mqtt is not None and section.commands:
            self.command_service = CommandService(
                cfg.mqtt,
                f"{cfg.agent.instance_id}-control",
                self.commands,
                self.audit,
                f"{root}/{cfg.agent.site}/_agent/{cfg.agent.instance_id}/audit",
            )
        self._counts = {"written": 0, "refused": 0, "failed": 0}
        self.audit.add_listener(self._count)
        if board is not None:
            board.add(self)

    def services(self) -> list[Service]:
        """The follower only in closed loop (in advisory mode it would only collect refusals),
        the heartbeat when switched on, the command subscriber when [mqtt] is configured."""
        out: list[Service] = []
        if self.cfg.control.mode == "closed_loop" and self.follower.entries:
            out.append(Service("control.follower", self.follower.run, STOP_FIRST))
        if self.heartbeat is not None:
            out.append(Service("control.heartbeat", self.heartbeat.run, STOP_FIRST))
        if self.command_service is not None:
            out.append(Service("control.commands", self.command_service.run, STOP_FIRST))
        return out

    async def command(
        self, tag: str, value: object, ts_ns: int | None, request_id: str | None
    ) -> Outcome:
        """The Sparkplug DCMD entry point: a SCADA write, judged and audited like any other."""
        return await self.commands.dcmd(tag, value, ts_ns, request_id)

    def _count(self, record: AuditRecord) -> None:
        self._counts[record.result] += 1

    def status(self) -> ComponentStatus:
        """For the health board: refusals are the guard working, not the agent failing."""
        heartbeat = self.heartbeat is not None and self.heartbeat.beating
        return ComponentStatus(
            name="control",
            kind="control",
            state=self.cfg.control.mode,
            healthy=True,
            detail=f"heartbeat {'beating' if heartbeat else 'off'}",
            watched=False,
            counters={
                "writes_total": self._counts["written"],
                "writes_refused_total": self._counts["refused"],
                "writes_failed_total": self._counts["failed"],
            },
        )
