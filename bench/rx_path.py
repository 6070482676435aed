"""Receive-path benchmark: frames per second through the layered runtime vs a bare read loop.

What it measures. The kernel, inside a namespace this program creates,
floods UDP datagrams at the stack over a TAP. To measure the stack rather
than the flood generator, the datagrams are queued first: the TAP's queue is
made deep enough (``txqueuelen``) to hold the whole flood, the reader is
held at a gate while a kernel-side sender fills it, then the gate opens and
the clock runs until every frame has been consumed. Each consumer therefore
always finds full batches waiting, as under a sustained flood, and its rate
is its own per-frame cost.

Consumers, each on the stdlib loop and on uvloop, in the same run:

- ``bare``: ``TapDevice.recv_batch()`` in a loop, discarding the frames. The
  floor: what reading a TAP from Python costs at all.
- ``bare-echo``: the same loop, writing every frame straight back with its
  addresses and ports swapped (checksums stay valid). The floor for any
  Python program that answers every frame.
- ``ping``: a full stack answering a flood of ICMP echo requests: link ->
  ip -> ICMP -> reply on the TAP, no application involved.
- ``sink``: a full stack; UDP datagrams climb link -> ip -> transport -> a
  UDP socket whose reader (an ``await sock.recvfrom()`` loop) discards them.
- ``echo``: a full stack; an application echoes every UDP datagram, so each
  frame also goes back down transport -> ip -> link -> TAP as a reply.

Printed: frames/s of each, and the ratio of its per-frame cost to the floor
it should be compared with (``bare`` for ``sink``, ``bare-echo`` for the
consumers that reply); the target for the layered runtime is at most 3x. Medians over
``--repeat`` runs. Needs root and /dev/net/tun; everything it creates is
removed on exit.

    python bench/rx_path.py [--frames 100000] [--payload 64] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import uvloop

from aiostack.link.base import DeviceWrapper, NetDevice
from aiostack.socket import AF_INET, SOCK_DGRAM
from aiostack.stack.stack import Stack
from aiostack.testing.netns import TapSpec, tap_in_netns
from aiostack.wire.types import BytesLike

PORT = 9000
#: Negotiate virtio-net offloads on the TAP (``--offload``).
OFFLOAD = False
SENDER_PORT = 9001

#: The kernel-side flood: N datagrams from one socket as fast as Python can send them.
FLOOD = """
import socket, sys
host = sys.argv[1]
port, count, size, sport = (int(arg) for arg in sys.argv[2:6])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", sport))
payload = b"x" * size
send = s.sendto
addr = (host, port)
for _ in range(count):
    send(payload, addr)
"""


#: The kernel-side ping flood: N ICMP echo requests from a raw socket.
PING_FLOOD = """
import socket, struct, sys
host, count = sys.argv[1], int(sys.argv[2])
body = bytes(56)
def checksum(data):
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF
header = struct.pack("!BBHHH", 8, 0, 0, 0x1234, 1)
packet = struct.pack("!BBHHH", 8, 0, checksum(header + body), 0x1234, 1) + body
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
send = s.sendto
addr = (host, 0)
for _ in range(count):
    send(packet, addr)
