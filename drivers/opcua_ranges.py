"""The instrument ranges an OPC UA server publishes: each analog item's `EURange` property.

OPC UA's AnalogItemType carries `EURange` (a `Range` of Low and High), the span the instrument
can measure. A value outside it cannot be true, so the agent uses it as the default validity
range of a tag whose configuration gives none. It is read once per session, right after the node
ids are resolved: one TranslateBrowsePaths for the property nodes and one Read for their values,
batched by the server's operation limits. A node without the property simply has no range.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from asyncua import ua
from asyncua.client.client import Client
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds

Range = tuple[float, float]


def _eu_range_path() -> ua.RelativePath:
    element = ua.RelativePathElement()
    element.ReferenceTypeId = ua.NodeId(ObjectIds.HasProperty, 0)  # type: ignore[arg-type]
    element.IsInverse = False  # type: ignore[assignment]
    element.IncludeSubtypes = True  # type: ignore[assignment]
    element.TargetName = ua.QualifiedName("EURange", 0)
    path = ua.RelativePath()
    path.Elements = [element]
    return path


async def read_eu_ranges(
    client: Client, nodes: Sequence[ua.NodeId | None], max_translate: int, max_read: int
) -> list[Range | None]:
    """The EURange of each node (None where a node is unresolved or has none)."""
    path = _eu_range_path()
    wanted = [(i, node) for i, node in enumerate(nodes) if node is not None]
    properties: list[tuple[int, ua.NodeId]] = []
    for start in range(0, len(wanted), max(1, max_translate)):
        chunk = wanted[start : start + max(1, max_translate)]
        browse_paths = []
        for _, node in chunk:
            bp = ua.BrowsePath()
            bp.StartingNode = node
            bp.RelativePath = path
            browse_paths.append(bp)
        results = await client.uaclient.translate_browsepaths_to_nodeids(browse_paths)
        for (i, _), result in zip(chunk, results, strict=True):
            if result.StatusCode.is_good() and result.Targets:
                properties.append((i, result.Targets[0].TargetId))
    ranges: list[Range | None] = [None] * len(nodes)
    for start in range(0, len(properties), max(1, max_read)):
        chunk = properties[start : start + max(1, max_read)]
        values = await client.uaclient.read_attributes([n for _, n in chunk], AttributeIds.Value)
        for (i, _), dv in zip(chunk, values, strict=True):
            ranges[i] = _as_range(dv)
    return ranges


def _as_range(dv: ua.DataValue) -> Range | None:
    if dv.StatusCode is not None and not dv.StatusCode.is_good():
        return None
    value = dv.Value.Value if dv.Value is not None else None
    low, high = getattr(value, "Low", None), getattr(value, "High", None)
    if not isinstance(low, int | float) or not isinstance(high, int | float):
        return None
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        return None
    return float(low), float(high)
