"""Which metrics the edge node declares: one Sparkplug device per unit, one metric per tag.

A tag id `unit.name.sub` becomes metric `name/sub` of device `unit` (dots are among the
characters the specification discourages in metric names; slashes are its folder separator).
Aliases are handed out once per process, in a stable order, and never reused for another metric,
so a host that missed a birth never confuses two tags.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from drivers.sparkplug.payload import DataType, accepts, datatype_for
from edge_agent.contracts.catalogue import TagInfo, ValueType
from edge_agent.contracts.samples import Value

# Node-level metrics (bdSeq and Rebirth are in drivers/sparkplug/payload.py, shared with the
# host). The specification forbids an alias on Rebirth (so any host can ask for a
# rebirth without knowing our aliases) and we give none to bdSeq, which never appears in data.
NEXT_SERVER = "Node Control/Next Server"
LAST_COMMAND = "Control/Last Command Result"
NEXT_SERVER_ALIAS = 1
LAST_COMMAND_ALIAS = 2
_FIRST_TAG_ALIAS = 16


# How the agent's value types are declared in a birth (before any value is seen).
DATATYPES: dict[ValueType, DataType] = {
    "number": DataType.DOUBLE,
    "integer": DataType.INT64,
    "boolean": DataType.BOOLEAN,
    "string": DataType.STRING,
}


@dataclass(frozen=True, slots=True)
class MetricDef:
    tag: str
    device: str
    name: str
    alias: int
    datatype: DataType
    unit: str
    writable: bool


def split_tag(tag: str) -> tuple[str, str]:
    """`fsf.matte_temp` -> (`fsf`, `matte_temp`); `kpi.a.day` -> (`kpi`, `a/day`)."""
    device, _, rest = tag.partition(".")
    return device, rest.replace(".", "/")


class Catalogue:
    """Tag <-> metric definitions for the whole edge node."""

    def __init__(self, tags: Iterable[TagInfo] = ()) -> None:
        """Declares every tag of the agent's catalogue (source tags and KPIs, with their units)
        up front, so that the first births name them all and data triggers no rebirth."""
        self._defs: dict[str, MetricDef] = {}
        self._by_alias: dict[int, MetricDef] = {}
        self._by_name: dict[tuple[str, str], MetricDef] = {}
        self._next_alias = _FIRST_TAG_ALIAS
        for info in sorted(tags, key=lambda i: i.tag):
            self._add(info.tag, DATATYPES[info.type], info.unit, info.writable)

    def _add(self, tag: str, datatype: DataType, unit: str, writable: bool) -> MetricDef:
        device, name = split_tag(tag)
        d = MetricDef(tag, device, name, self._next_alias, datatype, unit, writable)
        self._next_alias += 1
        self._store(d)
        return d

    def _store(self, d: MetricDef) -> None:
        self._defs[d.tag] = d
        self._by_alias[d.alias] = d
        self._by_name[(d.device, d.name)] = d

    def get(self, tag: str) -> MetricDef | None:
        return self._defs.get(tag)

    def by_alias(self, alias: int) -> MetricDef | None:
        return self._by_alias.get(alias)

    def by_name(self, device: str, name: str) -> MetricDef | None:
        return self._by_name.get((device, name))

    def fits(self, tag: str, value: Value | None) -> bool:
        """Whether `tag` is declared with a datatype that can carry `value` (None always fits)."""
        d = self._defs.get(tag)
        return d is not None and (value is None or accepts(d.datatype, value))

    def declare(self, tag: str, value: Value | None) -> MetricDef:
        """Define a tag first seen in the data, or retype one whose value no longer fits.
        The caller must publish a new birth before sending it."""
        d = self._defs.get(tag)
        datatype = DataType.DOUBLE if value is None else datatype_for(value)
        if d is None:
            return self._add(tag, datatype, "", False)
        d = replace(d, datatype=datatype)
        self._store(d)
        return d

    def devices(self) -> list[str]:
        return sorted({d.device for d in self._defs.values()})

    def of_device(self, device: str) -> list[MetricDef]:
        return [d for d in self._defs.values() if d.device == device]

    def datatypes(self) -> dict[int, DataType]:
        return {alias: d.datatype for alias, d in self._by_alias.items()}
