"""`edge-agent run`: run the agent on one config file until SIGTERM/SIGINT.

The exit status is what systemd's Restart= logic sees (the unit does not restart on 2).
"""

from __future__ import annotations

import argparse
import faulthandler
from pathlib import Path
from typing import TYPE_CHECKING

from edge_agent import runtime
from edge_agent.commands.arguments import add_config_argument, command_parser
from edge_agent.commands.check_config import idle_warnings
from edge_agent.config import AgentConfig
from edge_agent.config.loader import ConfigError, add_set_argument, load_config
from edge_agent.config.origin import ConfigOrigin
from edge_agent.config.resources import secret_values
from edge_agent.logs import configure_logging
from edge_agent.redaction import SecretMask
from edge_agent.runtime import run_blocking

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]


def add_parser(subparsers: Subparsers) -> None:
    parser = command_parser(
        subparsers,
        "run",
        help="run the agent until SIGTERM/SIGINT",
        description="Run the agent on FILE until SIGTERM or SIGINT; SIGHUP re-reads FILE and\n"
        "applies it when valid. Logs go to stdout (JSON lines off a terminal).",
        examples=[
            "edge-agent run --config /etc/edge-agent/agent.toml",
            "edge-agent run plant.toml --set agent.state_dir=state --log-level debug",
        ],
        exits=[
            "0      clean stop after SIGTERM or SIGINT",
            "1      startup error, or a component did not stop within agent.shutdown_timeout_s",
            "128+N  a second signal N during the stop ended it at once (130: Ctrl-C twice)",
        ],
    )
    add_config_argument(parser)
    add_set_argument(parser)
    parser.add_argument(
        "--force",
        action="store_true",
        help="start even with no enabled source or no sink (check-config names what is missing)",
    )
    parser.set_defaults(func=_run_command)


def _run_command(args: argparse.Namespace) -> int:
    # Secrets are resolved here, before anything starts: ConfigError (cli prints it, exits 2).
    cfg = load_config(args.config, args.overrides)
    runtime.check_wiring(cfg, str(args.config))
    idle = idle_warnings(cfg)
    if idle and not args.force:
        raise ConfigError(
            [f"{args.config}: {warning}" for warning in idle]
            + ["not started: fix the file, or give --force to run it as it is"]
        )
    mask = SecretMask(secret_values(cfg))  # no log line may show them
    configure_logging(args.log_level or cfg.agent.log_level, cfg.agent.log_format, mask=mask)
    # systemd's watchdog aborts a hung agent with SIGABRT: print every thread's stack first.
    faulthandler.enable()

    def reload() -> AgentConfig:
        new = load_config(args.config, args.overrides)
        runtime.check_wiring(new, str(args.config))
        mask.learn(secret_values(new))  # before any component holds the new values
        return new

    origin = ConfigOrigin(Path(args.config).resolve(), tuple(args.overrides), args.log_level)
    return run_blocking(cfg, reload=reload, origin=origin)
