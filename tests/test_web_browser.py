"""The web view in a real headless Chromium, against the simulators and a running agent.

With WEBVIEW_SCREENSHOTS=docs/images the run also writes the screenshots the documentation
shows (docs/operations.md, "Web view"); they are committed once, not on every run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.browser import Browser, shot
from tests.support.plant import PlantSim
from tests.support.services import VictoriaMetrics
from tests.support.web_agent import WebAgent, new_port, web_config

pytestmark = [pytest.mark.slow, pytest.mark.services]


def row(tag: str, cell: str) -> str:
    return f'tr[data-tag="{tag}"] td.{cell}'


async def test_pages_follow_the_plant_live(
    plant_sim: PlantSim, browser: Browser, victoria_metrics: VictoriaMetrics, tmp_path: Path
) -> None:
    """With an InfluxDB sink on a real VictoriaMetrics, whose history the KPI charts draw."""
    influx = {"api": "v1", "url": victoria_metrics.url, "db": "smelter"}
    cfg = web_config(plant_sim, tmp_path, new_port(), influx=influx)
    web = WebAgent(
        cfg.model_copy(update={"web": cfg.web.model_copy(update={"trends": "prometheus"})})
    )
    await web.start()
    try:
        await browser.get(web.url + "/#plant")
        await browser.until(
            "matte temperature shown",
            lambda: _is_number(browser.text(row("fsf.matte_temp", "value"))),
        )
        assert await browser.text("#link-text") == "live"

        # A setpoint changed in the simulator is on screen within 2 s.
        plant_sim.plant.write("fsf.escrap_feed_sp", 23.5)
        await plant_sim.publish()
        await browser.until(
            "new setpoint on screen",
            lambda: _equals(browser.text(row("fsf.escrap_feed_sp", "value")), "23.50"),
            timeout_s=2.0,
        )

        # A sensor failure: the row says Bad, in words, with the OPC UA status as reason.
        await plant_sim.apply("bad:fsf.matte_temp")
        await browser.until(
            "matte temperature Bad",
            lambda: _equals(browser.text(row("fsf.matte_temp", "quality")), "✕Bad"),
        )
        assert "BadSensorFailure" in (await browser.text(row("fsf.matte_temp", "reason")) or "")
        assert (
            await browser.script(
                "return document.querySelector('tr[data-tag=\"fsf.matte_temp\"]').className"
            )
            == "row-bad"
        )
        # ...and the quality filter finds it.
        await browser.script(
            "const s = document.getElementById('plant-quality'); s.value = 'b';"
            "s.dispatchEvent(new Event('change'));"
        )
        await browser.until(
            "only Bad rows listed",
            lambda: _equals(
                browser.script(
                    "return [...document.querySelectorAll('#plant-rows tr')]"
                    ".map(r => r.dataset.tag).includes('fsf.matte_temp')"
                ),
                True,
            ),
        )
        await browser.script(
            "const s = document.getElementById('plant-quality'); s.value = '';"
            "s.dispatchEvent(new Event('change'));"
        )
        await shot(browser, "plant", max_h=1250)

        await browser.get(web.url + "/#advisor")
        await browser.until(
            "the escrap recommendation listed",
            lambda: browser.text('#advisor-setpoints tr[data-tag="kpi.advisor.escrap_feed_sp"]'),
        )
        # The advisor's inputs show the failed sensor as Bad too.
        await browser.until(
            "matte temperature Bad among the inputs",
            lambda: _contains(browser.text('#advisor-inputs tr[data-tag="fsf.matte_temp"]'), "Bad"),
        )
        await shot(browser, "advisor")

        await plant_sim.apply("clear")

        await browser.get(web.url + "/#kpis")
        await browser.until(
            "trajectory drawn",
            lambda: browser.script(
                "const p = document.querySelector('#chart-trajectory path.trajectory');"
                "return p && p.getAttribute('d').split('L').length === 3 &&"
                " document.querySelectorAll('#chart-trajectory .milestone').length === 3;"
            ),
        )
        await browser.until(
            "heat margin trend and reserve band drawn",
            lambda: browser.script(
                "const p = document.querySelector('#chart-margin path.series');"
                "return p && p.getAttribute('d').length > 0 &&"
                " document.querySelector('#chart-margin .band-reserve') !== null;"
            ),
            timeout_s=20,
        )
        await browser.until(
            "fiscal-year ratio on the trajectory chart",
            lambda: browser.script(
                "return document.querySelector('#chart-trajectory .win-fiscal_year') !== null"
            ),
        )
        assert await browser.text("#legend-margin .source") == "from VictoriaMetrics"
        await shot(browser, "kpis", settle_s=60.0)

        await browser.get(web.url + "/#delivery")
        await browser.until(
            "sources listed",
            lambda: browser.text('#delivery-components tr[data-component="source:fsf"]'),
        )
        await browser.until(
            "the InfluxDB sink connected",
            lambda: _contains(
                browser.text('#delivery-components tr[data-component="sink:influx"]'), "connected"
            ),
        )
        await browser.until(
            "configuration shown", lambda: _contains(browser.text("#delivery-config"), '"site"')
        )
        await shot(browser, "delivery")
        assert await browser.console_errors() == []
    finally:
        await web.stop()


async def test_page_reconnects_after_agent_restart(
    plant_sim: PlantSim, browser: Browser, tmp_path: Path
) -> None:
    web = WebAgent(web_config(plant_sim, tmp_path, new_port()))
    await web.start()
    try:
        await browser.get(web.url + "/#plant")
        await browser.until("live", lambda: _equals(browser.text("#link-text"), "live"))
        first = await browser.script("return window.edgeView.meta.started_ms")

        await web.stop()
        await browser.until(
            "the page notices", lambda: _equals(browser.text("#link-text"), "reconnecting…")
        )
        await web.start()
        await browser.until(
            "live again", lambda: _equals(browser.text("#link-text"), "live"), timeout_s=15
        )
        await browser.until(
            "the new agent's catalogue",
            lambda: _differs(browser.script("return window.edgeView.meta.started_ms"), first),
        )
        plant_sim.plant.write("fsf.escrap_feed_sp", 31.25)
        await plant_sim.publish()
        await browser.until(
            "updates flow again",
            lambda: _equals(browser.text(row("fsf.escrap_feed_sp", "value")), "31.25"),
            timeout_s=5,
        )
        # Requests refused while the agent was away (the stream's, and a history fetch that
        # raced the stop) are expected; anything else (a script error, a 500) is not.
        errors = [
            e
            for e in await browser.console_errors()
            if "/api/events" not in e["message"]
            and not (e.get("source") == "network" and "ERR_CONNECTION_REFUSED" in e["message"])
        ]
        assert errors == []
    finally:
        await web.stop()


async def _is_number(text: object) -> bool:
    value = await text  # type: ignore[misc]
    try:
        float(str(value).replace(",", ""))
    except ValueError:
        return False
    return True


async def _equals(got: object, expected: object) -> bool:
    return bool(await got == expected)  # type: ignore[misc]


async def _differs(got: object, other: object) -> bool:
    return bool(await got != other)  # type: ignore[misc]


async def _contains(got: object, part: str) -> bool:
    value = await got  # type: ignore[misc]
    return value is not None and part in value
