"""No secret ever appears in the agent's output, whatever fails.

The agent runs as a subprocess (`edge-agent run`, debug level) with a secret configured for
every service that takes one: the MQTT JSON sink and the SCADA command service (a real Mosquitto
that refuses the password), InfluxDB v1 (a real InfluxDB 1.x with authentication, which refuses
it) and v2 (a scripted server answering 401), and an OPC UA user (the simulator, which rejects
it). Once each service has failed, the agent is stopped and every byte it wrote to stdout and
stderr is searched for the secret in each spelling a renderer could give it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.influx_faults import FaultyInflux, Reply
from tests.support.pki import make_password_file
from tests.support.plant import StartPlant
from tests.support.services import InfluxDB1, Mosquitto, free_port
from tests.support.waiting import eventually

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parent.parent
# Quotes, a backslash and a non-ASCII letter: every escaping a renderer does is exercised.
SECRET = 'pa"ss\\wörd-9f3Kq'
# Any of its spellings would do, so the test looks for its tail, which needs no escaping.
SPELLINGS = {SECRET, json.dumps(SECRET)[1:-1], repr(SECRET)[1:-1], "9f3Kq"}


def unauthorized(_lines: list[str]) -> Reply:
    return 401, '{"code":"unauthorized","message":"unauthorized access"}', {}


class Agent:
    """`edge-agent run` on the demo config with overrides; collects all it writes."""

    def __init__(self, tmp_path: Path, overrides: list[str]) -> None:
        self.tmp_path = tmp_path
        self.overrides = overrides
        self.out = tmp_path / "stdout"
        self.err = tmp_path / "stderr"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        secret_file = self.tmp_path / "secret"
        secret_file.write_text(SECRET + "\n", encoding="utf-8")
        env = {**os.environ, "EDGE_TEST_SECRET": SECRET}
        sets = [arg for item in self.overrides for arg in ("--set", item)]
        argv = [sys.executable, "-m", "edge_agent.cli", "--log-level", "debug", "run"]
        argv += ["--config", "config/demo.toml", *sets]
        argv += ["--set", f"agent.state_dir={self.tmp_path / 'state'}"]
        argv += ["--set", f"health.listen=127.0.0.1:{free_port()}"]
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=err)

    def output(self) -> str:
        return self.out.read_text("utf-8", "replace") + self.err.read_text("utf-8", "replace")

    def stop(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def assert_no_secret(text: str) -> None:
    for spelling in SPELLINGS:
        assert spelling not in text, f"secret spelling {spelling!r} in the output"


def common_overrides(broker: Mosquitto, opcua_endpoint: str, secret_ref: str) -> list[str]:
    nobody = free_port()
    return [
        f"mqtt.port={broker.port}",
        'mqtt.username="edge"',
        f"mqtt.password={secret_ref}",
        "control.commands=true",
        f"source.fsf.endpoint={opcua_endpoint}",
        'source.fsf.username="operator"',
        f"source.fsf.password={secret_ref}",
        f"source.offgas.endpoint=tcp://127.0.0.1:{nobody}",
        f"source.kiln.endpoint=tcp://127.0.0.1:{nobody}",
    ]


@pytest.mark.parametrize("log_format", ["json", "console"])
async def test_no_secret_in_any_output_when_every_service_fails(
    tmp_path: Path, plant_sim_factory: StartPlant, log_format: str
) -> None:
    sim = await plant_sim_factory(users={"operator": "the-right-password"})
    passwords = make_password_file(tmp_path, "edge", "the-right-password")
    extra = ["allow_anonymous false", f"password_file {passwords}"]
    with Mosquitto(tmp_path / "broker", extra_config=extra) as broker:
        if log_format == "json":
            # InfluxDB v1: a real server with authentication; secret from a file reference.
            with InfluxDB1(tmp_path / "influx", admin=("admin", "admin-pw")) as influx:
                ref = f'{{ file = "{tmp_path / "secret"}" }}'
                agent = Agent(tmp_path, [
                    *common_overrides(broker, sim.opcua_endpoint, ref),
                    'influx.api="v1"', f"influx.url={influx.url}", 'influx.db="plant"',
                    'influx.username="edge"', f"influx.password={ref}",
                    'agent.log_format="json"',
                ])  # fmt: skip
                agent.start()
                try:
                    await wait_for_failures(agent)
                finally:
                    agent.stop()
        else:
            # InfluxDB v2: a scripted server that refuses the token; secret from the environment.
            async with FaultyInflux(unauthorized) as v2:
                ref = '{ env = "EDGE_TEST_SECRET" }'
                agent = Agent(tmp_path, [
                    *common_overrides(broker, sim.opcua_endpoint, ref),
                    'influx.api="v2"', f"influx.url={v2.url}", 'influx.org="smelter"',
                    'influx.bucket="plant"', f"influx.token={ref}",
                    'agent.log_format="console"',
                ])  # fmt: skip
                agent.start()
                try:
                    await wait_for_failures(agent)
                    # The token reached the server, as a resolved value, and was refused.
                    assert v2.headers[0]["Authorization"] == f"Token {SECRET}"
                finally:
                    agent.stop()
    text = agent.output()
    assert "access_denied" in text  # the OPC UA user was refused, and that was logged
    assert_no_secret(text)


async def wait_for_failures(agent: Agent) -> None:
    """Until the OPC UA user, both MQTT clients (sink, commands) and Influx were refused."""

    def all_failed() -> bool:
        assert agent.proc is not None
        assert agent.proc.poll() is None, agent.output()[-3000:]
        text = agent.output()
        # "401" alone also matches a clock time such as 13:40:15; the sink's refusal names it.
        refused_401 = re.search(r"\bstatus\W{1,4}401\b", text) is not None
        return "access_denied" in text and text.count("Not authorized") >= 2 and refused_401

    await eventually(all_failed, 60.0, "every service to fail on its secret")
