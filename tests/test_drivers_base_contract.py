"""The driver contract (drivers/base.py), one suite run against every driver.

In the manner of asyncua's tests, which run one suite against client and server, every test here
runs against each `Rig`: the OPC UA driver polling and subscribing, the Modbus driver on each of
its transports (TCP, RTU over TCP, and RTU and ASCII over socat pseudo-terminals), all against the
simulators over real sockets, and the fake driver the acquisition tests use. What the contract
promises is what acquisition builds on:

- a tag that cannot be read never raises: it is Bad with a reason, and the others stay Good;
- a lost connection raises `DriverConnectionError`, whose `reason` is what the source's tags say
  meanwhile and whose message names where the connection went;
- a write to a tag the source does not have, or to one not configured writable, is refused
  (`WriteRefused`, naming the tag), and the connection carries on;
- closing twice, or closing a driver that never connected, is harmless;
- after an outage, connecting again yields Good samples again; so it does after the server
  closed every session (a restart) while staying up.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
import pytest_asyncio

from drivers.base import Driver, DriverConnectionError, WriteRefused
from drivers.modbus import ModbusDriver
from drivers.opcua import OpcUaDriver
from edge_agent.config import ModbusSource, OpcUaSource
from edge_agent.contracts.samples import Quality, Sample
from tests.support.fake_driver import FakeDevice
from tests.support.plant import MODBUS_TRANSPORTS, PlantSim
from tests.support.plant_shared import module_plant_fixtures

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

module_plant, plant_sim = module_plant_fixtures(serial=True)

# Long enough for a Modbus block to be split down to one bad register (log2 of its tags), for a
# subscription's first notifications to arrive, and for a session to notice its server is gone.
SETTLE_S = 20.0
UNKNOWN_TAG = "no.such.tag"


@dataclass
class Rig:
    """One driver under the contract, and the means to hurt its source."""

    make: Callable[[], Driver]
    where: str  # what a connection error must name: endpoint or serial port
    tags: set[str]  # every tag the driver reads
    bad_tag: str  # a tag `spoil` makes unreadable; also a tag not configured writable
    spoil: Callable[[], Awaitable[None]]
    cut: Callable[[], Awaitable[None]]
    mend: Callable[[], Awaitable[None]]
    drop: Callable[[], Awaitable[None]] | None  # the server closes every session (None: serial)
    drivers: list[Driver] = field(default_factory=list)

    def driver(self) -> Driver:
        driver = self.make()
        self.drivers.append(driver)
        return driver


RIGS = ["opcua_poll", "opcua_subscribe", *(f"modbus_{t}" for t in MODBUS_TRANSPORTS), "fake"]


def opcua_rig(sim: PlantSim, mode: str) -> Rig:
    (fsf,) = [s for s in sim.agent_config().source if s.name == "fsf"]
    source = OpcUaSource.model_validate({**fsf.model_dump(), "mode": mode})
    return Rig(
        make=lambda: OpcUaDriver(source),
        where=sim.opcua_endpoint,
        tags={t.id for t in source.tag},
        bad_tag="fsf.matte_temp",
        spoil=lambda: sim.apply("bad:fsf.matte_temp"),
        cut=lambda: sim.server_down("opcua"),
        mend=lambda: sim.server_up("opcua"),
        drop=lambda: sim.apply("drop:opcua"),
    )


def modbus_rig(sim: PlantSim, transport: str) -> Rig:
    (kiln,) = [s for s in sim.agent_config().source if s.name == "kiln"]
    assert isinstance(kiln, ModbusSource)
    source = sim.modbus_source(kiln, transport)
    serial = transport in ("rtu", "ascii")
    return Rig(
        make=lambda: ModbusDriver(source),
        where=source.serial_port if serial else source.endpoint,  # type: ignore[arg-type]
        tags={t.id for t in source.tag},
        bad_tag="kiln.temp",
        spoil=lambda: sim.apply("illegal_address:kiln.temp"),
        cut=(lambda: sim.unplug(transport)) if serial else lambda: sim.server_down("modbus"),
        mend=(lambda: sim.plug(transport)) if serial else lambda: sim.server_up("modbus"),
        drop=None if serial else lambda: sim.apply("drop:modbus"),
    )


def fake_rig() -> Rig:
    device = FakeDevice({"u.a": 1.0, "u.b": 2, "u.c": True}, writable={"u.b"})

    async def spoil() -> None:
        device.bad["u.a"] = "sensor_failure"

    async def cut() -> None:
        device.down = True

    async def mend() -> None:
        device.down = False

    async def drop() -> None:
        device.drop()

    return Rig(device.driver, device.endpoint, set(device.values), "u.a", spoil, cut, mend, drop)


@pytest_asyncio.fixture(params=RIGS, loop_scope="module")
async def rig(request: pytest.FixtureRequest, plant_sim: PlantSim) -> AsyncIterator[Rig]:
    kind: str = request.param
    if kind == "fake":
        made = fake_rig()
    elif kind.startswith("opcua_"):
        made = opcua_rig(plant_sim, kind.removeprefix("opcua_"))
    else:
        made = modbus_rig(plant_sim, kind.removeprefix("modbus_"))
    cut, mend = made.cut, made.mend
    down = False

    async def tracked_cut() -> None:
        nonlocal down
        down = True
        await cut()

    async def tracked_mend() -> None:
        nonlocal down
        down = False
        await mend()

    made.cut, made.mend = tracked_cut, tracked_mend
    yield made
    for driver in made.drivers:
        await driver.close()
    if down:
        await made.mend()  # the next test needs the source up


async def settled(
    driver: Driver,
    done: Callable[[dict[str, Sample]], bool],
    what: str,
    latest: dict[str, Sample] | None = None,
) -> dict[str, Sample]:
    """Read until the latest sample per tag satisfies `done`; any read that raises fails the test.

    A poll returns every tag, a subscription only what changed, so the picture is built up
    (from `latest`, the picture so far, where given).
    """
    latest = {} if latest is None else latest
    try:
        async with asyncio.timeout(SETTLE_S):
            while True:
                latest.update((s.tag, s) for s in await driver.read())
                if done(latest):
                    return latest
                await asyncio.sleep(0.05)
    except TimeoutError:
        pytest.fail(f"no {what} within {SETTLE_S} s; latest: {describe(latest)}")


def describe(latest: dict[str, Sample]) -> dict[str, str]:
    return {tag: f"{s.quality.value} {s.reason or ''}".strip() for tag, s in sorted(latest.items())}


def all_good(rig: Rig) -> Callable[[dict[str, Sample]], bool]:
    return lambda latest: latest.keys() >= rig.tags and all(latest[t].good for t in rig.tags)


async def raises_connection_lost(driver: Driver) -> DriverConnectionError:
    """Read until the driver notices the loss; reads before that may come back (Bad or from the
    last moments of the session) but never hang and never raise anything else."""
    try:
        async with asyncio.timeout(SETTLE_S):
            while True:
                try:
                    await driver.read()
                except DriverConnectionError as exc:
                    return exc
                await asyncio.sleep(0.05)
    except TimeoutError:
        pytest.fail(f"reads went on for {SETTLE_S} s without a DriverConnectionError")


async def test_a_bad_tag_never_raises_and_is_bad_alone(rig: Rig) -> None:
    driver = rig.driver()
    await driver.connect()
    picture = await settled(driver, all_good(rig), "Good sample of every tag")
    await rig.spoil()

    def bad_alone(latest: dict[str, Sample]) -> bool:
        others = rig.tags - {rig.bad_tag}
        return latest[rig.bad_tag].quality is Quality.BAD and all(latest[t].good for t in others)

    latest = await settled(driver, bad_alone, f"Bad {rig.bad_tag} among Good tags", picture)
    bad = latest[rig.bad_tag]
    assert bad.value is None
    assert bad.reason, "a Bad sample says why"


async def test_connection_loss_raises_the_connection_error_with_its_reason(rig: Rig) -> None:
    driver = rig.driver()
    await driver.connect()
    await settled(driver, all_good(rig), "Good sample of every tag")
    await rig.cut()
    exc = await raises_connection_lost(driver)
    assert exc.reason == "connection_lost"
    assert rig.where in str(exc), f"the error names {rig.where}: {exc}"


async def test_a_write_to_an_unknown_or_not_writable_tag_is_refused(rig: Rig) -> None:
    driver = rig.driver()
    await driver.connect()
    with pytest.raises(WriteRefused, match=UNKNOWN_TAG):
        await driver.write(UNKNOWN_TAG, 1.0)
    with pytest.raises(WriteRefused, match=f"{rig.bad_tag}.*not writable"):
        await driver.write(rig.bad_tag, 1.0)
    # A refusal is the tag's problem, not the connection's: reads go on.
    await settled(driver, all_good(rig), "Good sample of every tag after the refusals")


async def test_closing_twice_or_before_connecting_is_harmless(rig: Rig) -> None:
    await rig.driver().close()
    driver = rig.driver()
    await driver.connect()
    await settled(driver, all_good(rig), "Good sample of every tag")
    await driver.close()
    await driver.close()


async def test_after_an_outage_a_new_connection_yields_good_again(rig: Rig) -> None:
    driver = rig.driver()
    await driver.connect()
    await settled(driver, all_good(rig), "Good sample of every tag")
    await rig.cut()
    await raises_connection_lost(driver)
    await driver.close()
    with pytest.raises(DriverConnectionError):
        await driver.connect()  # the source is still away
    await driver.close()
    await rig.mend()
    await driver.connect()
    await settled(driver, all_good(rig), "Good sample of every tag after the outage")


async def test_sessions_closed_by_the_server_raise_and_a_new_connection_reads_good(
    rig: Rig,
) -> None:
    if rig.drop is None:
        pytest.skip("a serial line has no session for the device to close")
    driver = rig.driver()
    await driver.connect()
    await settled(driver, all_good(rig), "Good sample of every tag")
    await rig.drop()
    exc = await raises_connection_lost(driver)
    assert (exc.reason, rig.where in str(exc)) == ("connection_lost", True), str(exc)
    await driver.close()
    await driver.connect()
    await settled(driver, all_good(rig), "Good sample of every tag after the drop")