"""


class Gate(DeviceWrapper):
    """Holds the first ``recv_batch`` until :meth:`open_gate`, so a flood can queue up.

    Also reports, through :attr:`sent_all`, when ``tx_target`` frames have gone out.
    """

    def __init__(self, inner: NetDevice, tx_target: int = 0) -> None:
        super().__init__(inner)
        self.gate = asyncio.Event()
        self.sent_all = asyncio.Event()
        self.tx_target = tx_target

    def send_batch(self, frames: Sequence[BytesLike]) -> None:
        self.inner.send_batch(frames)
        if self.tx_target and self.stats.tx_frames >= self.tx_target:
            self.sent_all.set()

    def open_gate(self) -> None:
        self.gate.set()

    async def recv_batch(self) -> list[bytes]:
        await self.gate.wait()
        return await self.inner.recv_batch()


async def flood(spec: TapSpec, frames: int, payload: int, *, icmp: bool = False) -> None:
    ns = spec.namespace
    await ns.run_async(
        "ip", "link", "set", "dev", spec.name, "txqueuelen", str(frames + 1024), check=True
    )
    if icmp:
        await ns.run_async(
            sys.executable, "-c", PING_FLOOD, spec.stack_ip, str(frames), check=True, timeout=300
        )
    else:
        await ns.run_async(
            sys.executable,
            "-c",
            FLOOD,
            spec.stack_ip,
            str(PORT),
            str(frames),
            str(payload),
            str(SENDER_PORT),
            check=True,
            timeout=300,
        )


def swapped(frame: bytes, offset: int) -> bytearray:
    """``frame`` (Ethernet/IPv4/UDP, no options) addressed back to its sender.

    ``offset`` is where the Ethernet header starts (after a virtio-net
    header, with offloads); the virtio header, if any, is replaced by one that
    asks for nothing.
    """
    reply = bytearray(frame)
    o = offset
    reply[:o] = bytes(o)
    reply[o : o + 6], reply[o + 6 : o + 12] = frame[o + 6 : o + 12], frame[o : o + 6]
    reply[o + 26 : o + 30], reply[o + 30 : o + 34] = frame[o + 30 : o + 34], frame[o + 26 : o + 30]
    reply[o + 34 : o + 36], reply[o + 36 : o + 38] = frame[o + 36 : o + 38], frame[o + 34 : o + 36]
    return reply


async def run_bare(spec: TapSpec, frames: int, payload: int, echo: bool) -> float:
    device = Gate(spec.device(offload=OFFLOAD))
    await device.open()
    try:
        await flood(spec, frames, payload)
        seen = 0
        start = time.perf_counter()
        device.open_gate()
        while seen < frames:
            batch = await device.recv_batch()
            seen += len(batch)
            if echo:
                offset = 10 if device.vnet_hdr else 0
                device.send_batch([swapped(frame, offset) for frame in batch])
        return time.perf_counter() - start
    finally:
        await device.aclose()


async def run_ping(spec: TapSpec, frames: int) -> float:
    # One frame more: the gratuitous ARP the stack announces itself with.
    device = Gate(spec.device(offload=OFFLOAD), tx_target=frames + 1)
    address = f"{spec.stack_ip}/{spec.prefixlen}"
    async with Stack(device, address=address, mac=spec.stack_mac) as stack:
        # A static entry for the kernel, as the kernel has one for us: replies
        # must not wait for ARP while the reader is gated.
        stack.add_neighbor(spec.kernel_ip, spec.kernel_mac)
        await flood(spec, frames, 0, icmp=True)
        start = time.perf_counter()
        device.open_gate()
        async with asyncio.timeout(120):
            await device.sent_all.wait()
        elapsed = time.perf_counter() - start
        if stack.counters.IcmpOutEchoReps < frames:
            raise RuntimeError(f"only {stack.counters.IcmpOutEchoReps} echo replies were sent")
        return elapsed


async def run_stack(spec: TapSpec, frames: int, payload: int, echo: bool) -> float:
    device = Gate(spec.device(offload=OFFLOAD))
    address = f"{spec.stack_ip}/{spec.prefixlen}"
    async with Stack(device, address=address, mac=spec.stack_mac) as stack:
        stack.add_neighbor(spec.kernel_ip, spec.kernel_mac)
        stack.settings.rmem_max = 64 * 1024 * 1024
        sock = stack.socket(AF_INET, SOCK_DGRAM)
        sock.setsockopt(1, 8, 64 * 1024 * 1024)  # SO_RCVBUF: hold the whole flood
        sock.bind(("", PORT))
        await flood(spec, frames, payload)
        done = asyncio.get_running_loop().create_future()

        async def consume() -> None:
            seen = 0
            recvfrom, sendto = sock.recvfrom, sock.sendto
            while seen < frames:
                data, peer = await recvfrom(65535)
                if echo and peer is not None:
                    await sendto(data, peer)
                seen += 1
            done.set_result(None)

        start = time.perf_counter()
        task = asyncio.create_task(consume())
        device.open_gate()
        try:
            async with asyncio.timeout(120):
                await done
            elapsed = time.perf_counter() - start
        except TimeoutError:
            mib = stack.statistics()
            raise RuntimeError(f"flood not fully received: {json.dumps(mib)[:2000]}") from None
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        return elapsed


KINDS = ("bare", "bare-echo", "ping", "sink", "echo")
#: The floor each consumer is compared with.
FLOOR = {
    "bare": "bare",
    "bare-echo": "bare-echo",
    "ping": "bare-echo",
    "sink": "bare",
    "echo": "bare-echo",
}


def consumer(kind: str, spec: TapSpec, args: argparse.Namespace) -> Awaitable[float]:
    if kind in ("bare", "bare-echo"):
        return run_bare(spec, args.frames, args.payload, echo=kind == "bare-echo")
    if kind == "ping":
        return run_ping(spec, args.frames)
    return run_stack(spec, args.frames, args.payload, echo=kind == "echo")


def run_on(loop_name: str, body: Callable[[], Awaitable[float]]) -> float:
    if loop_name == "uvloop":
        return uvloop.run(body())  # type: ignore[arg-type]
    return asyncio.run(body())  # type: ignore[arg-type]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--payload", type=int, default=64, help="UDP payload bytes")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--offload",
        action="store_true",
        help="negotiate virtio-net offloads (the kernel then vouches for checksums)",
    )
    args = parser.parse_args(argv)
    global OFFLOAD
    OFFLOAD = args.offload

    results: dict[str, dict[str, float]] = {}
    with tap_in_netns(prefix="aiostkbench", static_neighbor=True) as spec:
        for loop_name in ("asyncio", "uvloop"):
            for kind in KINDS:
                times = [
                    run_on(loop_name, lambda k=kind: consumer(k, spec, args))  # type: ignore[misc]
                    for _ in range(args.repeat)
                ]
                rate = args.frames / statistics.median(times)
                results.setdefault(loop_name, {})[kind] = rate
    print(
        f"receive path, {args.frames} frames of {args.payload}-byte UDP payloads "
        f"({args.payload + 42} bytes on the wire), median of {args.repeat} runs"
    )
    print(f"{'loop':<8} {'consumer':<10} {'frames/s':>10} {'us/frame':>9} {'x floor':>8}  floor")
    for loop_name, rates in results.items():
        for kind, rate in rates.items():
            ratio = rates[FLOOR[kind]] / rate
            print(
                f"{loop_name:<8} {kind:<10} {rate:>10,.0f} {1e6 / rate:>9.2f} {ratio:>8.2f}  "
                f"{FLOOR[kind]}"
            )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "frames": args.frames,
                    "payload": args.payload,
                    "repeat": args.repeat,
                    "rates": results,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
