"""The read-only JSON API against a running agent and a still simulated plant: it says what the
TagStore and /healthz hold."""

from __future__ import annotations

import json
from pathlib import Path

from edge_agent.contracts.samples import Quality
from edge_agent.web.documents import sample_json
from tests.support.plant import StartPlant
from tests.support.waiting import eventually
from tests.support.web_agent import WebAgent, get_json, http_get, new_port, web_config

STABLE = ("tag", "value", "quality", "reason")


async def test_api_says_what_the_tag_store_and_healthz_hold(
    plant_sim_factory: StartPlant, tmp_path: Path
) -> None:
    sim = await plant_sim_factory(time_scale=0)  # a still plant: values do not move
    await sim.apply("bad:fsf.matte_temp")
    web = WebAgent(web_config(sim, tmp_path, new_port()))
    await web.start()
    try:
        assert web.agent is not None
        store = web.agent.store
        await eventually(
            lambda: (s := store.get("fsf.matte_temp")) is not None and s.quality is Quality.BAD,
            20,
            "the fault in the store",
        )
        await eventually(lambda: store.get("kpi.heat_margin_mw"), 20, "the first KPIs")
        doc = await get_json(web.url + "/api/tags?limit=10000")
        snapshot = store.snapshot()
        assert doc["total"] == len(snapshot)
        got = {t["tag"]: {k: t[k] for k in STABLE} for t in doc["tags"]}
        want = {tag: {k: sample_json(s)[k] for k in STABLE} for tag, s in snapshot.items()}
        plant_tags = [t for t in want if not t.startswith("kpi.")]
        assert {t: got[t] for t in plant_tags} == {t: want[t] for t in plant_tags}
        assert set(got) == set(want)

        bad = await get_json(web.url + "/api/tags?quality=bad")
        assert "fsf.matte_temp" in [t["tag"] for t in bad["tags"]]
        assert all(t["quality"] == "bad" for t in bad["tags"])
        one = await get_json(web.url + "/api/tags/fsf.matte_temp")
        assert one["quality"] == "bad"
        assert one["value"] is None
        assert one["reason"] == "BadSensorFailure"
        search = await get_json(web.url + "/api/tags?q=MATTE_&limit=2")
        assert search["total"] >= 2
        assert len(search["tags"]) == 2
        assert all("matte_" in t["tag"] for t in search["tags"])

        code, healthz = await http_get(web.url + "/healthz")
        delivery = await get_json(web.url + "/api/delivery")
        assert delivery["http_status"] == code
        assert delivery["status"] == json.loads(healthz)["status"]
        states = {
            kind: {name: c["state"] for name, c in members.items()}
            for kind, members in json.loads(healthz).items()
            if isinstance(members, dict)
        }
        assert {k: {n: c["state"] for n, c in m.items()} for k, m in delivery["healthz"].items()
                if isinstance(m, dict)} == states  # fmt: skip

        kpis = await get_json(web.url + "/api/kpis")
        assert kpis["targets"] == {"2020": 12.0, "2030": 25.0, "2040": 50.0}
        assert kpis["kpis"]["kpi.heat_margin_mw"]["quality"] in ("good", "uncertain", "bad")

        advisor = await get_json(web.url + "/api/advisor")
        names = {sp["name"]: sp for sp in advisor["setpoints"]}
        assert set(names) == {"escrap", "fuel", "oxygen"}
        assert names["escrap"]["setpoint_tag"] == "fsf.escrap_feed_sp"
        inputs = {i["tag"]: i for i in advisor["inputs"]}
        assert inputs["fsf.matte_temp"]["quality"] == "bad"

        history = await get_json(web.url + "/api/history?tag=fsf.conc_feed_rate&tag=no.such")
        assert history["series"]["no.such"] == [None] * 120
        assert any(v is not None for v in history["series"]["fsf.conc_feed_rate"])

        assert (await http_get(web.url + "/api/tags/no.such"))[0] == 404
        code, text = await http_get(web.url + "/api/tags?quality=awful")
        assert code == 400
        assert "quality='awful'" in text
        code, text = await http_get(web.url + "/api/tags?limit=-3")
        assert code == 400
        assert "limit=-3" in text
    finally:
        await web.stop()
