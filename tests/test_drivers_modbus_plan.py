"""The Modbus request planner: merges nearby registers, splits refused requests."""

from __future__ import annotations

from drivers.modbus_plan import ReadPlan, merge
from edge_agent.config import ModbusTag


def tag(name: str, address: int, **kw: object) -> ModbusTag:
    return ModbusTag.model_validate({"id": f"t.{name}", "address": address, **kw})


def spans(requests: list) -> list[tuple[int, str, int, int]]:  # type: ignore[type-arg]
    return [(r.unit_id, r.table, r.start, r.count) for r in requests]


def test_merges_across_small_gaps_and_not_across_large_ones() -> None:
    tags = [tag("a", 0, type="float32"), tag("b", 4), tag("c", 20)]
    assert spans(merge(tags, max_gap=2, max_registers=125)) == [
        (1, "holding", 0, 5),
        (1, "holding", 20, 1),
    ]
    assert spans(merge(tags, max_gap=15, max_registers=125)) == [(1, "holding", 0, 21)]


def test_never_merges_across_unit_ids_or_tables() -> None:
    tags = [tag("a", 0), tag("b", 1, unit_id=2), tag("c", 2, table="input"), tag("d", 3)]
    assert spans(merge(tags, max_gap=8, max_registers=125)) == [
        (1, "holding", 0, 4),
        (1, "input", 2, 1),
        (2, "holding", 1, 1),
    ]


def test_respects_max_registers() -> None:
    tags = [tag(f"r{i}", i * 2, type="float32") for i in range(100)]  # 200 registers
    requests = merge(tags, max_gap=8, max_registers=125)
    assert [r.count for r in requests] == [124, 76]
    assert sum(len(r.tags) for r in requests) == 100
    assert all(r.count <= 10 for r in merge(tags, max_gap=8, max_registers=10))


def test_bits_merge_by_bit_address() -> None:
    tags = [tag("c0", 0, table="coil", type="bool"), tag("c9", 9, table="coil", type="bool")]
    assert spans(merge(tags, max_gap=1, max_registers=125)) == [(1, "coil", 0, 10)]


def test_split_isolates_the_bad_register_in_log2_cycles() -> None:
    tags = [tag(f"r{i}", i) for i in range(16)]
    plan = ReadPlan(tags, max_gap=8, max_registers=125)
    bad = 11
    cycles = 0
    while True:
        refused = [r for r in plan.requests if r.start <= bad < r.start + r.count]
        assert len(refused) == 1
        if not plan.split(refused[0]):
            break
        cycles += 1
    assert cycles == 4
    (alone,) = [r for r in plan.requests if r.start <= bad < r.start + r.count]
    assert [t.id for t in alone.tags] == ["t.r11"]
    assert sorted(t.id for r in plan.requests for t in r.tags) == sorted(t.id for t in tags)


def test_bits_of_one_status_register_stay_together() -> None:
    tags = [tag("s0", 4, type="bit", bit=0), tag("s1", 4, type="bit", bit=1)]
    plan = ReadPlan(tags, max_gap=8, max_registers=125)
    assert plan.split(plan.requests[0]) is False
