"""The `edge-agent` command: one subcommand per job, each registered by the module that owns it.

To add a subcommand, give your module an `add_parser(subparsers)` that calls
`subparsers.add_parser(...)` and `set_defaults(func=handler)`, where `handler(args) -> int`
returns the exit code; then add one line to `SUBCOMMANDS`. A handler may raise `ConfigError`:
it is printed one problem per line on stderr and the command exits 2. Read the config with
`edge_agent.config.loader.add_set_argument(parser)` and `load_config(path, args.overrides)` so
that every subcommand understands `--set`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from edge_agent import __version__, demo, probe, runtime
from edge_agent.config.loader import ConfigError, add_set_argument, load_config, summary
from edge_agent.kpi import whatif
from edge_agent.logs import configure_logging

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

EXIT_CONFIG = runtime.EXIT_CONFIG


def _add_check_config(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "check-config",
        help="validate a config file and print a summary (starts nothing)",
        description="Validate FILE. Exit 0 and print a summary, or print every problem as "
        "'FILE: key.path: message (got: value)', one per line, and exit 2.",
    )
    parser.add_argument("file", metavar="FILE")
    add_set_argument(parser)
    parser.set_defaults(func=_check_config)


def _check_config(args: argparse.Namespace) -> int:
    cfg = load_config(args.file, args.overrides)
    print("\n".join(summary(cfg, args.file)))
    return 0


# One line per subcommand; the owner's module holds the parser and the handler.
SUBCOMMANDS: list[Callable[[Subparsers], None]] = [
    _add_check_config,
    runtime.add_parser,
    probe.add_parser,
    whatif.add_parser,
    demo.add_parser,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-agent",
        description="Plant-floor data acquisition and control agent for a copper smelter.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default=None,
        help="overrides agent.log_level",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level or "info")
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        for line in exc.lines:
            print(line, file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `edge-agent check-config plant.toml | head`: the reader left, which is not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return code


if __name__ == "__main__":
    sys.exit(main())
