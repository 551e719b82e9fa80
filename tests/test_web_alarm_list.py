"""The web view's Alarms page in a real headless Chromium, against the simulators and a running
agent: a server's condition appears as active and unacknowledged with its priority, an
acknowledgement and a shelf move it where an operator expects, and the history lists each
event."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.alarms import State
from tests.support.browser import Browser, shot
from tests.support.plant import PlantSim
from tests.support.web_agent import WebAgent, get_json, new_port, web_config

pytestmark = [pytest.mark.slow, pytest.mark.services]

LOW = "fsf.matte_temp.matte_temp_low"  # the simulator's own MatteTempLow condition


def cell(table: str, alarm: str, css: str = "") -> str:
    return f'#{table} tr[data-alarm="{alarm}"] {css}'.strip()


@pytest.mark.timeout(120)
async def test_alarm_page_lists_active_shelved_and_history(
    plant_sim: PlantSim, browser: Browser, tmp_path: Path
) -> None:
    web = WebAgent(web_config(plant_sim, tmp_path, new_port()))  # the demo's alarms
    await web.start()
    try:
        assert web.agent is not None
        engine = web.agent.alarms
        assert engine is not None
        await browser.get(web.url + "/#alarms")
        await browser.until(
            "the page drawn, nothing active",
            lambda: _equals(browser.text("#alarms-active td.empty"), "No active alarm."),
        )

        await plant_sim.apply("spike:fsf.matte_temp=1170")
        await browser.until(
            "the server's condition listed as active",
            lambda: _contains(browser.text(cell("alarms-active", LOW, ".state")), "unacknowledged"),
            timeout_s=20,
        )
        assert await browser.text(cell("alarms-active", LOW, ".prio")) == "high"
        message = await browser.text(cell("alarms-active", LOW, ".message"))
        assert message is not None
        assert message.startswith("Matte temperature low")
        assert await browser.text("#alarm-count") != ""  # the tab shows how many

        await engine.act("ack", LOW, "op.anna", "tapping")  # the operator-command path
        await browser.until(
            "acknowledged on screen",
            lambda: _equals(
                browser.text(cell("alarms-active", LOW, ".state")), "●Active, acknowledged"
            ),
        )
        await engine.act("shelve", LOW, "op.anna", "thermocouple check", 600.0)
        await browser.until(
            "moved to the shelved list with its reason",
            lambda: _equals(
                browser.text(cell("alarms-removed", LOW, ".reason")), "thermocouple check"
            ),
        )
        assert await browser.text(cell("alarms-active", LOW)) is None

        await plant_sim.apply("spike:fsf.matte_temp=1100")  # and the low-low condition: urgent
        low_low = "fsf.matte_temp.matte_temp_low_low"
        await browser.until(
            "the low-low condition listed as urgent",
            lambda: _equals(browser.text(cell("alarms-active", low_low, ".prio")), "urgent"),
            timeout_s=20,
        )
        await shot(browser, "alarms")
        assert engine.alarms.status(LOW).state is State.SHELVED

        transitions = await browser.script(
            "return [...document.querySelectorAll('#alarms-history tr[data-event]')]"
            f".filter(r => r.dataset.event === '{LOW}').map(r => r.dataset.transition)"
        )
        assert transitions == ["shelved", "acknowledged", "activated"]  # newest first
        doc = await get_json(web.url + "/api/alarms")
        assert [a["id"] for a in doc["removed"]] == [LOW]
        assert doc["removed"][0]["shelve_reason"] == "thermocouple check"
        assert not await browser.console_errors()
    finally:
        await web.stop()


async def _equals(text: object, want: str) -> bool:
    return bool(await text == want)  # type: ignore[misc]


async def _contains(text: object, part: str) -> bool:
    got = await text  # type: ignore[misc]
    return isinstance(got, str) and part in got
