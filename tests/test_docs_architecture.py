"""docs/architecture.md against the code: it names no file that does not exist, and its floors
are the layers that `make lint` enforces."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "architecture.md"


def _tree() -> list[str]:
    """Every file of the checkout (not the venv, git's or the tools' caches), root-relative."""
    files = []
    for top, dirs, names in os.walk(ROOT):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d != "node_modules"]
        rel = Path(top).relative_to(ROOT).as_posix()
        files += [name if rel == "." else f"{rel}/{name}" for name in names]
    return files


FILES = _tree()
DIRS = {Path(f).parent.as_posix() + "/" for f in FILES}


def _floors() -> str:
    text = DOC.read_text()
    block = text.split("## The floors", 1)[1].split("```", 2)[1]
    assert block.strip(), "the floors drawing is empty"
    return block


def test_every_file_the_document_names_exists() -> None:
    named = set(re.findall(r"`([\w/]+(?:\.py|/))`", DOC.read_text()))
    assert len(named) > 40  # the document names its modules; the pattern still finds them
    missing = sorted(
        name
        for name in named
        if not any(f == name or f.endswith("/" + name) for f in FILES)
        and not any(d == name or d.endswith("/" + name) for d in DIRS)
    )
    assert missing == [], f"docs/architecture.md names what the code does not have: {missing}"


def test_the_floors_are_the_layers_lint_enforces() -> None:
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    [layers] = [c["layers"] for c in contracts["contracts"] if c["type"] == "layers"]
    floors = [line for line in _floors().splitlines() if re.match(r"\s*\d+\s", line)]
    assert len(floors) == len(layers), (floors, layers)
    for floor, layer in zip(floors, layers, strict=True):
        for module in (m.strip() for m in layer.split("|")):
            short = module.removeprefix("edge_agent.")
            assert re.search(rf"\b{re.escape(short)}\b", floor), (module, floor)
