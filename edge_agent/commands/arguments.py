"""What every subcommand's command line shares: the config file, global options, help layout.

One rule for the config file, the same in every command: give it as `--config FILE` or as a
plain `FILE`, either way. Global options (`--log-level`) are accepted before or after the
subcommand, so `edge-agent run --config X --log-level warning` means what it says.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

LOG_LEVELS = ("debug", "info", "warning", "error")
# Where the resolved config path lands; handlers read `args.config`.
_POSITIONAL = "config_file"
_OPTION = "config_option"
_DEFAULT = "config_default"

# Every command: 2 is a usage or configuration error, found before anything started.
EXIT_USAGE = "2      usage or configuration error: nothing was started"


class CommandLineParser(argparse.ArgumentParser):
    """An ArgumentParser that resolves the config file once all arguments are parsed."""

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, rest = super().parse_known_args(args, namespace)
        if hasattr(parsed, _DEFAULT):
            parsed.config = self._config_path(parsed)
            for name in (_POSITIONAL, _OPTION, _DEFAULT):
                delattr(parsed, name)
        return parsed, rest

    def _config_path(self, parsed: argparse.Namespace) -> str:
        positional, option = getattr(parsed, _POSITIONAL), getattr(parsed, _OPTION)
        if positional is not None and option is not None and positional != option:
            self.error(f"two config files given ({positional} and --config {option}): give one")
        path: str | None = option or positional or getattr(parsed, _DEFAULT)
        if path is None:
            self.error("the config file is required: --config FILE (or FILE)")
        return path


def add_config_argument(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    """The config file as `--config FILE` or `FILE`; the result is `args.config`."""
    where = f" (default: {default})" if default else ""
    parser.add_argument(
        _POSITIONAL, nargs="?", metavar="FILE", help=f"the plant's TOML config file{where}"
    )
    parser.add_argument("--config", "-c", dest=_OPTION, metavar="FILE", help="the same as FILE")
    parser.set_defaults(**{_DEFAULT: default})


def add_global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """On the top parser with defaults; on each subparser without, so that a value given before
    the subcommand is not reset by the subparser's default."""
    default: Any = None if top else argparse.SUPPRESS
    parser.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default=default,
        help="overrides agent.log_level (before or after the command)",
    )


def epilog(examples: Sequence[str], exits: Sequence[str]) -> str:
    """Help text ending: one example per line, then the exit status, code first on each line."""
    lines = ["examples:", *(f"  {e}" for e in examples), "", "exit status:"]
    lines += [f"  {e}" for e in [*exits, EXIT_USAGE]]
    return "\n".join(lines)


def command_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    *,
    help: str,
    description: str,
    examples: Sequence[str],
    exits: Sequence[str],
) -> argparse.ArgumentParser:
    """A subcommand's parser with the house layout: description as written, examples, exits."""
    return subparsers.add_parser(
        name,
        help=help,
        description=description,
        epilog=epilog(examples, exits),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
