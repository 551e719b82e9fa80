"""Parsed OPC UA node references (`edge_agent.contracts.opcua`) in asyncua's types.

A reference that names its namespace by URI is resolved to an index anew for every session,
against that session's namespace table.
"""

from __future__ import annotations

from asyncua import ua
from asyncua.ua.object_ids import ObjectIds

from edge_agent.contracts.opcua import BrowsePathRef, NodeIdRef

HIERARCHICAL_REFERENCES = ObjectIds.HierarchicalReferences


def node_id(ref: NodeIdRef, namespaces: list[str]) -> ua.NodeId:
    """The node id of `ref` on a server whose namespace array is `namespaces`."""
    return ua.NodeId(ref.identifier, ref.namespace.resolve(namespaces))  # type: ignore[arg-type]


def relative_path(ref: BrowsePathRef, namespaces: list[str]) -> ua.RelativePath:
    """Qualified names followed from the Root folder over hierarchical references."""
    path = ua.RelativePath()
    for ns, name in ref.elements:
        element = ua.RelativePathElement()
        element.ReferenceTypeId = ua.NodeId(HIERARCHICAL_REFERENCES, 0)  # type: ignore[arg-type]
        element.IsInverse = False  # type: ignore[assignment]
        element.IncludeSubtypes = True  # type: ignore[assignment]
        element.TargetName = ua.QualifiedName(name, ns.resolve(namespaces))
        path.Elements.append(element)
    return path
