"""Logging: structlog everywhere, JSON lines for journald, readable lines on a terminal.

Event names are stable snake_case (`source_connected`, `service_failed`) with context bound as
keys (`source=`, `tag=`), so that journald and log shippers can filter on them. Libraries that
log through the standard `logging` module (asyncua, pymodbus, aiohttp) come out through the same
renderer, at warning and above unless the agent runs at debug; our own drivers log through
`logging` too (they stand alone), at the agent's level, their `extra=` fields rendered as keys.

Every line goes to stderr, never stdout: stdout belongs to a command's output (`probe --json` is
one JSON document and nothing else), and journald takes both.

No output ever contains a secret: tracebacks are rendered without their frames' local variables
(structlog's default shows them, and a connect function's locals hold its password), and the
last step of both pipelines is a `SecretMask` that replaces every resolved secret value.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any, Literal, TextIO, cast

import structlog
from structlog.tracebacks import ExceptionDictTransformer

from edge_agent.redaction import SecretMask

LogFormat = Literal["auto", "json", "console"]

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def emitter(logger: Any) -> Callable[..., None]:
    """`emit(level, event, **fields)` through a structlog logger: what `Condition` logs with."""

    def emit(level: str, event: str, **fields: Any) -> None:
        getattr(logger, level)(event, **fields)

    return emit


class LossyStream:
    """A log stream whose writes never raise: a log line is worth less than the agent.

    With `edge-agent run | tee log` and tee killed, every write meets EPIPE; the signal handler's
    own log line would raise and the agent would not stop. On the first failed write the stream's
    descriptor is pointed at /dev/null, so that later writes, the interpreter's final flush and
    libraries writing to the same stream are silent too. A closed stream (ValueError) likewise.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.lost = False

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except (OSError, ValueError):
            self._lose()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except (OSError, ValueError):
            self._lose()

    def isatty(self) -> bool:
        try:
            return self._stream.isatty()
        except (OSError, ValueError):
            return False

    def _lose(self) -> None:
        if self.lost:
            return
        self.lost = True
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        with contextlib.suppress(OSError, ValueError):
            self._stream.flush()  # the buffered remainder now goes to /dev/null

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def configure_logging(
    level: str = "info",
    fmt: LogFormat = "auto",
    stream: TextIO | None = None,
    mask: SecretMask | None = None,
) -> None:
    """Set up structlog (and stdlib logging) once per process; calling again reconfigures.

    `mask` knows the secret values to keep out of the output (`SecretMask.learn` adds more).
    """
    mask = mask if mask is not None else SecretMask()
    out = cast(TextIO, LossyStream(stream if stream is not None else sys.stderr))
    use_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    levelno = _LEVELS.get(level.lower(), logging.INFO)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer = _renderer(use_json, out, shared)
    # The mask sees the values before rendering (where a renderer would escape them again) and
    # the rendered line after (where a traceback's text is).
    shared.append(mask)
    structlog.configure(
        processors=[*shared, renderer, mask],
        wrapper_class=structlog.make_filtering_bound_logger(levelno),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    _route_stdlib(out, levelno, [*shared], [renderer, mask])


def _renderer(use_json: bool, out: TextIO, shared: list[Any]) -> Any:
    """JSON lines (exceptions as dicts, no locals), or console lines with plain tracebacks."""
    if use_json:
        no_locals = ExceptionDictTransformer(show_locals=False)
        shared.append(structlog.processors.ExceptionRenderer(no_locals))
        return structlog.processors.JSONRenderer()
    # Plain tracebacks: rich's show locals and wrap long lines (a wrapped secret is no longer one
    # string the mask can find).
    return structlog.dev.ConsoleRenderer(
        colors=out.isatty(), exception_formatter=structlog.dev.plain_traceback
    )


def _route_stdlib(out: TextIO, levelno: int, shared: list[Any], last: list[Any]) -> None:
    """Libraries' stdlib logging through the same processors, renderer and mask."""
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_logger_name,
                structlog.stdlib.ExtraAdder(),
                *shared,
            ],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *last],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if levelno == logging.DEBUG else logging.WARNING)
    logging.getLogger("drivers").setLevel(levelno)
    # pymodbus warns of every refused connect ("Failed to connect", "Repeating....") and of late
    # answers; the Modbus driver reports the same failures once, with what to do, so pymodbus's
    # own lines are noise below error level (still there with --log-level debug).
    logging.getLogger("pymodbus").setLevel(
        logging.DEBUG if levelno == logging.DEBUG else logging.ERROR
    )


def mask_secrets(values: Iterable[str]) -> None:
    """Teach the configured pipelines' mask more secret values (a command that resolved a
    configuration after logging was set up: probe, balance)."""
    for processor in structlog.get_config()["processors"]:
        if isinstance(processor, SecretMask):
            processor.learn(values)
