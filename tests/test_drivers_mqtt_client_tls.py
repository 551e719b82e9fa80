"""TLS (CA-verified broker, client certificate) and username + password from a secret reference,
against a real Mosquitto configured to demand all three."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from drivers.mqtt_client import MqttClient
from edge_agent.config import MqttSection
from tests.support.pki import make_password_file, make_pki
from tests.support.services import Mosquitto

pytestmark = pytest.mark.services


async def test_tls_with_client_certificate_and_password_from_a_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pki = tmp_path / "pki"
    pki.mkdir()
    make_pki(pki)
    passwords = make_password_file(pki, "edge", "s3cret")
    extra = [
        "user root",
        f"cafile {pki / 'ca.pem'}",
        f"certfile {pki / 'server.pem'}",
        f"keyfile {pki / 'server.key'}",
        "require_certificate true",
        "allow_anonymous false",
        f"password_file {passwords}",
    ]
    monkeypatch.setenv("TEST_MQTT_PASSWORD", "s3cret")
    with Mosquitto(tmp_path / "broker", extra_config=extra) as broker:
        section = MqttSection.model_validate(
            {
                "host": "127.0.0.1",
                "port": broker.port,
                "username": "edge",
                "password": {"env": "TEST_MQTT_PASSWORD"},
                "tls": {
                    "ca_file": str(pki / "ca.pem"),
                    "certificate": str(pki / "client.pem"),
                    "private_key": str(pki / "client.key"),
                },
            }
        )
        assert section.password is not None
        conn = MqttClient(section, client_id="tls", password=section.password.resolve())
        await conn.start()
        try:
            await asyncio.wait_for(conn.connected.wait(), 10)
            await asyncio.wait_for(conn.publish("t/x", b"1"), 10)
        finally:
            await conn.close()

        wrong = MqttClient(section, client_id="tls-wrong", password="nope")
        await wrong.start()
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while "refused" not in wrong.last_error:  # the broker's refusal, not a timeout
                assert loop.time() < deadline, f"no refusal seen: {wrong.last_error!r}"
                await asyncio.sleep(0.02)
            assert not wrong.connected.is_set()
        finally:
            await wrong.close()
