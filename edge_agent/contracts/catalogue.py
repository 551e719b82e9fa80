"""What is known about every tag before any value arrives: unit, type, description, range.

The runtime builds one `TagCatalogue` from the configuration (source tags) and the KPI engine
(the `kpi.*` tags it will publish) and hands the same object to every sink, so the JSON payloads,
the Sparkplug births and any other consumer agree on units and types, and no sink needs to know
where a tag comes from.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

# The kind of value a tag carries: "number" (float, or an int that may become a float),
# "integer" (counts), "boolean", "string".
ValueType = Literal["number", "integer", "boolean", "string"]


@dataclass(frozen=True, slots=True)
class TagInfo:
    """One tag's metadata. `min`/`max` is its engineering range: the plausible range where the
    configuration gives one (`valid_min`/`valid_max`), else its write bounds."""

    tag: str
    unit: str = ""
    type: ValueType = "number"
    description: str = ""
    min: float | None = None
    max: float | None = None
    writable: bool = False


class TagCatalogue:
    """Every tag the agent will publish, by id, in a stable (sorted) order."""

    def __init__(self, infos: Iterable[TagInfo] = ()) -> None:
        self._infos = {i.tag: i for i in sorted(infos, key=lambda i: i.tag)}

    def get(self, tag: str) -> TagInfo | None:
        return self._infos.get(tag)

    def unit(self, tag: str) -> str:
        """The tag's engineering unit, "" when it has none or is unknown."""
        info = self._infos.get(tag)
        return info.unit if info is not None else ""

    def units(self) -> dict[str, str]:
        """Tag id -> unit, for the tags that have one."""
        return {tag: i.unit for tag, i in self._infos.items() if i.unit}

    def __iter__(self) -> Iterator[TagInfo]:
        return iter(self._infos.values())

    def __len__(self) -> int:
        return len(self._infos)

    def __contains__(self, tag: object) -> bool:
        return tag in self._infos
