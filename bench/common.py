"""What every benchmark of the suite shares: loops, kernel peers, statistics, profiles.

The suite measures a figure and its kernel reference in the same process
run, one after another, several times; :func:`spread` turns the repetitions
into min/median/max, which is what the page quotes (this 2-core machine is
shared and noisy, so medians and ratios, never single runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import uvloop

from aiostack.stack.stack import Stack
from aiostack.testing.netns import TapSpec, tap_in_netns

T = TypeVar("T")

BENCH_DIR = Path(__file__).resolve().parent
KERNEL_PEER = BENCH_DIR / "kernel_peer.py"
LOOPS = ("asyncio", "uvloop")


def run_on(loop_name: str, body: Callable[[], Awaitable[T]]) -> T:
    """Run ``body()`` to completion on a fresh stdlib or uvloop event loop."""
    if loop_name == "uvloop":
        return uvloop.run(body())  # type: ignore[arg-type]
    if loop_name != "asyncio":
        raise ValueError(f"loop_name: {loop_name!r} is neither asyncio nor uvloop")
    return asyncio.run(body())  # type: ignore[arg-type]


def spread(values: list[float]) -> dict[str, Any]:
    """min/median/max of the repetitions, and the runs themselves."""
    if not values:
        raise ValueError("values: no runs to summarise")
    return {
        "min": min(values),
        "median": statistics.median(values),
        "max": max(values),
        "runs": values,
    }


def rss_bytes() -> int:
    """This process's resident set size, from /proc (VmRSS)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("VmRSS missing from /proc/self/status")


class Peer:
    """A ``kernel_peer.py`` command running in a namespace; killed on exit if still running."""

    def __init__(self, netns: str, *args: object) -> None:
        self.argv = [
            "ip",
            "netns",
            "exec",
            netns,
            sys.executable,
            str(KERNEL_PEER),
            *(str(a) for a in args),
        ]
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Peer:
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        proc = self.proc
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()

    async def line(self, timeout: float = 60.0) -> str:
        """The next line the peer prints; its stderr in the error if it died."""
        assert self.proc is not None and self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not raw:
            assert self.proc.stderr is not None
            err = await self.proc.stderr.read()
            raise RuntimeError(f"kernel peer {self.argv[5:]} died: {err.decode()[-2000:]}")
        return raw.decode().strip()

    async def result(self, timeout: float = 60.0) -> dict[str, Any]:
        line = await self.line(timeout)
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            raise RuntimeError(f"kernel peer printed {line!r}, not JSON") from None
        if not isinstance(value, dict):
            raise RuntimeError(f"kernel peer printed {line!r}, not an object")
        return value

    async def ready(self, timeout: float = 30.0) -> None:
        line = await self.line(timeout)
        if line != "ready":
            raise RuntimeError(f"kernel peer printed {line!r} instead of 'ready'")


async def run_kernel(netns: str, *argv: str, timeout: float = 60.0) -> str:
    """Run a command in ``netns`` to completion; its stdout. Raises on failure."""
    proc = await asyncio.create_subprocess_exec(
        "ip",
        "netns",
        "exec",
        netns,
        *argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({proc.returncode}): {err.decode()[-1000:]}")
    return out.decode()


def sysctl(netns: str, **values: str) -> None:
    """Set namespaced sysctls (``tcp_tw_reuse`` etc.) inside ``netns``."""
    for key, value in values.items():
        name = key.replace("__", ".")
        subprocess.run(
            ["ip", "netns", "exec", netns, "sysctl", "-q", "-w", f"{name}={value}"],
            check=True,
            capture_output=True,
        )


@contextlib.asynccontextmanager
async def stack_on_tap(prefix: str, offload: bool = False) -> AsyncIterator[tuple[TapSpec, Stack]]:
    """A namespace with a TAP, tuned for many short connections, and a stack on it."""
    async with tap_in_netns(prefix=prefix, static_neighbor=True) as spec:
        sysctl(
            spec.netns,
            net__ipv4__tcp_tw_reuse="1",
            net__ipv4__ip_local_port_range="1024 65000",
        )
        stack = Stack(
            spec.device(offload=offload),
            address=f"{spec.stack_ip}/{spec.prefixlen}",
            mac=spec.stack_mac,
        )
        async with stack:
            stack.add_neighbor(spec.kernel_ip, spec.kernel_mac)
            yield spec, stack


class Profiler:
    """``py-spy record`` over this process while a block runs; the top self-time frames.

    py-spy samples from outside, so the code under test runs unchanged (no
    cProfile overhead on every call). Absent py-spy, :attr:`top` stays empty.
    """

    def __init__(self, rate: int = 200) -> None:
        self.rate = rate
        self.top: list[dict[str, Any]] = []
        self.samples = 0

    @contextlib.asynccontextmanager
    async def record(self) -> AsyncIterator[None]:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "profile.txt"
            try:
                proc = await asyncio.create_subprocess_exec(
                    "py-spy",
                    "record",
                    "--pid",
                    str(os.getpid()),
                    "--rate",
                    str(self.rate),
                    "--format",
                    "raw",
                    "--nonblocking",
                    "--output",
                    str(out),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            except FileNotFoundError:
                yield
                return
            # py-spy needs a moment to attach before samples count.
            await asyncio.sleep(0.5)
            try:
                yield
            finally:
                proc.send_signal(2)  # SIGINT: py-spy writes its output and exits
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), 20)
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            if out.exists():
                self._digest(out.read_text())

    def _digest(self, text: str, limit: int = 15) -> None:
        """Self time per function from py-spy's collapsed stacks (``a;b;c count``)."""
        own: Counter[str] = Counter()
        total = 0
        for line in text.splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            leaf = stack.rsplit(";", 1)[-1]
            own[_short(leaf)] += n
            total += n
        self.samples = total
        self.top = [
            {"function": name, "self_pct": 100.0 * n / total}
            for name, n in own.most_common(limit)
            if total
        ]


def _short(frame: str) -> str:
    """``fn (path/to/file.py:12)`` as ``fn (file.py)``: stable across line edits."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    parts = Path(path).parts
    tail = "/".join(parts[-2:]) if parts else path
    return f"{name} ({tail})"
