"""OPC UA security: signed and encrypted endpoints, username/password users."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from asyncua import Client, ua
from asyncua.crypto import security_policies
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.support.opcua_reads import read
from tests.support.plant import PlantSim, StartPlant


@pytest.fixture(scope="module")
def client_pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("client-pki")
    cert, key = d / "client-cert.der", d / "client-key.pem"
    asyncio.run(setup_self_signed_certificate(
        key, cert, "urn:smelter:test:client", "localhost",
        [ExtendedKeyUsageOID.CLIENT_AUTH], {"commonName": "test-client"},
    ))  # fmt: skip
    return cert, key


POLICIES = [security_policies.SecurityPolicyBasic256Sha256,
            security_policies.SecurityPolicyAes128Sha256RsaOaep,
            security_policies.SecurityPolicyAes256Sha256RsaPss]  # fmt: skip


async def test_secure_endpoints_and_users(
    plant_sim_factory: StartPlant, client_pki: tuple[Path, Path]
) -> None:
    """One server for both (each asyncua start costs seconds): every policy and mode is
    offered and works; with users configured, only the right password gets a session."""
    sim = await plant_sim_factory(secure=True, users={"operator": "s3cret"})
    assert sim.opcua.certificate_path is not None
    cert, key = client_pki
    endpoints = await Client(sim.opcua_endpoint).connect_and_get_server_endpoints()
    offered = {(e.SecurityPolicyUri.rsplit("#", 1)[1], e.SecurityMode.name) for e in endpoints}
    sign, encrypt = ua.MessageSecurityMode.Sign, ua.MessageSecurityMode.SignAndEncrypt
    for policy in POLICIES:
        for mode in (sign, encrypt):
            assert (policy.URI.rsplit("#", 1)[1], mode.name) in offered
    # Every policy once, and both modes: each RSA handshake costs a second on a busy CI host.
    for policy, mode in zip(
        POLICIES + POLICIES[:1], (sign, encrypt, encrypt, encrypt), strict=True
    ):
        client = user_client(sim, "s3cret")
        await client.set_security(policy, str(cert), str(key),
                                  server_certificate=str(sim.opcua.certificate_path),
                                  mode=mode)  # fmt: skip
        async with client:
            assert (await read(client, "fsf.matte_temp")).StatusCode.is_good()

    with pytest.raises(ua.UaError):
        async with Client(sim.opcua_endpoint, timeout=2) as anonymous:
            await read(anonymous, "fsf.matte_temp")
    with pytest.raises(ua.UaError):
        async with user_client(sim, "guess"):
            pass
    async with user_client(sim, "s3cret") as plain:
        assert (await read(plain, "fsf.matte_temp")).StatusCode.is_good()


def user_client(sim: PlantSim, password: str) -> Client:
    client = Client(sim.opcua_endpoint, timeout=4)
    client.set_user("operator")
    client.set_password(password)
    return client


async def test_a_free_port_taken_meanwhile_is_replaced() -> None:
    """Port 0 means "free a moment ago" for asyncua; a race with another process retries."""
    from simulators.simulation import Simulation, SimulationOptions

    sim = Simulation(SimulationOptions(opcua_port=0, serve_modbus=False, time_scale=0))
    with socket.socket() as thief:
        thief.bind(("127.0.0.1", sim.opcua.options.port))
        thief.listen()
        taken = sim.opcua.options.port
        await sim.start()
    try:
        assert sim.opcua.options.port != taken
        async with Client(sim.opcua_endpoint) as client:
            assert (await read(client, "fsf.matte_temp")).StatusCode.is_good()
    finally:
        await sim.stop()
