"""What a configuration refers to outside itself, checked at load time: every secret resolves,
every key file reads, the state directory can be written.

`resolve_references` walks a validated configuration once, resolves each `SecretRef` (the value
is kept inside the reference, see `edge_agent.contracts.secrets`), tries to read each
certificate, private key and CA file and to write in `agent.state_dir`; what fails comes back as
a `RuleViolation` naming the key and the reference, never a value. `check-config` and `run`
report them like any other configuration error (exit 2), and a SIGHUP reload that fails them
changes nothing.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from edge_agent.config.rules import Loc, RuleViolation
from edge_agent.contracts.secrets import SecretError, SecretRef

# Path fields holding key material the agent must be able to read when it connects.
KEY_FILE_FIELDS = frozenset(
    {"certificate", "private_key", "ca_file", "trusted_server_certificates", "user_certificate",
     "user_private_key"}
)  # fmt: skip


def resolve_references(config: BaseModel) -> list[RuleViolation]:
    """Resolve every secret and read every key file of `config`; the problems, if any."""
    found: list[RuleViolation] = []
    for loc, name, value in _walk(config, ()):
        if isinstance(value, SecretRef):
            try:
                value.resolve()
            except SecretError as exc:
                found.append(RuleViolation(loc, str(exc), None))
        elif name in KEY_FILE_FIELDS and isinstance(value, Path):
            problem = _unreadable(value)
            if problem:
                found.append(RuleViolation(loc, problem, None))
    state_dir = getattr(getattr(config, "agent", None), "state_dir", None)
    if isinstance(state_dir, Path) and (problem := _unwritable_dir(state_dir)):
        found.append(RuleViolation(("agent", "state_dir"), problem, None))
    return found


def secret_values(config: BaseModel) -> list[str]:
    """Every resolved secret value of `config` (for the log mask)."""
    return [v.resolve() for _, _, v in _walk(config, ()) if isinstance(v, SecretRef)]


def _walk(node: Any, loc: Loc, name: str = "") -> Iterator[tuple[Loc, str, Any]]:
    """(location, field name, value) of every field below `node`, depth first."""
    if isinstance(node, SecretRef):
        yield loc, name, node
    elif isinstance(node, BaseModel):
        for field in type(node).model_fields:
            yield from _walk(getattr(node, field), (*loc, field), field)
    elif isinstance(node, list | tuple):
        for i, item in enumerate(node):
            yield from _walk(item, (*loc, i), name)
    else:
        yield loc, name, node


def _unreadable(path: Path) -> str | None:
    try:
        with path.open("rb") as f:
            f.read(1)
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror}"
    return None


def _unwritable_dir(path: Path) -> str | None:
    """Why the agent could not create `path` and write in it (None: it can). What this check
    creates it removes again: `check-config` leaves nothing behind."""
    missing: list[Path] = []
    probe = path
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    try:
        for directory in reversed(missing):
            directory.mkdir()
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        where = exc.filename or path
        return f"cannot create or write the state directory {path}: {exc.strerror} ({where})"
    finally:
        for directory in missing:
            with contextlib.suppress(OSError):
                directory.rmdir()
    return None
