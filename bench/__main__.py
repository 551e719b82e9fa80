"""Run every benchmark of the package, one after another, each with its default arguments.

A module takes part by defining `main()`; each writes its own section of docs/performance.md.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import bench


def main() -> None:
    names = sorted(
        m.name for m in pkgutil.iter_modules(bench.__path__) if not m.name.startswith("_")
    )
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        run = getattr(module, "main", None)
        if run is None:
            continue
        print(f"== bench.{name}", flush=True)
        saved, sys.argv = sys.argv, [f"bench.{name}"]
        try:
            run()
        finally:
            sys.argv = saved


if __name__ == "__main__":
    main()
