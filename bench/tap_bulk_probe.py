"""A quick probe of one-connection bulk TCP over a TAP (shell and offload work).

Usage: ``python -m bench.tap_bulk_probe [CASE ...] [--runs N] [--seconds S]
[--buf BYTES] [--profile DIR] [--ab]`` with CASE among ``mtu1500``, ``offload``,
``mtu65000`` (default: all three). Each run moves data kernel -> aiostack
(``k2a``) and aiostack -> kernel (``a2k``) for ``seconds`` on uvloop, and the
medians are printed. ``--profile DIR`` writes one py-spy flame graph per
direction and case; ``--ab`` runs every case first with this work turned
off (:func:`baseline`), so before/after come from one run. It reuses the suite's transfer functions
(:mod:`bench.bulk`), so its figures are comparable with the suite's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
from typing import Any

from aiostack.stack.stack import Stack
from aiostack.testing.netns import tap_in_netns
from aiostack.wire import checksum
from bench.bulk import _stack_receive, _stack_send
from bench.common import run_on

NUMPY_MIN = checksum.NUMPY_MIN
CASES: dict[str, dict[str, Any]] = {
    "mtu1500": {"mtu": 1500, "offload": False},
    "offload": {"mtu": 1500, "offload": True},
    "mtu65000": {"mtu": 65000, "offload": False},
}


async def _profiled(coro: Any, out: str) -> float:
    """Run ``coro`` under ``py-spy record`` (raw collapsed stacks in ``out``)."""
    argv = ["py-spy", "record", "--pid", str(os.getpid()), "--rate", "250"]
    spy = await asyncio.create_subprocess_exec(
        *argv,
        "--format",
        "raw",
        "--output",
        out,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        return float(await coro)
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        await spy.wait()


def baseline(stack: Stack) -> None:
    """Turn off this probe's subjects, for an A/B in one run: TSO, checksum
    offload on send, GRO, batched checksums, send-buffer growth and the numpy
    checksum."""
    tcp = stack.tcp
    tcp.gso_max_size = 0
    tcp.csum_offload = False
    tcp.gro = False
    tcp.batch_checksum = False
    tcp.expand_sndbuf = lambda conn: None  # type: ignore[method-assign]
    checksum.NUMPY_MIN = 1 << 30


async def probe(
    case: str, runs: int, seconds: float, buf: int, profile: str | None, base: bool
) -> None:
    mtu, offload = CASES[case]["mtu"], CASES[case]["offload"]
    async with tap_in_netns(prefix="aiostkprb", mtu=mtu, static_neighbor=True) as spec:
        stack = Stack(
            spec.device(offload=offload),
            address=f"{spec.stack_ip}/{spec.prefixlen}",
            mac=spec.stack_mac,
        )
        async with stack:
            checksum.NUMPY_MIN = NUMPY_MIN  # baseline() of an earlier case changed it
            if base:
                baseline(stack)
            stack.add_neighbor(spec.kernel_ip, spec.kernel_mac)
            stack.settings.rmem_max = stack.settings.wmem_max = max(buf, 4 << 20)
            k2a: list[float] = []
            a2k: list[float] = []
            cpu: list[str] = []
            for i in range(runs):
                t0, c0 = time.monotonic(), time.process_time()
                k2a.append(await _stack_receive(stack, spec, 6000 + i, seconds, buf))
                t1, c1 = time.monotonic(), time.process_time()
                a2k.append(await _stack_send(stack, spec, 6100 + i, seconds, buf))
                t2, c2 = time.monotonic(), time.process_time()
                # Rate per CPU-second of this process: what a whole core would give,
                # comparable across runs on a loaded machine.
                cpu.append(
                    f"{k2a[-1] * (t1 - t0) / (c1 - c0):.0f}/{a2k[-1] * (t2 - t1) / (c2 - c1):.0f}"
                )
            if profile:
                os.makedirs(profile, exist_ok=True)
                await _profiled(
                    _stack_receive(stack, spec, 6200, seconds * 3, buf),
                    f"{profile}/{case}-k2a.txt",
                )
                await _profiled(
                    _stack_send(stack, spec, 6201, seconds * 3, buf),
                    f"{profile}/{case}-a2k.txt",
                )
            name = case + (" base" if base else "")
            drops = stack.statistics()["drops"]
            print(
                f"{name:14s} k2a median {statistics.median(k2a):7.1f} MB/s"
                f" {[round(x) for x in k2a]}"
                f"  a2k median {statistics.median(a2k):7.1f} MB/s {[round(x) for x in a2k]}"
                f"  MB/cpu-s k2a/a2k {cpu}  drops={drops}",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("cases", nargs="*", default=list(CASES))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--buf", type=int, default=0)
    parser.add_argument("--profile")
    parser.add_argument("--ab", action="store_true", help="also run each case as baseline()")
    args = parser.parse_args()
    for case in args.cases:
        for base in (True, False) if args.ab else (False,):
            run_on(
                "uvloop",
                lambda c=case, b=base: probe(  # type: ignore[misc]
                    c, args.runs, args.seconds, args.buf, args.profile, b
                ),
            )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
