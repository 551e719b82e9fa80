"""Reading the configuration file: TOML, `--set` overrides, and errors an operator can act on.

Every problem in a file is reported at once, one line each, as

    FILE: key.path: message (got: value)

where the key path uses the names an operator writes: entries of arrays of tables are named by
their `name` (sources), `id` (tags) or `tag` (control.allow), as in
`source.fsf.tag.fsf.matte_temp.max`, the same addressing that `--set` accepts. A problem in a
value given with `--set` names `--set` instead of the file. Secret values are never printed.

A valid file is not yet a usable one: every secret reference is resolved and every certificate,
key and CA file read (`config.resources`), and what fails is reported the same way.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from edge_agent.config.coercion import silent_coercions
from edge_agent.config.resources import resolve_references
from edge_agent.config.root import AgentConfig
from edge_agent.config.rules import Loc, RuleViolation, RuleViolations, raw_rule_violations
from edge_agent.config.sources import ModbusSource

__all__ = [
    "ConfigError",
    "add_set_argument",
    "apply_override",
    "load_config",
    "parse_override",
    "summary",
]

OVERRIDE_ORIGIN = "--set"


class ConfigError(Exception):
    """The configuration cannot be used; `lines` holds one complete message per problem."""

    def __init__(self, lines: Sequence[str]) -> None:
        self.lines = list(lines)
        super().__init__("\n".join(self.lines))


def load_config(
    path: Path | str, overrides: Iterable[str] = (), *, resolve: bool = True
) -> AgentConfig:
    """Read, override and validate a configuration file; raise `ConfigError` with every problem.

    With `resolve` (what every command does), secrets are resolved and key files read too;
    without, only the file's own content is judged (an example file on a developer's machine).
    """
    path = Path(path)
    data = _read_toml(path)
    overridden: set[Loc] = set()
    problems: list[str] = []
    for item in overrides:
        try:
            key, value = parse_override(item)
            overridden.add(apply_override(data, key, value))
        except ConfigError as exc:
            problems.extend(exc.lines)
    if problems:
        raise ConfigError(problems)
    coerced = [_Problem(*problem, True) for problem in silent_coercions(data, AgentConfig)]
    try:
        cfg = AgentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, data, str(path), overridden, coerced)) from None
    if coerced:
        raise ConfigError([_format(p, data, str(path), overridden) for p in coerced])
    # Secrets resolve and key files read now, once, or nothing starts.
    unusable = resolve_references(cfg) if resolve else []
    if unusable:
        unreadable = [_Problem(v.loc, v.message, None, False) for v in unusable]  # names the file
        raise ConfigError([_format(p, data, str(path), overridden) for p in unreadable])
    return cfg


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 text (byte {exc.start})"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: {_toml_error(str(exc))}"]) from None
    except RecursionError:
        raise ConfigError([f"{path}: {TOO_DEEP}"]) from None
    if _depth(data) > MAX_DEPTH:
        raise ConfigError([f"{path}: {TOO_DEEP}"])
    return data


# No table of the agent's is nested more than a few levels; beyond this, the file is not ours
# (and would cost the validators their recursion limit).
MAX_DEPTH = 32
TOO_DEEP = f"arrays or tables nested more than {MAX_DEPTH} levels deep: not a configuration"


def _depth(node: Any, level: int = 0) -> int:
    if level > MAX_DEPTH:
        return level
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    return max((_depth(child, level + 1) for child in children), default=level)


def _toml_error(message: str) -> str:
    """tomllib says 'Invalid value (at line 3, column 7)'; lead with the position instead."""
    match = re.fullmatch(r"(.*) \(at line (\d+), column (\d+)\)", message)
    if match is None:
        return f"invalid TOML: {message}"
    what, line, column = match.groups()
    return f"line {line}, column {column}: invalid TOML: {what[:1].lower()}{what[1:]}"


# ------------------------------------------------------------------------------------- overrides


def add_set_argument(parser: argparse.ArgumentParser) -> None:
    """`--set key.path=value` (repeatable) for every subcommand that reads the config file;
    the values land in `args.overrides`, ready for `load_config`."""
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        dest="overrides",
        help="override one config value, e.g. --set mqtt.port=1884 or "
        "--set source.fsf.endpoint=opc.tcp://10.0.0.5:4840/ (repeatable)",
    )


def parse_override(item: str) -> tuple[str, Any]:
    """`key.path=value`; the value is read as a TOML literal (`1884`, `true`, `[1, 2]`,
    `{ env = "X" }`, `"text"`), and anything that is not one is taken as a plain string."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError([f"{OVERRIDE_ORIGIN} {item!r}: expected key.path=value"])
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except (tomllib.TOMLDecodeError, RecursionError):
        value = raw
    if _depth(value) > MAX_DEPTH:
        raise ConfigError([f"{OVERRIDE_ORIGIN} {key}: {TOO_DEEP}"])
    return key, value


