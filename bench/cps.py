"""Connections per second: a kernel client against aiostack and against the kernel.

The client (``kernel_peer.py cps``, blocking sockets, in the namespace)
connects, sends one byte, reads the echo and closes, one connection after
another, for ``seconds``. The server is :func:`bench.servers.echo` twice in
the same process and the same event loop: once on aiostack over the TAP,
once on a kernel socket in the namespace. Repetitions alternate between
the two; the whole runs on the stdlib loop and on uvloop.

The client's ports: ``tcp_tw_reuse`` and a wide local port range in the
namespace, so tens of thousands of short connections never run out of
ports (the client closes first, so the TIME_WAITs are the kernel's).
"""

from __future__ import annotations

import statistics
from typing import Any

from aiostack.stack.stack import Stack
from aiostack.testing.netns import TapSpec
from bench import servers
from bench.common import LOOPS, Peer, Profiler, run_on, spread, stack_on_tap

STACK_PORT = 7000
KERNEL_PORT = 7001


async def _rate(
    spec: TapSpec,
    host: str,
    port: int,
    seconds: float,
    stack: Stack | None = None,
    segments: list[tuple[float, float]] | None = None,
) -> float:
    """Connections/s of one client run; with ``stack``, its segments per connection too."""
    before = stack.counters.snapshot() if stack is not None else {}
    async with Peer(spec.netns, "cps", host, port, seconds) as peer:
        result = await peer.result(seconds + 60)
    if stack is not None and segments is not None:
        after = stack.counters.snapshot()
        n = int(result["connections"])
        segments.append(
            (
                (after["TcpInSegs"] - before["TcpInSegs"]) / n,
                (after["TcpOutSegs"] - before["TcpOutSegs"]) / n,
            )
        )
    return float(result["connections"]) / float(result["seconds"])


async def run_loop(seconds: float, repeat: int, profile: bool) -> dict[str, Any]:
    rates: dict[str, list[float]] = {"aiostack": [], "kernel": []}
    out: dict[str, Any] = {}
    segments: list[tuple[float, float]] = []
    async with stack_on_tap("aiostkcps") as (spec, stack):
        mine = await servers.on_stack(stack, STACK_PORT, servers.echo)
        theirs = await servers.on_kernel(spec.netns, spec.kernel_ip, KERNEL_PORT, servers.echo)
        try:
            for _ in range(repeat):
                rates["aiostack"].append(
                    await _rate(spec, spec.stack_ip, STACK_PORT, seconds, stack, segments)
                )
                rates["kernel"].append(await _rate(spec, spec.kernel_ip, KERNEL_PORT, seconds))
            if profile:
                profiler = Profiler()
                async with profiler.record():
                    await _rate(spec, spec.stack_ip, STACK_PORT, seconds)
                out["profile"] = {"samples": profiler.samples, "top": profiler.top}
        finally:
            mine.close()
            theirs.close()
    out.update({name: spread(values) for name, values in rates.items()})
    # Segments per connection on aiostack (median over runs): what a connection costs in frames.
    out["segments_per_conn"] = {
        "in": statistics.median(x for x, _ in segments),
        "out": statistics.median(y for _, y in segments),
    }
    return out


def run(quick: bool, repeat: int, profile: bool) -> dict[str, Any]:
    """Connections per second on both loops; the JSON the report reads."""
    seconds = 0.5 if quick else 1.5
    results: dict[str, Any] = {"seconds": seconds, "repeat": repeat, "loops": {}}
    for loop in LOOPS:
        results["loops"][loop] = run_on(
            loop,
            lambda: run_loop(seconds, repeat, profile and loop == "uvloop"),  # noqa: B023
        )
        got = results["loops"][loop]
        print(
            f"  cps {loop}: aiostack {got['aiostack']['median']:.0f}/s, "
            f"kernel {got['kernel']['median']:.0f}/s",
            flush=True,
        )
    return results
