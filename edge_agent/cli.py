"""The `edge-agent` command: the parser registry; each subcommand lives in `edge_agent.commands`.

To add a subcommand, write `edge_agent/commands/NAME.py` with an `add_parser(subparsers)` that calls
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
from typing import TYPE_CHECKING, cast

from edge_agent import __version__
from edge_agent.commands import alarms, balance, check_config, demo, probe, run
from edge_agent.commands.arguments import CommandLineParser, add_global_options, epilog
from edge_agent.config.loader import ConfigError
from edge_agent.logs import configure_logging
from edge_agent.runtime import EXIT_CONFIG

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

# One line per subcommand; its module holds the parser and the handler.
SUBCOMMANDS: list[Callable[[Subparsers], None]] = [
    check_config.add_parser,
    run.add_parser,
    probe.add_parser,
    balance.add_parser,
    demo.add_parser,
    alarms.add_parser,
]


def build_parser() -> argparse.ArgumentParser:
    parser = CommandLineParser(
        prog="edge-agent",
        description="Plant-floor data acquisition and control agent for a copper smelter.",
        epilog=epilog(
            ["edge-agent check-config /etc/edge-agent/agent.toml", "edge-agent demo"],
            ["0      success", "1      failure (see each command's --help)"],
        )
        + "\n\n'edge-agent COMMAND --help' shows each command's options, examples and exits.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    add_global_options(parser, top=True)
    # Each subparser is a CommandLineParser too; the commands need only ArgumentParser's API.
    subparsers = cast(
        "Subparsers", parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    )
    for add in SUBCOMMANDS:
        add(subparsers)
    for subparser in subparsers.choices.values():
        add_global_options(subparser, top=False)
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
