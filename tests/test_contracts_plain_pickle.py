"""Plain-data pickles (edge_agent/contracts/plain_pickle.py): exact round trips, and nothing that
names a class or a function is ever loaded."""

from __future__ import annotations

import math
import pickle

import pytest

from edge_agent.contracts import plain_pickle
from edge_agent.contracts.samples import Quality

PLAIN = [("fsf.matte_temp", 1231.5, 0, 10**18, None, None), ("ü.x", math.inf, 2, -1, 5, "why"),
         (True, b"\x00", {"k": [1, 2.5]}, -0.0, "", None)]  # fmt: skip


@pytest.mark.parametrize("shared", [True, False])
def test_plain_data_comes_back_exactly(shared: bool) -> None:
    payload = plain_pickle.dumps(PLAIN, shared=shared)
    assert plain_pickle.loads(payload, "test payload") == PLAIN
    assert pickle.loads(payload) == PLAIN  # an ordinary pickle either way
    nan = plain_pickle.loads(plain_pickle.dumps([math.nan], shared=shared), "nan")[0]
    assert math.isnan(nan)


@pytest.mark.parametrize(
    "hostile",
    [pickle.dumps([Quality.GOOD]), pickle.dumps(print), b"cos\nsystem\n(S'true'\ntR."],
    ids=["enum", "function", "os.system"],
)
def test_anything_naming_a_class_or_function_is_refused_with_what_it_named(hostile: bytes) -> None:
    with pytest.raises(pickle.UnpicklingError, match=r"outbox payload names \S+: refused"):
        plain_pickle.loads(hostile, "outbox payload")
