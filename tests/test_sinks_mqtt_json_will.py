"""The real `edge-agent run` process: `online` on its status topic, and the broker publishes the
retained `offline` will when the agent is SIGKILLed; a clean SIGTERM says `offline` itself."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.mqtt_subscriber import Subscriber
from tests.support.services import Mosquitto

pytestmark = pytest.mark.services

STATUS = "plant/demo/_agent/edge-w/status"


def start_agent(tmp_path: Path, broker: Mosquitto) -> subprocess.Popen[bytes]:
    config = tmp_path / "agent.toml"
    config.write_text(
        f"""
[agent]
site = "demo"
instance_id = "edge-w"
state_dir = "{tmp_path / "state"}"

[mqtt]
host = "{broker.host}"
port = {broker.port}
topic_root = "plant"
"""
    )
    return subprocess.Popen(
        [sys.executable, "-m", "edge_agent.cli", "run", "--config", str(config), "--force"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.mark.parametrize(
    ("sig", "last"), [(signal.SIGKILL, b"offline"), (signal.SIGTERM, b"offline")]
)
def test_status_topic_tracks_the_agent_process(
    tmp_path: Path, mosquitto: Mosquitto, sig: signal.Signals, last: bytes
) -> None:
    sub = Subscriber(mosquitto.host, mosquitto.port, STATUS)
    agent = start_agent(tmp_path, mosquitto)
    try:
        assert sub.wait_for(1)[0].payload == b"online"
        agent.send_signal(sig)
        agent.wait(20)
        got = sub.wait_for(2)
        assert [m.payload for m in got] == [b"online", last]
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
        sub.close()
    # Retained: whoever subscribes later learns the agent is offline.
    late = Subscriber(mosquitto.host, mosquitto.port, STATUS)
    try:
        (m,) = late.wait_for(1)
        assert (m.payload, m.retain) == (b"offline", True)
    finally:
        late.close()
