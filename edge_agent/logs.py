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

import logging
import sys
from typing import Any, Literal, TextIO

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
    out = stream if stream is not None else sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    levelno = _LEVELS.get(level.lower(), logging.INFO)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any
    if use_json:
        no_locals = ExceptionDictTransformer(show_locals=False)
        shared.append(structlog.processors.ExceptionRenderer(no_locals))
        renderer = structlog.processors.JSONRenderer()
    else:
        # Plain tracebacks: rich's show locals and wrap long lines (a wrapped secret is no
        # longer one string the mask can find).
        renderer = structlog.dev.ConsoleRenderer(
            colors=out.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    # The mask sees the values before rendering (where a renderer would escape them again) and
    # the rendered line after (where a traceback's text is).
    shared.append(mask)
    structlog.configure(
        processors=[*shared, renderer, mask],
        wrapper_class=structlog.make_filtering_bound_logger(levelno),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )

    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_logger_name,
                structlog.stdlib.ExtraAdder(),
                *shared,
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                renderer,
                mask,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if levelno == logging.DEBUG else logging.WARNING)
    logging.getLogger("drivers").setLevel(levelno)
