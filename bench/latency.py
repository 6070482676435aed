"""Request/response: 64-byte echo latency, HTTP with wrk, and ping, against the kernel.

On each loop (stdlib and uvloop), in one process:

- ``echo``: ``kernel_peer.py rtt`` does ``rounds`` 64-byte round trips on
  one connection (TCP_NODELAY, blocking sockets) to :func:`bench.servers.echo`
  on aiostack and, alternating, to the same server on a kernel socket;
  p50/p99 of the round trip as the client sees it.
- ``http``: ``wrk`` (one thread, 10 connections, keep-alive) against
  :func:`bench.servers.http` on aiostack and on the kernel: requests/s and
  wrk's latency percentiles.
- ``ping``: ``ping -i 0.001`` from the namespace to the stack (its ICMP
  answers) and to :func:`bench.bare.bare_ping_responder` on a second TAP:
  the floor for any Python program answering on a TAP.
"""

from __future__ import annotations

import asyncio
import re
import statistics
from typing import Any

from aiostack.testing.netns import TapSpec, tap_in_netns
from bench import servers
from bench.bare import serve_ping
from bench.common import LOOPS, Peer, Profiler, run_kernel, run_on, spread, stack_on_tap

ECHO_PORT, KERNEL_ECHO_PORT = 7100, 7101
HTTP_PORT, KERNEL_HTTP_PORT = 8080, 8081
SIZE = 64

_PING_TIME = re.compile(r"time=([0-9.]+) ms")
_WRK_RPS = re.compile(r"Requests/sec:\s+([0-9.]+)")
_WRK_PCT = re.compile(r"^\s+(50|99)%\s+([0-9.]+)(us|ms|s)\s*$", re.M)
_UNIT_US = {"us": 1.0, "ms": 1000.0, "s": 1e6}


async def _rtt(spec: TapSpec, host: str, port: int, rounds: int) -> dict[str, Any]:
    async with Peer(spec.netns, "rtt", host, port, rounds, SIZE) as peer:
        return await peer.result(120)


async def _wrk(spec: TapSpec, host: str, port: int, seconds: float) -> dict[str, float]:
    out = await run_kernel(
        spec.netns,
        "wrk",
        "-t1",
        "-c10",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        f"http://{host}:{port}/",
        timeout=seconds + 60,
    )
    rps = _WRK_RPS.search(out)
    if rps is None or "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk failed against {host}:{port}: {out}")
    pct = {p: float(v) * _UNIT_US[u] for p, v, u in _WRK_PCT.findall(out)}
    return {"rps": float(rps.group(1)), "p50_us": pct["50"], "p99_us": pct["99"]}


async def _ping(spec: TapSpec, host: str, count: int) -> dict[str, float]:
    out = await run_kernel(
        spec.netns,
        "ping",
        "-n",
        "-c",
        str(count),
        "-i",
        "0.001",
        "-W",
        "2",
        host,
        timeout=count * 0.01 + 60,
    )
    times = sorted(float(t) * 1000 for t in _PING_TIME.findall(out))
    if len(times) < count * 0.95:
        raise RuntimeError(f"ping {host}: only {len(times)} of {count} replies")
    return {
        "p50_us": statistics.median(times),
        "p99_us": times[min(len(times) - 1, int(0.99 * len(times)))],
    }


def _collect(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per field, the spread of the repetitions."""
    return {key: spread([float(row[key]) for row in rows]) for key in rows[0]}


async def run_loop(
    rounds: int, http_seconds: float, pings: int, repeat: int, profile: bool
) -> dict[str, Any]:
    raw: dict[str, list[dict[str, Any]]] = {
        name: []
        for name in (
            "echo_aiostack",
            "echo_kernel",
            "http_aiostack",
            "http_kernel",
            "ping_aiostack",
            "ping_bare",
        )
    }
    out: dict[str, Any] = {}
    async with (
        stack_on_tap("aiostklat") as (spec, stack),
        tap_in_netns(prefix="aiostkping", static_neighbor=True) as bare_spec,
    ):
        stop = asyncio.Event()
        async with bare_spec.device() as device:
            pinger = asyncio.create_task(serve_ping(device, stop))
            started = [
                await servers.on_stack(stack, ECHO_PORT, servers.echo),
                await servers.on_kernel(spec.netns, spec.kernel_ip, KERNEL_ECHO_PORT, servers.echo),
                await servers.on_stack(stack, HTTP_PORT, servers.http),
                await servers.on_kernel(spec.netns, spec.kernel_ip, KERNEL_HTTP_PORT, servers.http),
            ]
            try:
                for _ in range(repeat):
                    sent = stack.counters.snapshot()["TcpOutSegs"]
                    row = await _rtt(spec, spec.stack_ip, ECHO_PORT, rounds)
                    # Segments the stack sent per round trip (warm-up and handshake included):
                    # 1.0 means the echo carries the ACK, as Linux's delayed ACK arranges.
                    segs = stack.counters.snapshot()["TcpOutSegs"] - sent
                    row["out_segs_per_rt"] = segs / (rounds + max(rounds // 10, 50))
                    raw["echo_aiostack"].append(row)
                    raw["echo_kernel"].append(
                        await _rtt(spec, spec.kernel_ip, KERNEL_ECHO_PORT, rounds)
                    )
                    raw["http_aiostack"].append(
                        await _wrk(spec, spec.stack_ip, HTTP_PORT, http_seconds)
                    )
                    raw["http_kernel"].append(
                        await _wrk(spec, spec.kernel_ip, KERNEL_HTTP_PORT, http_seconds)
                    )
                    raw["ping_aiostack"].append(await _ping(spec, spec.stack_ip, pings))
                    raw["ping_bare"].append(await _ping(bare_spec, bare_spec.stack_ip, pings))
                if profile:
                    profiler = Profiler()
                    async with profiler.record():
                        await _rtt(spec, spec.stack_ip, ECHO_PORT, rounds)
                    out["profile"] = {"samples": profiler.samples, "top": profiler.top}
            finally:
                for server in started:
                    server.close()
                stop.set()
                await pinger
    for name, rows in raw.items():
        out[name] = _collect(rows)
    return out


def run(quick: bool, repeat: int, profile: bool) -> dict[str, Any]:
    """Echo, HTTP and ping latency on both loops; the JSON the report reads."""
    rounds = 1000 if quick else 3000
    http_seconds = 1.0 if quick else 2.0
    pings = 200 if quick else 500
    results: dict[str, Any] = {
        "size": SIZE,
        "rounds": rounds,
        "http_seconds": http_seconds,
        "wrk": "wrk -t1 -c10 --latency",
        "pings": pings,
        "repeat": repeat,
        "loops": {},
    }
    for loop in LOOPS:
        results["loops"][loop] = got = run_on(
            loop,
            lambda: run_loop(rounds, http_seconds, pings, repeat, profile and loop == "uvloop"),  # noqa: B023
        )
        print(
            f"  latency {loop}: echo p50 aiostack {got['echo_aiostack']['p50_us']['median']:.0f} us"
            f" / kernel {got['echo_kernel']['p50_us']['median']:.0f} us; http aiostack "
            f"{got['http_aiostack']['rps']['median']:.0f}/s / kernel "
            f"{got['http_kernel']['rps']['median']:.0f}/s; ping aiostack "
            f"{got['ping_aiostack']['p50_us']['median']:.0f} us / bare "
            f"{got['ping_bare']['p50_us']['median']:.0f} us",
            flush=True,
        )
    return results
