"""The garbage-collector settings the agent takes once its components run (edge_agent/heap.py)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from edge_agent import heap


@pytest.fixture(autouse=True)
def restored() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def _cycle() -> weakref.ref[_Node]:
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_settle_freezes_what_lives_and_collects_what_does_not() -> None:
    garbage = _cycle()  # unreachable, but a cycle: only the collector frees it
    kept = [_Node()]
    heap.settle()
    assert garbage() is None
    assert gc.get_threshold() == (heap.YOUNG_THRESHOLD, *heap.OLDER_THRESHOLDS)
    # What lives is in the permanent generation: no collection walks it any more.
    assert not any(o is kept[0] for g in range(3) for o in gc.get_objects(generation=g))
    assert gc.get_freeze_count() > 0


def test_a_second_settle_collects_what_the_first_froze_and_is_now_garbage() -> None:
    frozen = _cycle()
    holder = [frozen()]
    heap.settle()  # the cycle is alive here: frozen with the rest
    holder.clear()
    gc.collect()
    assert frozen() is not None  # a frozen cycle is never collected...
    heap.settle()
    assert frozen() is None  # ...until the next settle (a reload) unfreezes it first
