"""A configuration dict written as a TOML file, for tests that start processes on a real file
(`edge-agent run`, acquisition workers). Tables become `[section]` / `[[section]]` headers, and
everything inside them inline values, which TOML allows at any depth."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def write_toml(path: Path, doc: dict[str, Any]) -> Path:
    lines: list[str] = []
    for key, value in doc.items():
        if isinstance(value, dict):
            lines += [f"[{key}]", *(f"{k} = {_inline(v)}" for k, v in value.items())]
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for entry in value:
                lines += [f"[[{key}]]", *(f"{k} = {_inline(v)}" for k, v in entry.items())]
        else:
            lines.insert(0, f"{key} = {_inline(value)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _inline(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return (
            ("nan" if math.isnan(value) else ("inf" if value > 0 else "-inf"))
            if not math.isfinite(value)
            else repr(value)
        )
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_inline(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_inline(v) for v in value) + "]"
    return json.dumps(str(value))
