"""Acquisition against the simulators over real sockets: the demo plant, server restarts."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest

from edge_agent.acquisition import SourcePoller
from edge_agent.commands.probe import probe_source
from edge_agent.config import AgentConfig, Source
from edge_agent.contracts.samples import Quality
from edge_agent.pipeline import SampleBus
from edge_agent.tagstore import TagStore
from tests.support.plant import PlantSim
from tests.support.plant_shared import module_plant_fixtures
from tests.support.waiting import eventually

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]
DEMO_TOML = Path(__file__).resolve().parent.parent / "config" / "demo.toml"


module_plant, plant_sim = module_plant_fixtures()


def source(cfg: AgentConfig, name: str) -> Source:
    return next(s for s in cfg.source if s.name == name)


async def test_every_demo_tag_reads_good_with_the_right_value_and_type(plant_sim: PlantSim) -> None:
    cfg = plant_sim.agent_config()
    rows = [row for s in cfg.source for row in await probe_source(s, [])]
    values = plant_sim.plant.values
    assert {r.sample.tag for r in rows} == set(cfg.tags())
    for row in rows:
        s = row.sample
        assert s.quality is Quality.GOOD, (s.tag, s.reason)
        expected = values[s.tag]
        if s.tag in ("kiln.feed_total", "kiln.residue_total"):
            expected = expected / 1000  # the PLC counts kg; demo.toml scales to t
        if isinstance(expected, bool):
            assert s.value is expected, s.tag
        elif s.tag == "fsf.agent_heartbeat" or s.tag.endswith("_status"):
            assert s.value == expected, s.tag
            assert type(s.value) is int, s.tag
        else:
            assert isinstance(s.value, int | float), s.tag
            # The plant moves on between our read and this look at it (time scale 60).
            assert s.value == pytest.approx(expected, rel=0.05, abs=0.2), s.tag
        opcua = s.tag.startswith("fsf.")
        assert (s.source_ns is not None) is opcua, s.tag  # Modbus has no source timestamp
    float32 = [t.id for s in cfg.source for t in s.tag if getattr(t, "type", "") == "float32"]
    assert float32  # the Modbus analysers: published with the digits a float32 has
    for row in (r for r in rows if r.sample.tag in float32):
        digits = repr(row.sample.value).split("e")[0].replace("-", "").replace(".", "")
        assert len(digits.strip("0")) <= 9, (row.sample.tag, row.sample.value)


async def test_analyser_status_vetoes_so2_and_o2(plant_sim: PlantSim) -> None:
    src = source(plant_sim.agent_config(), "offgas").model_copy(update={"poll_interval_s": 0.1})
    store = TagStore()
    task = asyncio.create_task(SourcePoller(src, SampleBus(store)).run())
    try:
        await plant_sim.apply("analyser:1")
        await eventually(
            lambda: (s := store.get("offgas.so2_pct")) is not None and not s.good,
            5,
            "offgas.so2_pct not Good",
        )
        assert store.get("offgas.o2_pct").quality is Quality.BAD  # type: ignore[union-attr]
        assert store.get("offgas.flow").quality is Quality.GOOD  # type: ignore[union-attr]
        await plant_sim.apply("clear")
        await eventually(lambda: store.get("offgas.so2_pct").good, 5, "offgas.so2_pct Good again")  # type: ignore[union-attr]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# Last: they stop and start the module's servers.
@pytest.mark.parametrize(
    ("name", "which", "mode"),
    [("fsf", "opcua", "poll"), ("fsf", "opcua", "subscribe"), ("offgas", "modbus", "poll")],
)
async def test_server_restart_is_good_again_within_10_s(
    plant_sim: PlantSim, name: str, which: str, mode: str
) -> None:
    cfg = plant_sim.agent_config()
    update: dict[str, object] = {"poll_interval_s": 0.2}
    if which == "opcua":
        update["mode"] = mode  # subscriptions: the loss must show although nobody polls
    src = source(cfg, name).model_copy(update=update)
    store = TagStore()
    poller = SourcePoller(src, SampleBus(store))
    task = asyncio.create_task(poller.run())
    tags = [t.id for t in src.tag]

    def all_quality(q: Quality) -> bool:
        return all((s := store.get(t)) is not None and s.quality is q for t in tags)

    try:
        await eventually(lambda: all_quality(Quality.GOOD), 10, "every tag Good")
        await plant_sim.drop_connections(which)  # type: ignore[arg-type]
        await plant_sim.opcua.stop() if which == "opcua" else await plant_sim.modbus.stop()
        await eventually(
            lambda: all_quality(Quality.BAD),
            2 * src.poll_interval_s + src.timeout_s,
            "every tag Bad",
        )
        assert store.get(tags[0]).reason == "connection_lost"  # type: ignore[union-attr]
        await asyncio.sleep(2)  # stay down long enough for the backoff to grow
        if which == "opcua":
            plant_sim.opcua.restarts += 1  # the namespace index moves, as on a real restart
            await plant_sim.opcua.start()
        else:
            await plant_sim.modbus.start()
        back = time.monotonic()
        await eventually(lambda: all_quality(Quality.GOOD), 10, "every tag Good")
        recovered_s = time.monotonic() - back
        print(f"{which} recovered in {recovered_s:.2f} s")
        assert recovered_s < 10
        assert poller.stats.connection_losses >= 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_probe_command_lists_the_tags_not_good_on_request(plant_sim: PlantSim) -> None:
    """`edge-agent probe` as an engineer runs it: the summary points at `--not-good`."""
    demo = str(DEMO_TOML)
    sets = [
        "--set", f"source.fsf.endpoint={plant_sim.opcua_endpoint}",
        "--set", f"source.offgas.endpoint={plant_sim.modbus_endpoint}",
        "--set", f"source.kiln.endpoint={plant_sim.modbus_endpoint}",
        "--set", "source.fsf.tag.fsf.slag_temp.node=nsu=urn:smelter:sim;s=fsf.no_such_node",
    ]  # fmt: skip

    async def probe(*extra: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edge_agent.cli", "probe", demo, *sets, *extra,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        return await proc.wait(), out.decode()

    code, everything = await probe()
    assert code == 1
    total = len(plant_sim.agent_config().tags())
    assert everything.splitlines()[-1].startswith(f"{total - 1}/{total} Good in ")
    assert everything.splitlines()[-1].endswith("; --not-good lists only the 1 others")
    code, only = await probe("--not-good")
    assert code == 1
    rows = only.splitlines()
    assert rows[0].split()[:2] == ["tag", "value"]
    assert rows[1].startswith("fsf.slag_temp")
    assert "bad (" in rows[1]
    assert rows[2] == ""
    assert rows[3].startswith(f"{total - 1}/{total} Good in ")
