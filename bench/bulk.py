"""Bulk throughput on one TCP connection, both directions, against its ceilings.

Per case (MTU 1500 without offloads; MTU 1500 with virtio-net offloads;
a TAP MTU of 65000), in one event loop (uvloop) and one process:

- ``k2a``: a kernel sender in the namespace writes for ``seconds`` to an
  aiostack socket that ``recv_into``'s a 1 MiB buffer until EOF;
- ``a2k``: an aiostack socket ``sendall``'s 1 MiB chunks for ``seconds``
  to a kernel receiver;
- ``k2a_buf``/``a2k_buf``: the same with SO_RCVBUF/SO_SNDBUF of 4 MiB
  (and the stack's ``rmem_max``/``wmem_max`` raised to allow it): aiostack
  does not autotune its buffers yet (they stay at ``tcp_rmem[1]`` = 128 KiB
  and ``tcp_wmem[1]`` = 16 KiB, where Linux grows them with the flow), so
  these rows separate window limits from per-segment cost;
- ``bare``: the same kernel sender into :func:`bench.bare.bare_tcp_receiver`
  on a second TAP in a second namespace: the ceiling for a Python receiver.

Each repetition runs the three back to back, so drift on this shared
machine hits them alike. Rates are bytes over the receiver's time from
accept to EOF. Alongside, once: the kernel to itself over a veth pair
between two namespaces (same sender and receiver programs).

With offloads the TAP hands the stack TCP super-frames (up to 64 KiB, checksums
vouched for by the kernel) and accepts super-frames the stack writes, if its
TCP output makes them (TSO). Whether it does is not assumed: each case
records the average frame the stack read during ``k2a`` and wrote during
``a2k``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import time
from typing import Any

from aiostack.stack.stack import Stack
from aiostack.testing.netns import TapSpec, netns, tap_in_netns
from bench.bare import bare_tcp_receiver
from bench.common import Peer, Profiler, run_on, spread

PORT = 5201
#: SO_RCVBUF/SO_SNDBUF of the ``_buf`` rows: what Linux's autotuning may grow to.
BIG = 4 << 20
CHUNK = 1 << 20

CASES: dict[str, dict[str, Any]] = {
    "mtu1500": {"mtu": 1500, "offload": False},
    "offload": {"mtu": 1500, "offload": True},
    "mtu65000": {"mtu": 65000, "offload": False},
}


async def _stack_receive(
    stack: Stack, spec: TapSpec, port: int, seconds: float, buffer: int = 0
) -> float:
    """One kernel -> aiostack transfer; MB/s at the receiver. ``buffer``: SO_RCVBUF, if set."""
    listener = stack.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if buffer:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer)
    listener.bind(("", port))
    listener.listen(4)
    buf = bytearray(CHUNK)
    try:
        async with Peer(spec.netns, "send", spec.stack_ip, port, seconds) as peer:
            conn, _ = await asyncio.wait_for(listener.accept(), 30)
            start = time.monotonic()
            total = 0
            recv_into = conn.recv_into
            async with asyncio.timeout(seconds + 60):
                while n := await recv_into(buf):
                    total += n
            elapsed = time.monotonic() - start
            conn.close()
            await peer.result()
    finally:
        listener.close()
    return total / elapsed / 1e6


async def _stack_send(
    stack: Stack, spec: TapSpec, port: int, seconds: float, buffer: int = 0
) -> float:
    """One aiostack -> kernel transfer; MB/s at the (kernel) receiver. ``buffer``: SO_SNDBUF."""
    async with Peer(spec.netns, "recv", spec.kernel_ip, port, 1) as peer:
        await peer.ready()
        sock = stack.socket(socket.AF_INET, socket.SOCK_STREAM)
        if buffer:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, buffer)
        try:
            await asyncio.wait_for(sock.connect((spec.kernel_ip, port)), 30)
            chunk = memoryview(bytearray(CHUNK))
            end = time.monotonic() + seconds
            async with asyncio.timeout(seconds + 60):
                while time.monotonic() < end:
                    await sock.sendall(chunk)
                sock.shutdown(socket.SHUT_WR)
                while await sock.recv(65536):
                    pass
        finally:
            sock.close()
        result = await peer.result()
    return float(result["bytes"]) / float(result["seconds"]) / 1e6


async def _bare_receive(device: Any, spec: TapSpec, port: int, seconds: float) -> float:
    async with Peer(spec.netns, "send", spec.stack_ip, port, seconds) as peer:
        async with asyncio.timeout(seconds + 60):
            (result,) = await bare_tcp_receiver(device, port, 1, spec.mtu - 40)
        await peer.result()
    return result["bytes"] / result["seconds"] / 1e6


async def run_case(
    mtu: int, offload: bool, seconds: float, repeat: int, profile: bool
) -> dict[str, Any]:
    """One case: ``repeat`` rounds of k2a, a2k and bare, plus optional profiles."""
    rates: dict[str, list[float]] = {
        "k2a": [],
        "a2k": [],
        "bare": [],
        "k2a_buf": [],
        "a2k_buf": [],
    }
    profiles: dict[str, Any] = {}
    # [frames, bytes] the stack read during k2a and wrote during a2k: the frame sizes
    # show whether super-frames (GRO/TSO-sized) actually crossed the TAP.
    rx_frames, tx_frames = [0, 0], [0, 0]
    async with (
        tap_in_netns(prefix="aiostkbulk", mtu=mtu, static_neighbor=True) as spec,
        tap_in_netns(prefix="aiostkbare", mtu=mtu, static_neighbor=True) as bare_spec,
    ):
        device = bare_spec.device(offload=offload)
        stack = Stack(
            spec.device(offload=offload),
            address=f"{spec.stack_ip}/{spec.prefixlen}",
            mac=spec.stack_mac,
        )
        async with stack, device:
            stack.add_neighbor(spec.kernel_ip, spec.kernel_mac)
            # Let SO_RCVBUF/SO_SNDBUF reach BIG (the sysctls an administrator raises).
            stack.settings.rmem_max = stack.settings.wmem_max = BIG
            stats = stack.device.stats
            for i in range(repeat):
                rx0 = (stats.rx_frames, stats.rx_bytes)
                rates["k2a"].append(await _stack_receive(stack, spec, PORT + i, seconds))
                rx_frames[0] += stats.rx_frames - rx0[0]
                rx_frames[1] += stats.rx_bytes - rx0[1]
                tx0 = (stats.tx_frames, stats.tx_bytes)
                rates["a2k"].append(await _stack_send(stack, spec, PORT + 100 + i, seconds))
                tx_frames[0] += stats.tx_frames - tx0[0]
                tx_frames[1] += stats.tx_bytes - tx0[1]
                rates["bare"].append(await _bare_receive(device, bare_spec, PORT + i, seconds))
                rates["k2a_buf"].append(
                    await _stack_receive(stack, spec, PORT + 300 + i, seconds, BIG)
                )
                rates["a2k_buf"].append(
                    await _stack_send(stack, spec, PORT + 400 + i, seconds, BIG)
                )
            if profile:
                for name, job in (("k2a", _stack_receive), ("a2k", _stack_send)):
                    profiler = Profiler()
                    async with profiler.record():
                        await job(stack, spec, PORT + 200 + len(profiles), seconds)
                    profiles[name] = {"samples": profiler.samples, "top": profiler.top}
    result: dict[str, Any] = {name: spread(values) for name, values in rates.items()}
    result["mtu"] = mtu
    result["k2a_rx_frame_bytes"] = rx_frames[1] / rx_frames[0] if rx_frames[0] else 0.0
    result["a2k_tx_frame_bytes"] = tx_frames[1] / tx_frames[0] if tx_frames[0] else 0.0
    result["offload"] = offload
    if profiles:
        result["profile"] = profiles
    return result


async def run_veth(seconds: float, repeat: int) -> dict[str, Any]:
    """The kernel to itself over a veth pair between two namespaces (MTU 1500, GSO/GRO on)."""
    rates = []
    async with netns(prefix="aiostkvA") as a, netns(prefix="aiostkvB") as b:
        for argv in (
            [
                "ip",
                "link",
                "add",
                "veth0",
                "netns",
                a.name,
                "type",
                "veth",
                "peer",
                "name",
                "veth1",
                "netns",
                b.name,
            ],
            ["ip", "-n", a.name, "addr", "add", "198.19.0.1/24", "dev", "veth0"],
            ["ip", "-n", b.name, "addr", "add", "198.19.0.2/24", "dev", "veth1"],
            ["ip", "-n", a.name, "link", "set", "veth0", "up"],
            ["ip", "-n", b.name, "link", "set", "veth1", "up"],
        ):
            await asyncio.to_thread(subprocess.run, argv, check=True, capture_output=True)
        for i in range(repeat):
            async with Peer(b.name, "recv", "198.19.0.2", PORT + i, 1) as receiver:
                await receiver.ready()
                async with Peer(a.name, "send", "198.19.0.2", PORT + i, seconds) as sender:
                    result = await receiver.result(seconds + 60)
                    await sender.result()
            rates.append(float(result["bytes"]) / float(result["seconds"]) / 1e6)
    return spread(rates)


def run(quick: bool, repeat: int, profile: bool) -> dict[str, Any]:
    """The whole bulk benchmark; the JSON the report reads."""
    seconds = 0.4 if quick else 1.0
    results: dict[str, Any] = {
        "loop": "uvloop",
        "seconds": seconds,
        "repeat": repeat,
        "unit": "MB/s (10^6 bytes per second)",
        "cases": {},
    }
    for name, case in CASES.items():
        results["cases"][name] = run_on(
            "uvloop",
            lambda c=case: run_case(c["mtu"], c["offload"], seconds, repeat, profile),  # type: ignore[misc]
        )
        print(
            f"  bulk {name}: "
            + ", ".join(
                f"{k} {v['median']:.0f}"
                for k, v in results["cases"][name].items()
                if isinstance(v, dict) and "median" in v
            )
            + " MB/s",
            flush=True,
        )
    results["veth"] = run_on("uvloop", lambda: run_veth(seconds, repeat))
    print(f"  bulk veth kernel->kernel: {results['veth']['median']:.0f} MB/s", flush=True)
    return results


if __name__ == "__main__":
    import json
    import sys

    with contextlib.suppress(KeyboardInterrupt):
        print(json.dumps(run("--quick" in sys.argv, 3, "--profile" in sys.argv), indent=1))
