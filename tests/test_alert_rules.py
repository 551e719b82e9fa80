"""deploy/prometheus/edge-agent-alerts.yml: valid for vmalert, every metric it names is one a real
agent exports, and the rules fire on a real agent whose plant and broker are unreachable."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import subprocess
import urllib.parse
from pathlib import Path
from urllib.request import urlopen

import pytest
import yaml

from edge_agent.config.loader import load_config
from edge_agent.runtime import run_agent
from tests.support.server_process import _http
from tests.support.services import VictoriaMetrics
from tests.support.waiting import eventually

pytestmark = pytest.mark.services

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "prometheus" / "edge-agent-alerts.yml"
VMALERT = shutil.which("vmalert") or "/usr/bin/vmalert"  # Debian's victoria-metrics package


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rules() -> dict[str, str]:
    doc = yaml.safe_load(RULES.read_text())
    return {r["alert"]: " ".join(r["expr"].split()) for g in doc["groups"] for r in g["rules"]}


def test_vmalert_accepts_the_rules_and_refuses_a_broken_file(tmp_path: Path) -> None:
    ok = subprocess.run([VMALERT, "-dryRun", f"-rule={RULES}"], capture_output=True, timeout=60)
    assert ok.returncode == 0, ok.stderr.decode()[-2000:]
    broken = tmp_path / "broken.yml"
    broken.write_text(RULES.read_text().replace("edge_agent_component_up == 0", "sum(", 1))
    bad = subprocess.run([VMALERT, "-dryRun", f"-rule={broken}"], capture_output=True, timeout=60)
    assert bad.returncode != 0  # the check can fail


async def scrape_faulty_agent(tmp_path: Path) -> str:
    """/metrics of the demo agent with its instruments and its broker unreachable."""
    port, nobody = free_port(), free_port()
    cfg = load_config(
        ROOT / "config" / "demo.toml",
        [
            f"health.listen=127.0.0.1:{port}",
            f"agent.state_dir={tmp_path / 'state'}",
            f"source.fsf.endpoint=opc.tcp://127.0.0.1:{nobody}/",
            f"source.offgas.endpoint=tcp://127.0.0.1:{nobody}",
            f"source.kiln.endpoint=tcp://127.0.0.1:{nobody}",
            f"mqtt.port={nobody}",
        ],
    )
    stop = asyncio.Event()
    agent = asyncio.create_task(run_agent(cfg, stop=stop))

    def get() -> str:
        with urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            return str(resp.read().decode())

    body = ""

    async def all_bad() -> bool:
        nonlocal body
        try:
            body = await asyncio.to_thread(get)
        except OSError:
            return False
        tags = dict(re.findall(r'^edge_agent_tags\{quality="(\w+)"\} (\S+)$', body, re.M))
        down = re.findall(r'^edge_agent_component_up\{kind="(?:source|sink)".*\} 0\.0$', body, re.M)
        counts = {q: float(n) for q, n in tags.items()}
        return len(down) >= 4 and counts.get("bad", 0) > 0.1 * sum(counts.values())

    try:
        await eventually(all_bad, 30, "sources and sink down, tags Bad in /metrics")
    finally:
        stop.set()
        await agent
    return body


async def test_every_rule_names_real_metrics_and_fires_on_a_faulty_agent(
    tmp_path: Path, victoria_metrics: VictoriaMetrics
) -> None:
    exposition = await scrape_faulty_agent(tmp_path)
    exported = set(re.findall(r"^(edge_agent_\w+)", exposition, re.M))
    for alert, expr in rules().items():
        for name in re.findall(r"\bedge_agent_\w+", expr):
            assert name in exported, f"{alert}: {name} is not a metric the agent exports"
    dashboard = (ROOT / "deploy" / "grafana" / "smelter-trends-victoriametrics.json").read_text()
    for name in set(re.findall(r"\bedge_agent_\w+", dashboard)):
        assert name in exported, f"the VictoriaMetrics dashboard's {name} is not exported"

    status, _ = _http(
        "POST", f"{victoria_metrics.url}/api/v1/import/prometheus", exposition.encode()
    )
    assert status == 204
    victoria_metrics.flush()

    def instant(expr: str) -> list[dict[str, object]]:
        qs = urllib.parse.urlencode({"query": expr})
        status, body = _http("GET", f"{victoria_metrics.url}/api/v1/query?{qs}")
        assert status == 200, body
        return list(json.loads(body)["data"]["result"])

    await eventually(lambda: instant("edge_agent_info"), 10, "the scrape searchable")
    firing = {alert for alert, expr in rules().items() if instant(expr)}
    # Instruments and broker unreachable: the components are down and every tag is Bad; the
    # outbox is far from full and no rate or increase can be seen in a single scrape.
    assert firing == {"EdgeAgentComponentDown", "EdgeAgentTagsNotGood"}
    down = {(r["metric"]["kind"], r["metric"]["name"]) for r in instant(  # type: ignore[index]
        rules()["EdgeAgentComponentDown"])}  # fmt: skip
    assert {("source", "fsf"), ("source", "kiln"), ("sink", "mqtt")} <= down
