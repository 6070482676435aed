"""``aiostack stats``: the counters of a running ``aiostack up``, like ``nstat``.

Prints ``Name Value`` for every counter that is not zero (``-z``: all of
them): the SNMP MIB counters by their Linux names (``IpInReceives``,
``TcpActiveOpens``, ``TcpExtListenOverflows`` ...), then the stack's drop
reasons (``Drop.<reason>``, aiostack's equivalent of the kernel's drop
reasons) and the device's frame and byte counts (``Dev.rx_frames``, ...).
Unlike ``nstat`` there is no history file: values are totals since the
stack started. ``--json`` prints what the control socket returns.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from aiostack.cli.control import ControlError, call, find_control


def counter_lines(stats: dict[str, Any], *, zeros: bool) -> list[tuple[str, int]]:
    """``(name, value)`` pairs in nstat's order: MIB, then drops, then the device."""
    pairs: list[tuple[str, int]] = list(stats["mib"].items())
    pairs += [(f"Drop.{reason}", count) for reason, count in sorted(stats["drops"].items())]
    device = stats["device"]
    pairs += [(f"Dev.{k}", v) for k, v in device.items() if k != "drops"]
    pairs += [(f"Dev.drop.{k}", v) for k, v in sorted(device.get("drops", {}).items())]
    return [(name, value) for name, value in pairs if zeros or value]


def render(pairs: list[tuple[str, int]]) -> str:
    width = max([len(n) for n, _ in pairs] + [24])
    return "\n".join(["#aiostack"] + [f"{n:<{width}} {v:>12}" for n, v in pairs])


def cmd_stats(args: argparse.Namespace) -> int:
    try:
        path = find_control(args.control)
        stats = asyncio.run(call(path, {"op": "stats"}))
    except (LookupError, ConnectionError, ControlError) as exc:
        print(f"aiostack stats: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        print(render(counter_lines(stats, zeros=args.zeros)))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``aiostack stats``."""
    stats = sub.add_parser("stats", help="counters of a running 'aiostack up', like nstat")
    stats.add_argument("-z", "--zeros", action="store_true", help="show zero counters too")
    stats.add_argument("--json", action="store_true", help="machine-readable output")
    stats.add_argument("--control", metavar="PATH", help="control socket of the 'aiostack up'")
    stats.set_defaults(handler=cmd_stats)
