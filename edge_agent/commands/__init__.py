"""The `edge-agent` subcommands, one module each, on top of everything else.

Each module holds its subcommand's argparse definition (`add_parser(subparsers)`) and its
handler (`handler(args) -> int`, the exit code); `edge_agent.cli` only registers them. Nothing
below this package imports it.
"""
