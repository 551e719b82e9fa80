"""`make bench`: every benchmark module of this package in turn, each with its defaults.

A benchmark that fails is reported and the others still run (each writes its own section of
docs/performance.md); the exit status is non-zero if any failed.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
import traceback
from pathlib import Path

failed: list[str] = []
for info in sorted(pkgutil.iter_modules([str(Path(__file__).parent)]), key=lambda m: m.name):
    if info.name.startswith("_"):
        continue
    module = importlib.import_module(f"bench.{info.name}")
    if hasattr(module, "main"):
        sys.argv = [f"bench.{info.name}"]
        started = time.monotonic()
        try:
            module.main()
        except Exception:
            traceback.print_exc()
            failed.append(info.name)
        print(f"bench.{info.name}: {time.monotonic() - started:.0f} s", flush=True)
if failed:
    sys.exit(f"benchmarks failed: {', '.join(failed)}")
