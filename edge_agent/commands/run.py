"""`edge-agent run`: run the agent on one config file until SIGTERM/SIGINT.

Exit codes (also in the README, and what systemd's Restart= logic sees):
    0    clean stop after SIGTERM or SIGINT
    1    a failure: startup error, or a service that did not stop within agent.shutdown_timeout_s
    2    configuration error (nothing was started)
    128+N  a second signal N during shutdown: stopped at once (130 for Ctrl-C twice)
"""

from __future__ import annotations

import argparse
import faulthandler
from typing import TYPE_CHECKING

from edge_agent.config_loader import add_set_argument, load_config
from edge_agent.logs import configure_logging
from edge_agent.runtime import run_blocking

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]


def add_parser(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run the agent until SIGTERM/SIGINT",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", required=True, metavar="FILE", help="the plant's TOML file")
    add_set_argument(parser)
    parser.set_defaults(func=_run_command)


def _run_command(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)  # ConfigError: cli prints it, exits 2
    configure_logging(args.log_level or cfg.agent.log_level, cfg.agent.log_format)
    # systemd's watchdog aborts a hung agent with SIGABRT: print every thread's stack first.
    faulthandler.enable()
    return run_blocking(cfg, reload=lambda: load_config(args.config, args.overrides))
