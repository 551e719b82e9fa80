"""`edge-agent check-config`: validate a config file and print a summary; starts nothing."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from edge_agent import runtime
from edge_agent.commands.arguments import add_config_argument, command_parser
from edge_agent.config import AgentConfig
from edge_agent.config.loader import add_set_argument, load_config, summary
from edge_agent.sinks import sink_names
from edge_agent.workers import plan_shards

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]


def add_parser(subparsers: Subparsers) -> None:
    parser = command_parser(
        subparsers,
        "check-config",
        help="validate a config file and print a summary (starts nothing)",
        description="Validate FILE as `run` would: its content, and that every secret resolves,\n"
        "every certificate, key and CA file reads and the state directory can be written.\n"
        "Exit 0 and print a summary, or print every problem as\n"
        "'FILE: key.path: message (got: value)', one per line, and exit 2.",
        examples=[
            "edge-agent check-config /etc/edge-agent/agent.toml",
            "edge-agent check-config --config plant.toml --set mqtt.port=1884",
            "edge-agent check-config --content-only plant.toml   # away from the plant's machine",
        ],
        exits=["0      the file is valid (warnings, if any, on stderr)"],
    )
    add_config_argument(parser)
    add_set_argument(parser)
    parser.add_argument(
        "--content-only",
        action="store_true",
        help="judge the file's content only: resolve no secret, read no key file, probe no "
        "state directory (for a file checked away from the machine that will run it)",
    )
    parser.set_defaults(func=_check_config)


def _check_config(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides, resolve=not args.content_only)
    runtime.check_wiring(cfg, str(args.config))
    print("\n".join(summary(cfg, args.config)))
    if cfg.agent.acquisition_workers:
        print(f"  acquisition workers: {cfg.agent.acquisition_workers}")
        print("\n".join(plan_shards(cfg).describe()))
    for warning in idle_warnings(cfg):
        print(f"{args.config}: warning: {warning}", file=sys.stderr)
    return 0


def idle_warnings(cfg: AgentConfig) -> list[str]:
    """What makes a valid file start an agent that does nothing useful (an empty file does).

    `check-config` prints these as warnings; `run` refuses to start on them unless `--force`.
    """
    warnings = []
    if not any(source.enabled for source in cfg.source):
        warnings.append(
            "no enabled [[source]]: the agent would read nothing "
            "(add one; config/plant.example.toml shows every kind)"
        )
    if not sink_names(cfg):
        warnings.append(
            "no sink: neither [mqtt] nor [influx] is configured, so no sample would leave "
            "this machine (add one; config/plant.example.toml shows both)"
        )
    return warnings
