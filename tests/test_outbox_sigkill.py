"""The outbox's durability bound under SIGKILL, against a real process killed mid-run.

Bound (documented in edge_agent/outbox/__init__.py): every batch whose `append()` returned is on
disk after a SIGKILL; only batches whose `append()` had not returned may be missing, and what
survives is always a gap-free prefix in append order.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from edge_agent.outbox import Batch, Outbox

WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from edge_agent.outbox import Batch, Outbox
    from edge_agent.contracts.samples import Quality, Sample

    async def main() -> None:
        outbox = await Outbox.open(Path(sys.argv[1]), ["mqtt"])
        n = 0
        async def one(i: int) -> None:
            print("appending", i, flush=True)
            await outbox.append([Sample("fsf.seq", i * 10 + k, Quality.GOOD, i) for k in range(10)])
            print("committed", i, flush=True)
        while True:  # several appends in flight at once, as several sources would do
            await asyncio.gather(*(one(n + j) for j in range(4)))
            n += 4

    asyncio.run(main())
    """
)


async def read_all(path: Path) -> list[Batch]:
    outbox = await Outbox.open(path, ["mqtt"])
    try:
        return await outbox.cursor("mqtt").read(max_samples=10_000_000)
    finally:
        await outbox.close()


def test_sigkill_loses_nothing_whose_append_returned(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    confirmed: list[int] = []
    started: list[int] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        while len(confirmed) < 400 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith("committed "):  # other lines are the agent's logs
                confirmed.append(int(line.split()[1]))
            elif line.startswith("appending "):
                started.append(int(line.split()[1]))
        proc.send_signal(signal.SIGKILL)
        # Lines already written to the pipe before the kill were confirmed too. Read them through
        # the same file object: communicate() would skip what readline() has buffered already.
        proc.wait(timeout=10)
        rest = proc.stdout.read()
        confirmed += [int(x.split()[1]) for x in rest.splitlines() if x.startswith("committed ")]
        started += [int(x.split()[1]) for x in rest.splitlines() if x.startswith("appending ")]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert len(confirmed) >= 400, "the writer did not get going"

    batches = asyncio.run(read_all(path))
    on_disk = [b.samples[0].acq_ns for b in batches]
    assert all(len(b.samples) == 10 for b in batches), "a batch was torn"
    assert set(confirmed) <= set(on_disk), "a confirmed batch was lost"
    # Within a group commit the four concurrent appends may land in any order, but nothing is
    # missing below the last batch on disk: a gap-free prefix of the appended batches.
    assert sorted(on_disk) == list(range(len(on_disk)))
    # What survived without confirmation had at least been handed to append(): the in-flight ones.
    assert set(on_disk) <= set(started)
