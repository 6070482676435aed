"""``aiostack ping HOST``: a running ``aiostack up`` pings HOST with ``stack.ping()``.

The output is ping(8)'s::

    PING 198.18.0.1 (198.18.0.1) 56(84) bytes of data.
    64 bytes from 198.18.0.1: icmp_seq=1 time=0.412 ms
    ...

    --- 198.18.0.1 ping statistics ---
    3 packets transmitted, 3 received, 0% packet loss, time 2003ms
    rtt min/avg/max/mdev = 0.281/0.338/0.412/0.054 ms

Without ``-c`` it runs until Ctrl-C, then prints the summary. A probe that
fails with an error prints ``From HOST icmp_seq=N <reason>`` and counts in
``+N errors``. The exit status is ping's: 0 if any reply came back, 1 if
none did, 2 for other errors. (The TTL of replies is not shown: the stack's
``ping()`` reports the round-trip time only.)

When the reader of its output goes away (``aiostack ping HOST | head -1``),
ping(8) dies of SIGPIPE at its next write, silently; the shell reports 141
(128 + SIGPIPE). Python ignores SIGPIPE and raises BrokenPipeError instead,
so this command stops probing, points stdout at /dev/null (so that the
interpreter's final flush cannot complain, as the Python documentation
recommends) and exits with 141, saying nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiostack.cli.control import MAX_PING_COUNT, ControlError, find_control, request

#: The status of a process killed by SIGPIPE, as a shell reports it.
EXIT_SIGPIPE = 128 + signal.SIGPIPE


class ReaderGone(Exception):
    """Standard output's reader closed the pipe (not the control socket: that is an error)."""


def _say(text: str) -> None:
    try:
        print(text, flush=True)
    except BrokenPipeError as exc:
        raise ReaderGone from exc


@dataclass(slots=True)
class PingTally:
    """What the summary needs."""

    host: str
    transmitted: int = 0
    errors: int = 0
    rtts: list[float] = field(default_factory=list)

    def line(self, answer: dict[str, Any]) -> str | None:
        """Record one probe's outcome; return ping(8)'s line for it, if it has one."""
        kind = answer["type"]
        if kind not in ("reply", "timeout", "error"):
            return None
        self.transmitted += 1
        seq = answer["seq"]
        if kind == "reply":
            rtt_ms = answer["rtt"] * 1000
            self.rtts.append(rtt_ms)
            return f"{answer['bytes']} bytes from {self.host}: icmp_seq={seq} time={rtt_ms:.3f} ms"
        if kind == "error":
            self.errors += 1
            return f"From {self.host} icmp_seq={seq} {answer['error']}"
        return None  # ping(8) says nothing about a lost probe

    def summary(self, elapsed: float) -> list[str]:
        received = len(self.rtts)
        loss = 100.0 * (self.transmitted - received) / self.transmitted if self.transmitted else 0
        errors = f", +{self.errors} errors" if self.errors else ""
        lines = [
            "",
            f"--- {self.host} ping statistics ---",
            f"{self.transmitted} packets transmitted, {received} received{errors}, "
            f"{loss:g}% packet loss, time {elapsed * 1000:.0f}ms",
        ]
        if self.rtts:
            mean = sum(self.rtts) / received
            mdev = math.sqrt(max(sum(r * r for r in self.rtts) / received - mean * mean, 0.0))
            lines.append(
                f"rtt min/avg/max/mdev = {min(self.rtts):.3f}/{mean:.3f}/"
                f"{max(self.rtts):.3f}/{mdev:.3f} ms"
            )
        return lines


async def run_ping(
    path: Path, host: str, count: int | None, size: int, interval: float, timeout: float
) -> int:
    loop = asyncio.get_running_loop()
    tally = PingTally(host)
    message = {
        "op": "ping",
        "host": host,
        "count": count if count is not None else MAX_PING_COUNT,
        "size": size,
        "interval": interval,
        "timeout": timeout,
    }
    answers = request(path, message)
    # The first answer comes before the header, so that a bad address or a
    # missing 'aiostack up' is reported alone, as ping(8) does.
    start = loop.time()
    first = await answers.__anext__()
    if first["type"] == "error" and "seq" not in first:
        await answers.aclose()
        raise ControlError(first["error"])
    _say(f"PING {host} ({host}) {size}({size + 28}) bytes of data.")

    async def consume() -> None:
        answer: dict[str, Any] | None = first
        while answer is not None:
            if answer["type"] == "error" and "seq" not in answer:
                raise ControlError(answer["error"])
            text = tally.line(answer)
            if text is not None:
                _say(text)
            answer = await anext(answers, None)

    task = asyncio.create_task(consume())
    loop.add_signal_handler(signal.SIGINT, task.cancel)
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        await answers.aclose()
    for text in tally.summary(loop.time() - start):
        _say(text)
    return 0 if tally.rtts else 1


def _silence_stdout() -> None:
    """Point stdout at /dev/null: the reader is gone, and nothing may be written to it again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


def cmd_ping(args: argparse.Namespace) -> int:
    if args.count is not None and not 1 <= args.count <= MAX_PING_COUNT:
        print(f"aiostack ping: count: {args.count} is outside 1..{MAX_PING_COUNT}", file=sys.stderr)
        return 2
    try:
        path = find_control(args.control)
        return asyncio.run(
            run_ping(path, args.host, args.count, args.size, args.interval, args.timeout)
        )
    except ReaderGone:
        _silence_stdout()
        return EXIT_SIGPIPE
    except (LookupError, ConnectionError, ControlError) as exc:
        print(f"aiostack ping: {exc}", file=sys.stderr)
        return 2


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``aiostack ping``."""
    ping = sub.add_parser("ping", help="make a running 'aiostack up' ping a host")
    ping.add_argument("host", metavar="HOST", help="IPv4 address to ping")
    ping.add_argument("-c", "--count", type=int, metavar="N", help="stop after N probes")
    ping.add_argument("-s", "--size", type=int, default=56, metavar="SIZE", help="payload bytes")
    ping.add_argument(
        "-i", "--interval", type=float, default=1.0, metavar="SEC", help="seconds between probes"
    )
    ping.add_argument(
        "-W",
        "--timeout",
        type=float,
        default=2.0,
        metavar="SEC",
        help="seconds to wait for a reply",
    )
    ping.add_argument("--control", metavar="PATH", help="control socket of the 'aiostack up'")
    ping.set_defaults(handler=cmd_ping)
