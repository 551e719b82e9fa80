"""TLS (CA-verified broker, client certificate) and username + password from a secret reference,
against a real Mosquitto configured to demand all three."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from drivers.mqtt_client import MqttClient
from edge_agent.config import MqttSection
from tests.services import Mosquitto

pytestmark = pytest.mark.services


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_pki(d: Path) -> None:
    """A CA, a broker certificate for 127.0.0.1 and a client certificate, all signed by the CA."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    (d / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for name, san in (("server", True), ("client", False)):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
        )
        if san:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        cert = builder.sign(ca_key, hashes.SHA256())
        (d / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (d / f"{name}.key").write_bytes(_key_pem(key))


def make_password_file(d: Path, user: str, password: str) -> Path:
    path = d / "passwords"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(path), user, password], check=True)
    return path


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
