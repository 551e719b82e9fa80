"""Which Modbus requests read a source's tags: few large reads, and no bad register spoiling them.

Tags of one unit id and table that lie close together are merged into one read of at most
`max_registers` (the protocol's limit is 125 registers or 2000 bits), bridging gaps of up to
`max_gap` unused registers: one round trip per block instead of one per tag is what makes
polling a device with hundreds of registers affordable.

The price of merging is that a single illegal address makes the device refuse the whole block.
So when a request draws an exception reply, only the tags of that request turn Bad, and the plan
splits the request in two for the next cycle; after at most log2(n) cycles the bad register is
alone in its own request and every other tag reads Good again.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from edge_agent.contracts.modbus import ModbusPoint, ModbusTable

# Protocol limits per read: 125 registers (FC 3/4) and 2000 bits (FC 1/2).
MAX_BITS = 2000


@dataclass(frozen=True, slots=True, eq=False)
class ReadRequest:
    """One Modbus read: `count` registers (or bits) from `start`, serving `tags`.

    Compared and hashed by identity: the driver keys its precompiled decoders by request.
    """

    unit_id: int
    table: ModbusTable
    start: int
    count: int
    tags: tuple[ModbusPoint, ...]

    @property
    def bits(self) -> bool:
        return self.table in ("coil", "discrete_input")


def _span(tags: Sequence[ModbusPoint]) -> tuple[int, int]:
    start = min(t.address for t in tags)
    end = max(t.address + t.registers for t in tags)
    return start, end - start


def _request(tags: Sequence[ModbusPoint]) -> ReadRequest:
    start, count = _span(tags)
    return ReadRequest(tags[0].unit_id, tags[0].table, start, count, tuple(tags))


def merge(
    tags: Iterable[ModbusPoint], max_gap: int, max_registers: int, one_per_tag: bool = False
) -> list[ReadRequest]:
    """Merge tags into as few reads as the gap and size limits allow, per unit id and table.

    `one_per_tag` is the workaround for devices that refuse any read spanning two values: each
    address gets a request of its own (bit tags of one register still share it).
    """
    groups: dict[tuple[int, str], list[ModbusPoint]] = defaultdict(list)
    for tag in tags:
        groups[(tag.unit_id, tag.table)].append(tag)
    requests: list[ReadRequest] = []
    for (_, table), members in sorted(groups.items()):
        bits = table in ("coil", "discrete_input")
        limit = min(max_registers * 16, MAX_BITS) if bits else max_registers
        gap = max_gap * 16 if bits else max_gap
        members.sort(key=lambda t: t.address)
        block: list[ModbusPoint] = []
        block_start = block_end = 0
        for tag in members:
            end = tag.address + tag.registers
            if one_per_tag and block and tag.address == block_start:
                block.append(tag)
                continue
            if (
                not one_per_tag
                and block
                and tag.address - block_end <= gap
                and max(end, block_end) - block_start <= limit
            ):
                block.append(tag)
                block_end = max(block_end, end)
                continue
            if block:
                requests.append(_request(block))
            block, block_start, block_end = [tag], tag.address, end
        if block:
            requests.append(_request(block))
    return requests


class ReadPlan:
    """The current list of requests for one source, refined as devices refuse some of them."""

    def __init__(
        self,
        tags: Iterable[ModbusPoint],
        max_gap: int,
        max_registers: int,
        one_per_tag: bool = False,
    ) -> None:
        self.requests: list[ReadRequest] = merge(tags, max_gap, max_registers, one_per_tag)

    def split(self, request: ReadRequest) -> bool:
        """Replace a refused request by two halves (by tag); False if it serves one address only.

        Bit tags sharing one status register stay together: they are one address.
        """
        addresses = sorted({t.address for t in request.tags})
        if len(addresses) < 2:
            return False
        pivot = addresses[len(addresses) // 2]
        low = [t for t in request.tags if t.address < pivot]
        high = [t for t in request.tags if t.address >= pivot]
        i = self.requests.index(request)
        self.requests[i : i + 1] = [_request(low), _request(high)]
        return True
