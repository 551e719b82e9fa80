"""`edge-agent check-config`: validate a config file and print a summary; starts nothing."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from edge_agent.config_loader import add_set_argument, load_config, summary

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]


def add_parser(subparsers: Subparsers) -> None:
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
