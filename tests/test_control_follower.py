"""The advisor follower: writes what the advisor recommends, through the guard, and stays quiet
while nothing changes."""

from __future__ import annotations

from pathlib import Path

from edge_agent.contracts.samples import Quality, Sample, now_ns
from edge_agent.control import ControlPath
from edge_agent.tagstore import TagStore
from tests.support.fake_plant import RecordingDriver, config, good, plant_store

REC = "kpi.advisor.fuel_flow_sp"


def build(tmp_path: Path) -> tuple[ControlPath, RecordingDriver, TagStore]:
    store = plant_store()
    driver = RecordingDriver(store)
    path = ControlPath(config(tmp_path, heartbeat={"enabled": False}), store, driver)
    return path, driver, store


async def test_nothing_to_follow_until_the_advisor_speaks(tmp_path: Path) -> None:
    path, driver, _ = build(tmp_path)
    await path.follower.cycle()
    assert driver.writes == []
    assert path.audit.read() == []


async def test_follows_a_valid_recommendation_clamped_to_the_ramp(tmp_path: Path) -> None:
    path, driver, store = build(tmp_path)
    store.update([good(REC, 800.0)])
    await path.follower.cycle()
    assert driver.writes == [("fsf.fuel_flow_sp", 600.0)]  # 500 + 100/min
    line = path.audit.read()[-1]
    assert (line["origin"], line["requested"], line["written"]) == ("advisor", 800.0, 600.0)


async def test_a_setpoint_already_there_is_not_written_again(tmp_path: Path) -> None:
    path, driver, store = build(tmp_path)
    store.update([good(REC, 500.0)])  # the present setpoint
    await path.follower.cycle()
    assert driver.writes == []
    assert path.audit.read() == []


async def test_a_hold_is_audited_once_not_every_cycle(tmp_path: Path) -> None:
    path, driver, store = build(tmp_path)
    hold = Sample(REC, None, Quality.BAD, now_ns(), reason="hold: feed not steady")
    store.update([hold])
    for _ in range(3):
        await path.follower.cycle()
    assert driver.writes == []
    assert [line["reason"] for line in path.audit.read()] == ["recommendation_not_valid"]