def apply_override(data: dict[str, Any], key: str, value: Any) -> Loc:
    """Set `key` (dotted; array entries by name or id) in raw config data; return its location.

    Missing tables are created (`--set mqtt.port=1884` enables the MQTT sink with defaults);
    missing array entries are not, since an entry needs more than one key.
    """
    parts = key.split(".")
    node: Any = data
    loc: list[str | int] = []
    i = 0
    while i < len(parts) - 1 or isinstance(node, list):
        if isinstance(node, list):
            index, used = _find_entry(node, parts[i:])
            if index is None:
                names = ", ".join(_entry_names(node)) or "none"
                raise ConfigError(
                    [
                        f"{OVERRIDE_ORIGIN} {key}: {'.'.join(parts[:i])} has no entry "
                        f"{parts[i]!r} (entries: {names})"
                    ]
                )
            if i + used == len(parts):
                raise ConfigError([f"{OVERRIDE_ORIGIN} {key}: names a whole entry, not a key"])
            node, i = node[index], i + used
            loc.append(index)
            continue
        child = node.get(parts[i])
        if child is None:
            child = node[parts[i]] = {}
        elif not isinstance(child, dict | list):
            where = ".".join(parts[: i + 1])
            raise ConfigError([f"{OVERRIDE_ORIGIN} {key}: {where} is a value, not a table"])
        loc.append(parts[i])
        node, i = child, i + 1
    node[parts[-1]] = value
    loc.append(parts[-1])
    return tuple(loc)


def _entry_label(entry: Any) -> str | None:
    if isinstance(entry, dict):
        for field in ("name", "id", "tag"):
            if isinstance(entry.get(field), str):
                return str(entry[field])
    return None


def _entry_names(entries: list[Any]) -> list[str]:
    return [label for e in entries if (label := _entry_label(e)) is not None]


def _find_entry(entries: list[Any], parts: list[str]) -> tuple[int | None, int]:
    """The entry named by the longest prefix of `parts` (tag ids contain dots); a bare index
    works too. Returns (index, number of parts used)."""
    for used in range(len(parts), 0, -1):
        wanted = ".".join(parts[:used])
        for index, entry in enumerate(entries):
            if _entry_label(entry) == wanted:
                return index, used
    if parts[0].isdigit() and int(parts[0]) < len(entries):
        return int(parts[0]), 1
    return None, 0


# ---------------------------------------------------------------------------------------- errors


@dataclass(frozen=True)
class _Problem:
    loc: Loc  # raw location: list indices, no union discriminators
    message: str
    value: Any
    show_value: bool


def _describe(
    exc: ValidationError,
    data: dict[str, Any],
    origin: str,
    overridden: set[Loc],
    coerced: Sequence[_Problem] = (),
) -> list[str]:
    problems: list[_Problem] = []
    rules_failed = False
    for err in exc.errors():
        ctx_error = (err.get("ctx") or {}).get("error")
        if isinstance(ctx_error, RuleViolations):
            rules_failed = True  # reported below, from the raw data, with their locations
            continue
        problems.append(_from_pydantic(err, data))
    # When fields failed, pydantic never ran the cross-field rules: run them on the raw data.
    violations = raw_rule_violations(data)
    if rules_failed or violations:
        problems.extend(_from_rule(v) for v in violations)
    reported = {p.loc for p in problems}
    problems.extend(p for p in coerced if p.loc not in reported)
    return [_format(p, data, origin, overridden) for p in problems]


def _from_pydantic(err: ErrorDetails, data: dict[str, Any]) -> _Problem:
    loc = _raw_loc(err["loc"], data)
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        message = "unknown key"
    elif err["type"] == "missing":
        message = "required key is missing"
    show = err["type"] != "missing" and not isinstance(err["input"], dict)
    return _Problem(loc, message, err["input"], show)


def _from_rule(v: RuleViolation) -> _Problem:
    return _Problem(v.loc, v.message, v.value, True)


