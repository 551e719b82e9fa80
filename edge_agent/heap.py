"""The agent's garbage-collector settings: what start-up built is frozen, and the young
generations are collected less often.

Why: the agent keeps every tag's latest `Sample` (the TagStore, the sinks' report-by-exception
state) for a poll interval or longer, so at 10 000 tags most samples outlive two young
collections and reach the oldest generation. CPython runs a full collection whenever that
generation has grown by a quarter, and a full collection walks every object the process holds:
at 10 000 Modbus tags about 150 000 objects, 95–140 ms each, three or four every 4 s, about 10 %
of the acquisition layer's time (timed with `gc.callbacks` in `bench.acquisition`). Hardly
anything the agent allocates on its hot path is cyclic garbage: samples, batches and payloads
are freed by reference counting the moment they are dropped. So:

- `settle()` once the components run (and again a little later, after the first connections
  imported their protocol libraries, and after each reload): collect once, then `gc.freeze()`
  what survived (configuration, modules, catalogues, long-lived clients), so that later full
  collections walk only what was allocated since (3–5 ms at 10 000 tags);
- the young generation is collected every `YOUNG_THRESHOLD` net allocations instead of 700, so
  that fewer short-lived samples are promoted in the first place (GC 0.2–0.6 % of the layer's
  time with both). Cyclic garbage, where some appears, waits at most that many allocations.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 20_000
OLDER_THRESHOLDS = (20, 20)
# After the first connections: drivers import their protocol libraries when they first run.
SETTLE_AGAIN_S = 10.0


def settle() -> None:
    """Collect what start-up left behind and freeze the rest; safe to call again."""
    gc.unfreeze()  # what an earlier settle froze and a reload has since dropped is collected now
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
