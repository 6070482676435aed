"""The ``aiostack`` command (also ``python -m aiostack``).

Each sub-command lives in its own module with a ``register(subparsers)``
function that adds its parser and sets ``handler``; this module only
collects them, so a command's options sit beside its code.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable

#: Modules under ``aiostack.cli`` that each register one or more sub-commands.
COMMAND_MODULES = ("demo", "packetdrill", "up", "ss", "stats", "ping")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aiostack", description="An asyncio-native user-space TCP/IP stack."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"aiostack.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130
