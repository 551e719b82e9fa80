"""OPC UA node references from the config, resolved against each session's namespace table.

A tag names its node in one of the standard string forms (`ns=2;s=x`, `nsu=urn:…;s=x`, `i=2258`,
`s=x`, `g=<guid>`, `b=<base64>`) or as a browse path from the Root folder:

    /Objects/Server/ServerStatus/CurrentTime       (standard namespace)
    /Objects/2:Plant/2:fsf/2:matte_temp            (namespace index)
    /Objects/{urn:smelter:sim}Plant/{urn:smelter:sim}fsf

Namespace indices are the server's to assign and may change when it restarts with a different
set of namespaces, so a reference that names its namespace by URI (`nsu=`, `{uri}`) is parsed
once here and resolved to an index anew for every session. `ns=` pins the index as given.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from dataclasses import dataclass

from asyncua import ua
from asyncua.ua.object_ids import ObjectIds

HIERARCHICAL_REFERENCES = ObjectIds.HierarchicalReferences

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

    def resolve(self, namespaces: list[str]) -> ua.NodeId:
        return ua.NodeId(self.identifier, self.namespace.resolve(namespaces))  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class BrowsePathRef:
    """Qualified names followed from the Root folder over hierarchical references."""

    elements: tuple[tuple[Namespace, str], ...]

    def relative_path(self, namespaces: list[str]) -> ua.RelativePath:
        path = ua.RelativePath()
        for ns, name in self.elements:
            element = ua.RelativePathElement()
            element.ReferenceTypeId = ua.NodeId(HIERARCHICAL_REFERENCES, 0)  # type: ignore[arg-type]
            element.IsInverse = False  # type: ignore[assignment]
            element.IncludeSubtypes = True  # type: ignore[assignment]
            element.TargetName = ua.QualifiedName(name, ns.resolve(namespaces))
            path.Elements.append(element)
        return path


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
