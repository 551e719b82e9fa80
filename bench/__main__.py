"""`make bench`: every benchmark module of this package in turn, each with its defaults."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

for info in sorted(pkgutil.iter_modules([str(Path(__file__).parent)]), key=lambda m: m.name):
    if info.name.startswith("_"):
        continue
    module = importlib.import_module(f"bench.{info.name}")
    if hasattr(module, "main"):
        sys.argv = [f"bench.{info.name}"]
        module.main()
