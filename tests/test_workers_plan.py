"""Which sources an acquisition worker reads: balanced by tag count, the same for the same file,
Modbus links never split, and what the control path, conditions or another source's status tag
need kept in the main process."""

from __future__ import annotations

from typing import Any

from edge_agent.config import AgentConfig
from edge_agent.workers.plan import fingerprint, narrowed, plan_shards


def modbus(name: str, tags: int, port: int, unit: int = 1, **tag: Any) -> dict[str, Any]:
    return {
        "name": name, "protocol": "modbus", "endpoint": f"tcp://127.0.0.1:{port}",
        "tag": [{"id": f"{name}.t{i}", "unit_id": unit, "table": "holding", "address": 2 * i,
                 "type": "float32", **(tag if i == 0 else {})} for i in range(tags)],
    }  # fmt: skip


def config(workers: int, *sources: dict[str, Any], **sections: Any) -> AgentConfig:
    return AgentConfig.model_validate(
        {"agent": {"acquisition_workers": workers}, "source": list(sources), **sections}
    )


def test_no_workers_reads_everything_here() -> None:
    plan = plan_shards(config(0, modbus("a", 3, 5020), modbus("b", 3, 5021)))
    assert (plan.shards, plan.local, plan.unused) == ((), ("a", "b"), 0)


def test_sources_are_dealt_largest_first_to_the_least_loaded_worker() -> None:
    sizes = {"a": 100, "b": 90, "c": 60, "d": 50, "e": 40, "f": 5}
    cfg = config(2, *(modbus(n, k, 5020 + i) for i, (n, k) in enumerate(sizes.items())))
    plan = plan_shards(cfg)
    # a → 0 (100), b → 1 (90), c → 1 (150), d → 0 (150), e → 0 (a tie: the lower), f → 1
    assert [(s.sources, s.tags) for s in plan.shards] == [
        (("a", "d", "e"), 190),
        (("b", "c", "f"), 155),
    ]
    assert plan.local == ()
    assert plan.unused == 0
    assert plan_shards(cfg) == plan  # deterministic


def test_sources_on_one_link_stay_together() -> None:
    cfg = config(3, modbus("a", 10, 5020), modbus("b", 10, 5020, 2), modbus("c", 1, 5021))
    plan = plan_shards(cfg)
    assert [(s.sources, s.tags) for s in plan.shards] == [(("a", "b"), 20), (("c",), 1)]
    assert plan.unused == 1


def test_what_must_stay_in_the_main_process() -> None:
    cfg = config(
        2,
        modbus("written", 2, 5020, writable=True, min=0.0, max=10.0),
        modbus("neighbour", 2, 5020, 2),  # shares the written source's link
        modbus("gated", 2, 5021, quality_from={"tag": "free.t1", "mask": 1}),
        modbus("free", 2, 5022),
    )
    plan = plan_shards(cfg)
    assert plan.kept == {
        "written": "the control path writes to it",
        "neighbour": "shares its link with written",
        "gated": "quality_from names free.t1 of another source",
    }
    assert plan.local == ("written", "neighbour", "gated")
    assert [s.sources for s in plan.shards] == [("free",)]
    assert plan.unused == 1


def test_narrowed_config_keeps_only_the_named_sources() -> None:
    cfg = config(1, modbus("a", 2, 5020), modbus("b", 2, 5021))
    assert [s.name for s in narrowed(cfg, {"b"}).source] == ["b"]
    changed = config(1, modbus("a", 2, 5020), modbus("b", 3, 5021))
    assert fingerprint(cfg, {"a"}) == fingerprint(changed, {"a"})
    assert fingerprint(cfg, {"b"}) != fingerprint(changed, {"b"})


def test_check_config_shows_the_plan() -> None:
    cfg = config(3, modbus("written", 2, 5020, writable=True, min=0.0, max=10.0),
                 modbus("free", 4, 5021))  # fmt: skip
    assert plan_shards(cfg).describe() == [
        "    worker 0: free (4 tags)",
        "    main process: written (the control path writes to it)",
        "    2 worker(s) not started: nothing more can move",
    ]