def _raw_loc(loc: tuple[int | str, ...], data: Any) -> Loc:
    """Drop what pydantic adds that is not in the file: union discriminator values."""
    out: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and isinstance(part, str) and part not in node:
            if part in {str(v) for v in node.values() if isinstance(v, str)}:
                continue  # a tagged union's tag, e.g. 'modbus' in source.0.modbus.tag
            node = None
        elif isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            node = None
        out.append(part)
    return tuple(out)


def _key_path(loc: Loc, data: Any) -> str:
    """Raw location -> the dotted path an operator writes, list entries by name or id."""
    names: list[str] = []
    node = data
    for part in loc:
        if isinstance(node, list) and isinstance(part, int):
            entry = node[part] if part < len(node) else None
            label = _entry_label(entry)
            # An entry whose name is not unique (a duplicate tag id) is named by its position,
            # which `--set` accepts too.
            unique = label is not None and _entry_names(node).count(label) == 1
            names.append(label if unique and label is not None else str(part))
            node = entry
        else:
            names.append(str(part))
            node = node.get(part) if isinstance(node, dict) else None
    return ".".join(names) or "(top level)"


def _format(problem: _Problem, data: dict[str, Any], origin: str, overridden: set[Loc]) -> str:
    where = OVERRIDE_ORIGIN if problem.loc in overridden else origin
    text = f"{where}: {_key_path(problem.loc, data)}: {problem.message}"
    if not problem.show_value:
        return text
    if _is_secret(problem.loc):
        return f"{text} (got: <secret, not shown>)"
    return f"{text} (got: {_show(problem.value)})"


_SECRET_KEY = re.compile(
    r"pass|pasw|pwd|token|secret|credential|private_key|api_key", re.IGNORECASE
)


def _secret_fields() -> set[str]:
    """Names of every config field typed as a SecretRef, whichever section defines it."""
    names: set[str] = set()
    todo: list[type[BaseModel]] = [AgentConfig]
    seen: set[type[BaseModel]] = set()
    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen.add(model)
        for name, field in model.model_fields.items():
            if "SecretRef" in str(field.annotation):
                names.add(name)
            todo.extend(_models_in(field.annotation))
    return names


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in getattr(annotation, "__args__", ()) for m in _models_in(arg)]


def _is_secret(loc: Loc) -> bool:
    secret_fields = _secret_fields()
    return any(
        isinstance(part, str) and (part in secret_fields or _SECRET_KEY.search(part))
        for part in loc
    )


def _show(value: Any) -> str:
    """A value the way it would be written in TOML, shortened."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float) and not math.isfinite(value):
        text = str(value)  # TOML's spelling: inf, -inf, nan
    elif value is None:
        text = "nothing"
    elif isinstance(value, str | int | float | list | dict):
        text = json.dumps(value, ensure_ascii=False, default=str)
    else:
        text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


# --------------------------------------------------------------------------------------- summary


def summary(cfg: AgentConfig, path: Path | str) -> list[str]:
    """What `check-config` prints for a valid file: enough to see it is the file you meant."""
    tags = cfg.tags()
    writable = sum(1 for t in tags.values() if t.writable)
    lines = [
        f"{path}: valid",
        f"  agent: site {cfg.agent.site}, instance {cfg.agent.instance_id}, "
        f"state in {cfg.agent.state_dir}",
        f"  sources: {len(cfg.source)}, tags: {len(tags)} ({writable} writable)",
    ]
    for src in cfg.source:
        mode = getattr(src, "mode", "poll" if isinstance(src, ModbusSource) else "subscribe")
        state = "" if src.enabled else ", disabled"
        lines.append(
            f"    {src.name}: {src.protocol} {src.endpoint}, {len(src.tag)} tags, "
            f"{mode} every {src.poll_interval_s:g} s{state}"
        )
    kpis = ", ".join(name for name, s in cfg.kpi.sections().items() if s.enabled) or "none"
    lines.append(f"  kpis: {kpis}")
    sinks = []
    if cfg.mqtt is not None:
        sinks.append(f"mqtt ({cfg.mqtt.format}) {cfg.mqtt.host}:{cfg.mqtt.port}")
    if cfg.influx is not None:
        sinks.append(f"influx ({cfg.influx.api}) {cfg.influx.url}")
    lines.append(f"  sinks: {', '.join(sinks) or 'none'}")
    lines.append(f"  control: {cfg.control.mode}")
    return lines
