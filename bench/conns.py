"""Many idle connections: RSS per ESTABLISHED connection, and the time to open and close them.

Each measurement runs in a fresh child process (``python -m bench.conns
child MODE COUNT``), so the resident set it reports is not flattered by
memory an earlier run freed into the allocator. The child starts its server
(uvloop), lets it settle, reads its RSS, starts a kernel client in the
namespace (``kernel_peer.py hold``: non-blocking connects, at most 512
handshakes in flight) that opens COUNT connections, and waits until the
server has accepted every one. Then it reads its RSS again: the difference
over COUNT is the cost of one idle ESTABLISHED connection, everything
included (control block, socket, buffers, the objects the API adds).
Finally the server closes them all and the client reports when it has
seen every FIN.

Modes:

- ``socket``: aiostack sockets, an accept loop that keeps the accepted
  sockets in a list (no task per connection): the stack's own cost;
- ``streams``: ``aiostack.aio.start_server`` with a handler awaiting
  ``reader.read()`` per connection (a task, a StreamReader/Writer and a
  Transport each): what an asyncio application pays;
- ``kernel-streams``: the same handler on a kernel socket in the same
  loop: the Python-side cost of the kernel reference (the kernel's own
  socket memory is not in the process's RSS).

Open time: from the client's first ``connect`` to the last accept (or the
client's last handshake, whichever is later). Close time: from the
server's first ``close`` to the client's having seen the last FIN.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import resource
import signal
import socket
import subprocess
import sys
import time
from typing import Any

from aiostack.socket.socket import Socket
from bench import servers
from bench.common import BENCH_DIR, Peer, rss_bytes, run_kernel, run_on, spread, stack_on_tap

PORT = 7300
INFLIGHT = 512
#: Seconds an open or a close may take before the run records it as stalled.
STALL = 15.0
MODES = ("socket", "streams", "kernel-streams")


async def _settle() -> int:
    for _ in range(2):
        await asyncio.sleep(0.15)
    gc.collect()
    return rss_bytes()


async def child(mode: str, count: int) -> dict[str, Any]:
    """One measurement, in this (fresh) process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count + 1024:
        # Our own limit, for the kernel-streams mode's sockets.
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(hard, count + 1024),) * 2)
    accepted: list[Socket] = []
    writers: list[asyncio.StreamWriter] = []
    full = asyncio.Event()
    t_full = 0.0

    def arrived() -> None:
        nonlocal t_full
        if len(accepted) + len(writers) >= count and not full.is_set():
            t_full = time.monotonic()
            full.set()

    async def keep(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        arrived()
        await servers.hold(reader, writer)

    async with stack_on_tap("aiostkconn") as (spec, stack):
        stack.settings.somaxconn = 4096
        server: Any = None
        accept_task: asyncio.Task[None] | None = None
        host = spec.stack_ip
        if mode == "socket":
            listener = stack.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.bind(("", PORT))
            listener.listen(4096)

            async def accept_all() -> None:
                while True:
                    conn, _ = await listener.accept()
                    accepted.append(conn)
                    arrived()

            accept_task = asyncio.create_task(accept_all())
        elif mode == "streams":
            server = await servers.on_stack(stack, PORT, keep)
        elif mode == "kernel-streams":
            server = await servers.on_kernel(spec.netns, spec.kernel_ip, PORT, keep)
            host = spec.kernel_ip
        else:
            raise ValueError(f"mode: {mode!r} is not one of {MODES}")
        try:
            before = await _settle()
            async with Peer(spec.netns, "hold", host, PORT, count, INFLIGHT) as peer:
                opened: dict[str, Any] | None = None
                with contextlib.suppress(TimeoutError):
                    opened = await peer.result(STALL)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(full.wait(), STALL if opened else 0.1)
                held = len(accepted) + len(writers)
                after = await _settle()
                # Where the drops and retransmissions happened: by the end of the open phase...
                opened_tap = json.loads(
                    await run_kernel(spec.netns, "ip", "-s", "-j", "link", "show", "dev", spec.name)
                )[0]["stats64"]
                opened_retrans = stack.statistics()["mib"]["TcpRetransSegs"]
                t_close = time.monotonic()
                for conn in accepted:
                    conn.close()
                for writer in writers:
                    writer.close()
                done: dict[str, Any] | None = None
                if opened is not None:
                    with contextlib.suppress(TimeoutError):
                        done = await peer.result(STALL)
            stats = stack.statistics()
            kernel_tap = json.loads(
                await run_kernel(spec.netns, "ip", "-s", "-j", "link", "show", "dev", spec.name)
            )[0]["stats64"]
        finally:
            if accept_task is not None:
                accept_task.cancel()
                await asyncio.gather(accept_task, return_exceptions=True)
            if server is not None:
                server.close()
    return {
        "mode": mode,
        "count": count,
        "rss_before": before,
        "rss_after": after,
        "held": held,
        "per_conn": (after - before) / held if held else None,
        # None: not done within STALL seconds (the page says so).
        "open_s": max(t_full, opened["t_open"]) - opened["t_start"]
        if opened is not None and full.is_set()
        else None,
        "close_s": done["t_eof"] - t_close if done is not None else None,
        # Why a slow open or close was slow: retransmissions and drops on our side.
        "diag": {
            "mib": {
                k: v
                for k, v in stats["mib"].items()
                if "Retrans" in k
                or "Listen" in k
                or "Timeout" in k
                or "Drop" in k
                or "Overflow" in k
            },
            "drops": stats["drops"],
            "device_drops": stats["device"]["drops"],
            # The kernel's side of the TAP: tx is towards us (dropped when we lag).
            "kernel_tap_tx_dropped": kernel_tap["tx"]["dropped"],
            "kernel_tap_rx_dropped": kernel_tap["rx"]["dropped"],
            # ... and of those, how many by the time every connection was open.
            "open_kernel_tap_tx_dropped": opened_tap["tx"]["dropped"],
            "open_TcpRetransSegs": opened_retrans,
            # Frames the timer task took in before firing due timers, and how often
            # that drain stopped at its bound (input possibly left waiting).
            "timer_frames_first": stack.timer.frames_first,
            "timer_deferral_limits": stack.timer.deferral_limits,
        },
    }


def _spawn(mode: str, count: int) -> dict[str, Any]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.conns", "child", mode, str(count)],
        cwd=BENCH_DIR.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        out, err = proc.communicate(timeout=4 * STALL + 60)
    except subprocess.TimeoutExpired:
        # SIGTERM, not SIGKILL: the child then deletes its namespace on the way out.
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    if proc.returncode != 0:
        raise RuntimeError(f"bench.conns child {mode} failed: {err.decode()[-3000:]}")
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(f"terminated by signal {signum}")


KEYS = ("per_conn", "open_s", "close_s")


def _brief(summary: dict[str, Any], key: str) -> str:
    value = summary[key]
    stalled = summary[f"{key}_stalled"]
    text = f"{key} {value['median']:.2f}" if value else f"{key} -"
    return text + (f" ({stalled} stalled)" if stalled else "")


def run(quick: bool, repeat: int, profile: bool) -> dict[str, Any]:
    """All modes, ``repeat`` children each, interleaved; the JSON the report reads."""
    del profile  # nothing runs long enough here to sample usefully
    count = 2000 if quick else 10000
    # Each child takes seconds (tens of seconds when opening or closing stalls).
    repeat = min(repeat, 2 if quick else 3)
    rows: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    for _ in range(repeat):
        for mode in MODES:
            rows[mode].append(_spawn(mode, count))
    results: dict[str, Any] = {
        "count": count,
        "repeat": repeat,
        "loop": "uvloop",
        "stall_s": STALL,
        "modes": {},
    }
    for mode, got in rows.items():
        summary: dict[str, Any] = {
            "diag": [row["diag"] for row in got],
            # Connections the server held when the open phase ended (all, unless it stalled).
            "held": [row["held"] for row in got],
        }
        for key in ("per_conn", "rss_after", "open_s", "close_s"):
            values = [float(row[key]) for row in got if row[key] is not None]
            summary[key] = spread(values) if values else None
            summary[f"{key}_stalled"] = len(got) - len(values)
        results["modes"][mode] = summary
        print(f"  conns {mode}: " + ", ".join(_brief(summary, k) for k in KEYS), flush=True)
    return results


if __name__ == "__main__":
    if sys.argv[1:2] == ["child"]:
        signal.signal(signal.SIGTERM, _terminated)
        mode, count = sys.argv[2], int(sys.argv[3])
        print(json.dumps(run_on("uvloop", lambda: child(mode, count))))
    else:
        print(json.dumps(run("--quick" in sys.argv, 1, False), indent=1))
