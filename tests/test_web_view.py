"""The web view's taps on the bus: every sample feeds the history, the advisor's tags alone feed
its change log, and a source without them skips that tap."""

from __future__ import annotations

from pathlib import Path

from edge_agent.config import AgentConfig
from edge_agent.contracts.samples import Quality, Sample
from edge_agent.pipeline import SampleBus
from edge_agent.status_board import StatusBoard
from edge_agent.tagstore import TagStore
from edge_agent.web import WebView
from edge_agent.web.history import ChangeLog

S = 1_000_000_000
T0 = 1_800_000_000 * S


async def test_history_takes_every_batch_the_change_log_only_the_advisors(tmp_path: Path) -> None:
    cfg = AgentConfig.model_validate({"agent": {"state_dir": str(tmp_path)}})
    store = TagStore()
    view = WebView(cfg, store, StatusBoard(store))
    view.changes = ChangeLog(["kpi.advisor.reason"])  # as with an advisor configured
    bus = SampleBus(store)
    view.subscribe(bus)
    source = frozenset({"fsf.matte_temp"})
    await bus.publish([Sample("fsf.matte_temp", 1250.0, Quality.GOOD, T0)], source)
    await bus.publish([Sample("kpi.advisor.reason", "steady", Quality.GOOD, T0)])  # the KPIs
    assert view.ring.series("fsf.matte_temp", T0)[-1] == 1250.0
    assert [(c.tag, c.value) for c in view.changes.entries] == [("kpi.advisor.reason", "steady")]
