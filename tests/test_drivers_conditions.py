"""Condition: a line when a fault starts, a summary with counts while it lasts, one at its end."""

from __future__ import annotations

from typing import Any

from drivers.conditions import Condition


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_thousand_occurrences_make_a_start_a_summary_per_interval_and_an_end() -> None:
    lines: list[tuple[str, str, dict[str, Any]]] = []
    clock = Clock()
    cond = Condition(
        "outbox_cap_dropped_oldest",
        lambda level, event, **kw: lines.append((level, event, kw)),
        summary_every_s=60.0,
        clock=clock,
    )
    for _ in range(1000):  # 1000 drops of 5 samples over 125 s
        cond.occurred(count={"dropped_samples": 5})
        clock.now += 0.125
    cond.cleared()
    assert [(level, event) for level, event, _ in lines] == [
        ("warning", "outbox_cap_dropped_oldest"),
        ("warning", "outbox_cap_dropped_oldest_continuing"),
        ("warning", "outbox_cap_dropped_oldest_continuing"),
        ("info", "outbox_cap_dropped_oldest_cleared"),
    ]
    assert lines[0][2] == {"dropped_samples": 5}
    assert lines[1][2]["occurrences"] == 481  # the count so far, at the first summary (60 s)
    assert lines[-1][2]["occurrences"] == 1000
    assert lines[-1][2]["dropped_samples"] == 5000
    assert lines[-1][2]["lasted_s"] == 125.0


def test_clearing_a_condition_that_never_started_says_nothing_and_it_can_start_again() -> None:
    lines: list[str] = []
    cond = Condition("mqtt_unreachable", lambda level, event, **kw: lines.append(event))
    cond.cleared()
    cond.occurred()
    cond.cleared()
    cond.occurred()
    assert lines == ["mqtt_unreachable", "mqtt_unreachable_cleared", "mqtt_unreachable"]
