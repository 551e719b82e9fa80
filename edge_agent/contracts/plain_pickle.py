"""Pickles of plain data only, for what the agent writes and reads back itself: the outbox's
rows on disk and the acquisition workers' frames on their pipes.

Pickle is the cheapest exact encoding CPython has for lists of tuples of str, numbers, bool and
None (NaN and the infinities included; JSON formats every float as text, about 2 µs a sample).
Loading an arbitrary pickle can run code, so `loads` refuses every class and function: a
tampered outbox file or a garbled frame is an error that names what it asked for, never a
program.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

PROTOCOL = 5


class _PlainUnpickler(pickle.Unpickler):
    """Loads lists, tuples, dicts, str, bytes, numbers, bool and None; no class, no function."""

    def __init__(self, payload: bytes, what: str) -> None:
        super().__init__(io.BytesIO(payload))
        self.what = what

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"{self.what} names {module}.{name}: refused")


def loads(payload: bytes, what: str) -> Any:
    """`payload` loaded if it holds plain data only; `what` names it in the refusal."""
    return _PlainUnpickler(payload, what).load()


def dumps(payload: object, *, shared: bool = True) -> bytes:
    """`payload` pickled. `shared=False` skips the memo (`Pickler.fast`): where nothing in the
    payload is shared or refers to itself, the memo's bookkeeping for every tuple and string (a
    third of the time) buys nothing; the output is an ordinary pickle any unpickler reads."""
    if shared:
        return pickle.dumps(payload, protocol=PROTOCOL)
    out = io.BytesIO()
    pickler = pickle.Pickler(out, protocol=PROTOCOL)
    pickler.fast = True
    pickler.dump(payload)
    return out.getvalue()
