"""The `mqtt.format = "sparkplug_b"` sink as the runtime builds it: the edge node's metrics and
its one supervised service."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge_agent.config import AgentConfig
from edge_agent.contracts.catalogue import TagCatalogue
from edge_agent.contracts.samples import Sample, now_ns
from edge_agent.contracts.status import StatusRegistry
from edge_agent.outbox import Outbox
from edge_agent.sinks.state import SinkState
from edge_agent.sparkplug import alarms as alarm_metrics
from edge_agent.sparkplug.bdseq import BdSeqStore
from edge_agent.sparkplug.catalogue import Catalogue
from edge_agent.sparkplug.dcmd import ControlEntry
from edge_agent.sparkplug.service import SINK_NAME, SparkplugEdgeNode
from edge_agent.supervisor import STOP_SINKS, Service
from edge_agent.tagstore import TagStore

if TYPE_CHECKING:
    from edge_agent.alarms.engine import AlarmEngine


def node_catalogue(
    cfg: AgentConfig, tags: TagCatalogue, alarms: AlarmEngine | None = None
) -> Catalogue:
    """The node's metrics: every tag of the runtime's catalogue, and the alarms' state metrics,
    configured and restored (declared in the births: a host knows them before any event)."""
    known = [(a.id, a.tag) for a in cfg.alarm if a.enabled]
    if alarms is not None:
        known += [(st.defn.id, st.defn.tag) for st in alarms.alarms.statuses()]
    return Catalogue([*tags, *alarm_metrics.metric_tags(dict(known).items())])


def build_services(
    cfg: AgentConfig,
    outbox: Outbox | None,
    store: TagStore,
    catalogue: TagCatalogue,
    control: ControlEntry | None = None,
    board: StatusRegistry | None = None,
    alarms: AlarmEngine | None = None,
) -> list[Service]:
    """The `mqtt.format = "sparkplug_b"` sink: the edge node reading the outbox's `mqtt` cursor
    (the JSON sink's, which it replaces), its DCMDs going to the control path."""
    if cfg.mqtt is None or cfg.mqtt.format != "sparkplug_b" or outbox is None:
        return []
    mqtt = cfg.mqtt
    cursor = outbox.cursor(SINK_NAME)
    state = SinkState(SINK_NAME, cursor=cursor)
    if board is not None:
        board.add(state)
    node_id = mqtt.sparkplug.edge_node_id or cfg.agent.instance_id
    bdseq_file = f"{mqtt.sparkplug.group_id}.{node_id}.bdseq"
    bdseq = BdSeqStore(cfg.agent.state_dir / "sparkplug" / bdseq_file)
    dcmd = control.command if control is not None else None

    def current() -> dict[str, Sample]:  # the alarms' restored state too: a birth without nulls
        statuses = alarms.alarms.statuses() if alarms is not None else ()
        return {**store.snapshot(), **alarm_metrics.status_samples(statuses, now_ns())}

    async def run() -> None:
        password = mqtt.password.resolve() if mqtt.password is not None else None
        edge = SparkplugEdgeNode(
            mqtt, edge_node_id=node_id, bdseq=bdseq, catalogue=node_catalogue(cfg, catalogue,
            alarms), cursor=cursor, current=current, dcmd=dcmd, password=password, state=state,
        )  # fmt: skip
        await edge.run()

    return [Service(f"sink:{SINK_NAME}", run, STOP_SINKS)]
