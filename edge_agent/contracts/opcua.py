"""OPC UA tag and source settings, and node references parsed without the protocol library.

A tag names its node in one of the standard string forms (`ns=2;s=x`, `nsu=urn:…;s=x`, `i=2258`,
`s=x`, `g=<guid>`, `b=<base64>`) or as a browse path from the Root folder:

    /Objects/Server/ServerStatus/CurrentTime       (standard namespace)
    /Objects/2:Plant/2:fsf/2:matte_temp            (namespace index)
    /Objects/{urn:smelter:sim}Plant/{urn:smelter:sim}fsf

Namespace indices are the server's to assign and may change when it restarts with a different
set of namespaces, so a reference that names its namespace by URI (`nsu=`, `{uri}`) is parsed
once here and resolved to an index anew for every session (`drivers/opcua_nodes.py` turns a
parsed reference into asyncua's types). `ns=` pins the index as given. Parsing is pure Python so
that loading a configuration checks every reference without importing asyncua.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from edge_agent.contracts.secrets import SecretRef
from edge_agent.contracts.section import Section
from edge_agent.contracts.source import SourceSettings, TagPoint

Identifier = int | str | uuid.UUID | bytes


class NodeRefError(ValueError):
    """A node reference cannot be parsed or resolved; the message names it."""


@dataclass(frozen=True, slots=True)
class Namespace:
    """A namespace named by index or by URI (exactly one is set)."""

    index: int | None = None
    uri: str | None = None

    def resolve(self, namespaces: list[str]) -> int:
        if self.uri is None:
            return self.index or 0
        try:
            return namespaces.index(self.uri)
        except ValueError:
            raise NodeRefError(f"the server has no namespace {self.uri!r}") from None


@dataclass(frozen=True, slots=True)
class NodeIdRef:
    namespace: Namespace
    identifier: Identifier


@dataclass(frozen=True, slots=True)
class BrowsePathRef:
    """Qualified names followed from the Root folder over hierarchical references."""

    elements: tuple[tuple[Namespace, str], ...]


NodeRef = NodeIdRef | BrowsePathRef

_NODE_ID = re.compile(
    r"^(?:(?:ns=(?P<ns>\d+)|nsu=(?P<nsu>[^;]+));)?(?P<kind>[isgb])=(?P<id>.+)$", re.S
)
_ELEMENT = re.compile(r"^(?:(?P<ns>\d+):|\{(?P<uri>[^}]+)\})?(?P<name>[^/]+)$")


def parse_node_ref(text: str) -> NodeRef:
    """Parse a config node reference; raises NodeRefError saying what is wrong with it."""
    if text.startswith("/"):
        return _parse_browse_path(text)
    match = _NODE_ID.match(text)
    if match is None:
        raise NodeRefError(
            f"node {text!r} is neither a node id (ns=2;s=name, nsu=urn;s=name, i=85, g=…, b=…) "
            "nor a browse path (/Objects/2:Name)"
        )
    if match["nsu"] is not None:
        namespace = Namespace(uri=match["nsu"])
    else:
        namespace = Namespace(index=int(match["ns"] or 0))
    return NodeIdRef(namespace, _identifier(text, match["kind"], match["id"]))


def _identifier(text: str, kind: str, raw: str) -> Identifier:
    try:
        if kind == "i":
            value = int(raw)
            if not 0 <= value <= 0xFFFFFFFF:
                raise ValueError("out of range")
            return value
        if kind == "g":
            return uuid.UUID(raw)
        if kind == "b":
            return base64.b64decode(raw, validate=True)
    except (ValueError, binascii.Error) as exc:
        names = {"i": "a numeric (UInt32)", "g": "a GUID", "b": "a base64"}
        raise NodeRefError(f"node {text!r}: {raw!r} is not {names[kind]} identifier") from exc
    return raw


def _parse_browse_path(text: str) -> BrowsePathRef:
    if not text.strip("/"):
        raise NodeRefError(f"browse path {text!r} is empty")
    elements = []
    for part in text.strip("/").split("/"):
        match = _ELEMENT.match(part)
        if match is None:
            raise NodeRefError(
                f"browse path {text!r}: bad element {part!r} (use name, 2:name or {{uri}}name)"
            )
        if match["uri"] is not None:
            namespace = Namespace(uri=match["uri"])
        else:
            namespace = Namespace(index=int(match["ns"] or 0))
        elements.append((namespace, match["name"]))
    return BrowsePathRef(tuple(elements))


class OpcUaPoint(TagPoint):
    """A tag on an OPC UA server: its node, and the subscription group that samples it."""

    node: str = Field(min_length=1, description="node id (ns=, nsu=, i=, s=, g=, b=) or path")
    group: str = "default"

    @field_validator("node")
    @classmethod
    def _parsable_node(cls, value: str) -> str:
        parse_node_ref(value)  # NodeRefError is a ValueError saying what is wrong
        return value


class SecurityConfig(Section):
    policy: Literal["None", "Basic256Sha256", "Aes128Sha256RsaOaep", "Aes256Sha256RsaPss"] = "None"
    mode: Literal["None", "Sign", "SignAndEncrypt"] = "None"
    certificate: Path | None = None
    private_key: Path | None = None
    trusted_server_certificates: list[Path] = []

    @model_validator(mode="after")
    def _consistent(self) -> SecurityConfig:
        if (self.policy == "None") != (self.mode == "None"):
            raise ValueError("policy and mode must both be None or both be set")
        if self.policy != "None" and (self.certificate is None or self.private_key is None):
            raise ValueError("a security policy needs certificate and private_key")
        return self


class SubscriptionGroup(Section):
    name: str
    sampling_interval_ms: float = Field(1000, ge=0)
    publishing_interval_ms: float = Field(1000, gt=0)
    queue_size: int = Field(1, ge=1)
    deadband: Literal["none", "absolute", "percent"] = "none"
    deadband_value: float = Field(0.0, ge=0)


class ConditionSettings(Section):
    """`[source.conditions]`: the server's own Alarms & Conditions (docs/alarms.md, "OPC UA").

    Off by default: a server's conditions become alarms of this agent only where the source
    opts in. `acknowledge` lets an operator's acknowledge command call the condition's
    Acknowledge method on the server; without it the server's conditions are shown but must be
    acknowledged on the server's own HMI (the command is refused and says so).
    """

    enabled: bool = False
    acknowledge: bool = False
    notifier: str = Field("i=2253", min_length=1, description="node whose events are subscribed")
    publishing_interval_ms: float = Field(500, gt=0)

    @field_validator("notifier")
    @classmethod
    def _parsable_notifier(cls, value: str) -> str:
        if not isinstance(parse_node_ref(value), NodeIdRef):
            raise ValueError(f"notifier {value!r} must be a node id (i=2253 is the Server)")
        return value


class OpcUaSettings(SourceSettings):
    """One OPC UA server: how to read it (poll or subscribe), how to log in, and its tags."""

    mode: Literal["poll", "subscribe"] = "poll"
    security: SecurityConfig = SecurityConfig()
    username: str | None = None
    password: SecretRef | None = None
    # X.509 user authentication (instead of username/password); distinct from the
    # application instance certificate of `security`.
    user_certificate: Path | None = None
    user_private_key: Path | None = None
    timestamps: Literal["source", "server"] = "source"
    max_nodes_per_read: int = Field(0, ge=0, description="0: use the server's limit")
    sessions: int = Field(1, ge=1, le=16)
    groups: list[SubscriptionGroup] = []
    conditions: ConditionSettings = ConditionSettings()
    tag: Sequence[OpcUaPoint] = []

    @model_validator(mode="after")
    def _auth(self) -> OpcUaSettings:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        if (self.user_certificate is None) != (self.user_private_key is None):
            raise ValueError("user_certificate and user_private_key go together")
        if self.username is not None and self.user_certificate is not None:
            raise ValueError("choose username/password or user_certificate, not both")
        groups = {g.name for g in self.groups} | {"default"}
        for tag in self.tag:
            if tag.group not in groups:
                raise ValueError(f"tag {tag.id}: group {tag.group!r} is not among source.groups")
        return self
