"""`edge-agent balance`: the heat balance and the advisor at the configured or a live point.

The model is `edge_agent.kpi.whatif`; this module reads the command line and, with `--live`,
one snapshot of the plant through `probe`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import TYPE_CHECKING, Any

from edge_agent.commands import probe
from edge_agent.commands.arguments import add_config_argument, command_parser
from edge_agent.config import AgentConfig
from edge_agent.config.loader import ConfigError, add_set_argument, load_config
from edge_agent.config.resources import secret_values
from edge_agent.contracts.samples import Sample
from edge_agent.kpi.whatif import evaluate, render
from edge_agent.logs import mask_secrets

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

# A what-if answer built partly from configured values is not the live answer asked for.
EXIT_FALLBACK = 1


def add_parser(subparsers: Subparsers) -> None:
    parser = command_parser(
        subparsers,
        "balance",
        help="heat balance and advisor for the configured or a live operating point (what-if)",
        description="Compute the furnace heat balance and the advisor's recommendations at the\n"
        "operating point in [kpi.heat_balance.operating_point], each value overridable with\n"
        "--tag TAG=VALUE (in the tag's unit), or at a live snapshot with --live.",
        examples=[
            "edge-agent balance --config config/demo.toml --tag fsf.conc_feed_rate=190",
            "edge-agent balance /etc/edge-agent/agent.toml --live --json",
        ],
        exits=[
            "0      computed from the values asked for",
            "1      --live: an input could not be read and the configured value was used",
        ],
    )
    add_config_argument(parser)
    parser.add_argument(
        "--tag", action="append", default=[], metavar="TAG=VALUE", dest="tags",
        help="override one input, e.g. --tag fsf.conc_feed_rate=190 (repeatable)",
    )  # fmt: skip
    parser.add_argument("--live", action="store_true", help="read the inputs once from the plant")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_set_argument(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    mask_secrets(secret_values(cfg))  # its drivers log at debug what they send
    overrides = _parse_tags(args.tags, cfg)
    result = evaluate(cfg, overrides, live_snapshot(cfg) if args.live else None)
    fallback = fallback_inputs(result) if args.live else []
    if args.json:
        if args.live:
            result = {"live_fallback": fallback, **result}
        print(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        if fallback:
            print(fallback_line(fallback, len(result["inputs"])))
        print(render(result))
    return EXIT_FALLBACK if fallback else 0


def fallback_inputs(result: dict[str, Any]) -> list[str]:
    """The inputs that `--live` could not read and took from the configured operating point."""
    return [tag for tag, i in result["inputs"].items() if i["from"] == "config"]


def fallback_line(fallback: list[str], total: int) -> str:
    return (
        f"NOT LIVE: {len(fallback)} of {total} inputs could not be read and use the configured "
        f"operating point: {', '.join(fallback)}"
    )


def _parse_tags(items: list[str], cfg: AgentConfig) -> dict[str, float]:
    known = cfg.tags()
    out: dict[str, float] = {}
    problems = []
    for item in items:
        tag, sep, raw = item.partition("=")
        tag = tag.strip()
        if not sep or tag not in known:
            problems.append(f"--tag {item!r}: expected TAG=VALUE with a configured tag id")
            continue
        try:
            out[tag] = float(raw)
        except ValueError:
            problems.append(f"--tag {item!r}: value {raw!r} is not a number")
    if problems:
        raise ConfigError(problems)
    return out


def live_snapshot(cfg: AgentConfig) -> dict[str, Sample]:
    """Every configured tag read once; connection problems are warnings on stderr."""
    errors: list[str] = []
    rows = asyncio.run(probe.probe(cfg, errors))
    for error in errors:
        print(f"warning: {error}", file=sys.stderr)
    return {row.sample.tag: row.sample for row in rows}
