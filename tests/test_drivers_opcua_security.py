"""OPC UA security against the simulator: encrypted sessions, and refusals that say what to do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from cryptography.x509.oid import ExtendedKeyUsageOID

from drivers.base import DriverAccessDenied
from drivers.opcua import OpcUaDriver
from edge_agent.config import OpcUaSource
from tests.support.plant import PlantSim, StartPlant

pytestmark = pytest.mark.slow

NSU = "nsu=urn:smelter:sim;s="


@pytest.fixture
async def client_pki(tmp_path: Path) -> dict[str, Path]:
    key, cert = tmp_path / "client-key.pem", tmp_path / "client-cert.der"
    await setup_self_signed_certificate(
        key, cert, "urn:smelter:edge-agent", "localhost",
        [ExtendedKeyUsageOID.CLIENT_AUTH], {"commonName": "edge-agent"},
    )  # fmt: skip
    other_key, other = tmp_path / "other-key.pem", tmp_path / "other-cert.der"
    await setup_self_signed_certificate(
        other_key, other, "urn:someone:else", "localhost",
        [ExtendedKeyUsageOID.SERVER_AUTH], {"commonName": "someone-else"},
    )  # fmt: skip
    return {"key": key, "cert": cert, "other": other}


def secure_source(
    sim: PlantSim, pki: dict[str, Path], trusted: Path, password_env: str, **kw: Any
) -> OpcUaSource:
    security = {
        "policy": "Basic256Sha256",
        "mode": "SignAndEncrypt",
        "certificate": str(pki["cert"]),
        "private_key": str(pki["key"]),
        "trusted_server_certificates": [str(trusted)],
    }
    return OpcUaSource.model_validate(
        {
            "name": "fsf",
            "protocol": "opcua",
            "endpoint": sim.opcua_endpoint,
            "tag": [{"id": "fsf.matte_temp", "node": NSU + "fsf.matte_temp"}],
            "security": security,
            "username": "operator",
            "password": {"env": password_env},
            **kw,
        }
    )


async def test_encrypted_sessions_and_clear_refusals(
    plant_sim_factory: StartPlant, client_pki: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One secure simulator (certificates take seconds to make) for every security case."""
    sim = await plant_sim_factory(secure=True, users={"operator": "s3cret"})
    server_cert = sim.opcua.certificate_path
    assert server_cert is not None
    monkeypatch.setenv("SIM_PASSWORD", "s3cret")
    for policy in ("Basic256Sha256", "Aes128Sha256RsaOaep", "Aes256Sha256RsaPss"):
        for mode in ("Sign", "SignAndEncrypt"):
            src = secure_source(sim, client_pki, server_cert, "SIM_PASSWORD")
            security = src.security.model_copy(update={"policy": policy, "mode": mode})
            driver = OpcUaDriver(src.model_copy(update={"security": security}))
            await driver.connect()
            try:
                (sample,) = await driver.read()
            finally:
                await driver.close()
            assert sample.good, (policy, mode, sample.reason)

    # Our side of the trust: a server certificate nobody told us to trust.
    driver = OpcUaDriver(secure_source(sim, client_pki, client_pki["other"], "SIM_PASSWORD"))
    with pytest.raises(DriverAccessDenied) as untrusted:
        await driver.connect()
    assert "CN=smelter-sim" in str(untrusted.value)
    assert "not in security.trusted_server_certificates" in str(untrusted.value)

    monkeypatch.setenv("SIM_PASSWORD", "guess")
    driver = OpcUaDriver(secure_source(sim, client_pki, server_cert, "SIM_PASSWORD"))
    with pytest.raises(DriverAccessDenied) as denied:
        await driver.connect()
    message = str(denied.value)
    assert "rejected user 'operator'" in message
    assert "check the username and the password in env SIM_PASSWORD" in message
    assert "guess" not in message
    assert denied.value.reason == "access_denied"
