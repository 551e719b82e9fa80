"""Where a running configuration came from: the file and the `--set` overrides on top of it.

An acquisition worker process loads and validates the same file itself (docs/operations.md,
"Acquisition workers"); it gets the path on its command line and the overrides over its stdin
pipe, never on argv, where `ps` would show a secret one of them may carry.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ConfigOrigin:
    path: Path
    overrides: tuple[str, ...] = ()
    log_level: str | None = None  # `--log-level`, when given: the workers log as the main does
