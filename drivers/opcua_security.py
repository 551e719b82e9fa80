"""OPC UA security of our client: certificates, the server trust list, user identity, and what
to tell the operator when the server refuses us."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from asyncua import ua
from asyncua.client.client import Client
from asyncua.crypto import security_policies
from asyncua.ua.uaerrors import UaStatusCodeError
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from drivers.base import DriverAccessDenied, DriverConnectionError
from edge_agent.contracts.opcua import OpcUaSettings

_USER_REJECTED = {"BadUserAccessDenied", "BadIdentityTokenRejected", "BadIdentityTokenInvalid"}


async def configure_security(client: Client, src: OpcUaSettings) -> None:
    """Security policy, our certificate, the servers we trust, and the user identity."""
    sec = src.security
    if sec.policy != "None":
        assert sec.certificate is not None
        assert sec.private_key is not None
        cert = load_cert(sec.certificate)
        client.application_uri = application_uri(cert) or client.application_uri
        trusted = [load_cert(p) for p in sec.trusted_server_certificates]
        client.certificate_validator = TrustList(src.endpoint, trusted)
        await client.set_security(
            getattr(security_policies, f"SecurityPolicy{sec.policy}"),
            certificate=str(sec.certificate),
            private_key=str(sec.private_key),
            mode=getattr(ua.MessageSecurityMode, sec.mode),
        )
    if src.username is not None and src.password is not None:
        client.set_user(src.username)
        client.set_password(src.password.resolve())
    if src.user_certificate is not None and src.user_private_key is not None:
        await client.load_client_certificate(str(src.user_certificate))
        await client.load_private_key(src.user_private_key)


def explain(src: OpcUaSettings, exc: UaStatusCodeError) -> DriverConnectionError:
    """Turn the server's refusal into what the operator should do about it."""
    name = ua.StatusCode(exc.code).name
    if name in _USER_REJECTED:
        if src.username is not None:
            return DriverAccessDenied(
                f"OPC UA server {src.endpoint} rejected user {src.username!r} ({name}): "
                f"check the username and the password in {_describe_ref(src.password)}"
            )
        return DriverAccessDenied(
            f"OPC UA server {src.endpoint} rejected our identity ({name}): configure "
            "username/password or a user_certificate it accepts"
        )
    if name.startswith(("BadCertificate", "BadSecurityChecksFailed")):
        return DriverAccessDenied(
            f"OPC UA server {src.endpoint} does not accept our certificate "
            f"{src.security.certificate} ({name}): add it to the server's trusted certificates "
            "(for most servers: copy it into pki/trusted/certs) and check it is not expired"
        )
    return DriverConnectionError(f"OPC UA connect to {src.endpoint} failed ({name})")


def describe_certificate(cert: x509.Certificate) -> str:
    thumbprint = hashlib.sha1(
        cert.public_bytes(Encoding.DER)
    ).hexdigest()  # OPC UA names certificates by SHA-1
    return f"{cert.subject.rfc4514_string()} (SHA-1 thumbprint {thumbprint})"


class TrustList:
    """Our side of the trust: the server's certificate must be one we were told to trust."""

    def __init__(self, endpoint: str, trusted: list[x509.Certificate]) -> None:
        self.endpoint = endpoint
        self.fingerprints = {c.fingerprint(hashes.SHA256()) for c in trusted}

    async def __call__(self, cert: x509.Certificate, _app: Any) -> None:
        if cert.fingerprint(hashes.SHA256()) not in self.fingerprints:
            raise DriverAccessDenied(
                f"OPC UA server {self.endpoint} presents certificate {describe_certificate(cert)}, "
                "which is not in security.trusted_server_certificates: verify it with the server's "
                "administrator, then add the file to that list"
            )


def load_cert(path: Path) -> x509.Certificate:
    data = path.read_bytes()
    return (
        x509.load_pem_x509_certificate(data)
        if b"-----BEGIN" in data
        else x509.load_der_x509_certificate(data)
    )


def application_uri(cert: x509.Certificate) -> str | None:
    """OPC UA servers check the client's ApplicationUri against its certificate's SAN URI."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return None
    uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


def _describe_ref(ref: Any) -> str:
    if ref is None:
        return "the config"
    for key in ("file", "env", "credential"):
        if getattr(ref, key) is not None:
            return f"{key} {getattr(ref, key)}"
    return "the config"
