"""EEMUA 191 figures from a scripted list of activations."""

from __future__ import annotations

from edge_agent.alarms.performance import figures

S = 1_000_000_000
T0 = 1_800_000_000 * S - (1_800_000_000 * S) % (600 * S)  # on a 10-minute boundary


def test_rates_flood_chattering_and_top_ten() -> None:
    acts = [(T0 + i * 10 * S, f"flood.{i % 4}") for i in range(12)]  # 12 in the first 10 min
    acts += [(T0 + 700 * S + i * 20 * S, "chatter") for i in range(3)]  # 3 within one minute
    acts += [(T0 + 1300 * S + i * 30 * S, "slow") for i in range(3)]  # 3 within 90 s: no chatter
    acts += [(T0 + 3600 * S, "outside")]  # after the period
    f = figures(acts, T0, T0 + 1800 * S)  # three 10-minute intervals
    assert f.activations == 18
    assert f.intervals == 3
    assert f.per_10min_avg == 6.0
    assert f.per_10min_peak == 12
    assert f.flood_intervals == 1
    assert abs(f.flood_share - 1 / 3) < 1e-9
    assert f.chattering == ("chatter",)
    assert f.top[:3] == (("chatter", 3), ("flood.0", 3), ("flood.1", 3))
    assert len(f.top) == 6


def test_an_empty_period() -> None:
    f = figures([], T0, T0 + 600 * S)
    assert (f.activations, f.flood_share, f.chattering, f.top) == (0, 0.0, (), ())
