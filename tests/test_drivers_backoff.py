"""The one retry policy (drivers/backoff.py): capped doubling, and the jitter that keeps clients
that failed together from retrying together."""

from __future__ import annotations

import random

import pytest

from drivers.backoff import Backoff


def test_backoff_doubles_up_to_its_cap() -> None:
    backoff = Backoff(initial_s=0.5, max_s=4.0, factor=2.0, jitter=0.2)
    middle = [backoff.delay_s(n, rand=lambda: 0.5) for n in range(1, 7)]
    assert middle == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_backoff_jitter_stays_within_its_band() -> None:
    backoff = Backoff(initial_s=1.0, max_s=1.0, jitter=0.2)
    assert backoff.delay_s(3, rand=lambda: 0.0) == pytest.approx(0.8)
    assert backoff.delay_s(3, rand=lambda: 1.0) == pytest.approx(1.2)


def test_at_the_cap_the_delays_are_spread_by_the_jitter_not_in_lockstep(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ten drivers that lost one gateway together: at the cap each waits its own delay. A seeded
    generator stands in for `random.random`, so the spread asserted is the same on every run."""
    monkeypatch.setattr(random, "random", random.Random(13).random)
    clients = [Backoff(initial_s=0.25, max_s=5.0, jitter=0.2) for _ in range(10)]
    for _ in range(5):  # 0.25 s doubled five times is past the 5 s cap
        for client in clients:
            client.next_delay()
    capped = [client.next_delay() for client in clients]
    assert all(4.0 <= d <= 6.0 for d in capped), capped
    assert len(set(capped)) == len(capped), f"two clients retry together: {capped}"
    assert max(capped) - min(capped) >= 1.0, f"the jitter uses a sliver of its ±1 s: {capped}"
    steady = Backoff(initial_s=0.25, max_s=5.0, jitter=0.0)
    assert {steady.delay_s(6) for _ in range(10)} == {5.0}  # without jitter: lockstep
