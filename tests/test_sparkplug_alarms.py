"""Alarm metrics in the Sparkplug births after a restart: the engine restored its state from the
state file, so the first DBIRTH carries every alarm's state (configured and a server's condition
alike) instead of null metrics that only an event would fill."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from edge_agent import sparkplug
from edge_agent.alarms.engine import AlarmEngine
from edge_agent.config.loader import load_config
from edge_agent.outbox import Outbox
from edge_agent.pipeline import SampleBus
from edge_agent.runtime import build_catalogue
from edge_agent.tagstore import TagStore
from tests.support.services import Mosquitto
from tests.support.sparkplug_harness import GROUP, NODE, ROOT, make_config
from tests.support.sparkplug_host import Host, count

pytestmark = pytest.mark.services

HIGH = "fsf.matte_temp.high"
SERVER = "fsf.matte_temp.matte_temp_low"  # an OPC UA server's condition, known from the file


def saved_state(state_dir: Path) -> None:
    common = {"tag": "fsf.matte_temp", "active_since_ns": 1, "value": 1330.0,
              "shelved_until_ns": None, "shelve_reason": None, "suppressed": False,
              "out_of_service": False}  # fmt: skip
    alarms = {
        HIGH: {**common, "kind": "high", "active": True, "acknowledged": True},
        SERVER: {**common, "kind": "external", "active": True, "acknowledged": False,
                 "priority": 2, "message": "Matte temperature low", "source": "fsf"},
    }  # fmt: skip
    state_dir.mkdir(parents=True)
    body = {"version": 1, "saved_ns": 1, "alarms": alarms}
    (state_dir / "alarms.json").write_text(json.dumps(body), encoding="utf-8")


@pytest.mark.timeout(60)
async def test_first_birth_after_a_restart_carries_the_restored_alarm_states(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    cfg = make_config(mosquitto.port, tmp_path / "state")
    demo = load_config(ROOT / "config" / "demo.toml")
    base = cfg.model_copy(update={"alarm": [a for a in demo.alarm if a.id == HIGH]})
    saved_state(tmp_path / "state")
    outbox = await Outbox.open(tmp_path / "outbox.db", ["mqtt"], synchronous="normal")
    store = TagStore()
    bus = SampleBus(store, outbox)
    engine = AlarmEngine(base, store, bus)
    host = Host(mosquitto.host, mosquitto.port, GROUP, NODE)
    try:
        host.wait_subscribed()
        (service,) = sparkplug.build_services(
            base, outbox, store, build_catalogue(base), alarms=engine
        )
        task = asyncio.create_task(service.run())
        try:
            got = await asyncio.to_thread(
                host.wait_until, "fsf's birth", lambda g: count(g, "DBIRTH", "fsf") >= 1
            )
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        birth = next(s for s in got if s.verb == "DBIRTH" and s.device == "fsf")
        high = "_alarms/fsf/matte_temp/high/"
        assert birth.metric(high + "state").string_value == "active_ack"
        assert birth.metric(high + "active").boolean_value is True
        assert not birth.metric(high + "state").is_null
        server = "_alarms/fsf/matte_temp/matte_temp_low/"
        assert birth.metric(server + "state").string_value == "active_unack"
        assert birth.metric(server + "priority").long_value == 2
    finally:
        host.close()
        await outbox.close()
