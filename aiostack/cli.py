"""The ``aiostack`` command.

``aiostack demo`` is the README's main job: as root it creates a network
namespace with a TAP device, brings a stack up on it, and lets the Linux
kernel on the other side of the TAP ping it (small, fragmented and flood
pings) and exchange UDP datagrams with it; then it shows the counters,
writes a pcap of everything, and removes what it created. Without root (or
without /dev/net/tun) it says what is missing and offers ``--memory``: the
same exchange between two stacks on an in-memory wire, which needs no
privileges.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import tempfile
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from aiostack.link.base import NetDevice
from aiostack.link.memory import MemoryWire
from aiostack.link.pcap import PcapWriter
from aiostack.socket import AF_INET, SOCK_DGRAM
from aiostack.stack.stack import Stack
from aiostack.wire import ipv4

UDP_ECHO_PORT = 7

#: A kernel-side UDP client, run inside the namespace: sends N datagrams to the
#: stack's echo service and checks every echo.
_KERNEL_UDP_CLIENT = """
import socket, sys
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
ok = 0
for i in range(count):
    payload = (b"aiostack-%d-" % i) * (1 + i % 7)
    s.sendto(payload, (host, port))
    data, _ = s.recvfrom(65535)
    ok += data == payload
print(ok)
"""


def _print(line: str = "") -> None:
    print(line, flush=True)


async def udp_echo(stack: Stack, port: int = UDP_ECHO_PORT) -> None:
    """RFC 862 echo over UDP: send every datagram back to where it came from."""
    sock = stack.socket(AF_INET, SOCK_DGRAM)
    sock.bind(("", port))
    try:
        while True:
            data, peer = await sock.recvfrom(65535)
            if peer is not None:
                await sock.sendto(data, peer)
    finally:
        sock.close()


def _summarise_ping(output: str) -> str:
    loss = re.search(r"(\d+(?:\.\d+)?)% packet loss", output)
    rtt = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)/", output)
    parts = [f"{loss.group(1)}% loss" if loss else "no summary"]
    if rtt:
        parts.append(f"rtt min/avg/max {rtt.group(1)}/{rtt.group(2)}/{rtt.group(3)} ms")
    return ", ".join(parts)


def _show_statistics(stack: Stack, title: str) -> None:
    stats = stack.statistics()
    _print(f"\n{title}: counters that moved (Linux SNMP names)")
    for name, value in stats["mib"].items():
        if value:
            _print(f"  {name:<24} {value}")
    if stats["drops"]:
        _print("  drops by reason: " + ", ".join(f"{k}={v}" for k, v in stats["drops"].items()))


async def demo_tap(pcap_path: Path) -> int:
    from aiostack.testing.netns import TapNamespace

    async with TapNamespace(prefix="aiostkdemo") as spec:
        ns = spec.namespace
        device: NetDevice = PcapWriter(spec.device(), pcap_path)
        address = f"{spec.stack_ip}/{spec.prefixlen}"
        async with Stack(device, address=address, mac=spec.stack_mac) as stack:
            _print(
                f"aiostack is up on TAP {spec.name} in namespace {spec.netns}: {address}, "
                f"MAC {spec.stack_mac.hex(':')}; the kernel is {spec.kernel_ip}"
            )
            echo = asyncio.create_task(udp_echo(stack))
            try:
                checks = [
                    (
                        "kernel pings aiostack (5 x 56 bytes)",
                        ("ping", "-c", "5", "-i", "0.2", "-W", "2", spec.stack_ip),
                    ),
                    (
                        "kernel pings with 8000 bytes (fragmented both ways)",
                        ("ping", "-c", "3", "-i", "0.2", "-s", "8000", "-W", "2", spec.stack_ip),
                    ),
                    (
                        "kernel flood-pings aiostack (1000)",
                        ("ping", "-f", "-c", "1000", "-W", "2", spec.stack_ip),
                    ),
                ]
                for title, argv in checks:
                    result = await ns.run_async(*argv, timeout=60)
                    _print(f"- {title}: {_summarise_ping(result.stdout.decode())}")
                result = await ns.run_async(
                    sys.executable,
                    "-c",
                    _KERNEL_UDP_CLIENT,
                    spec.stack_ip,
                    str(UDP_ECHO_PORT),
                    "100",
                    timeout=60,
                )
                echoed = result.stdout.decode().strip() or result.stderr.decode().strip()
                _print(f"- kernel UDP client -> aiostack echo on port 7: {echoed}/100 echoed")
                rtt = await stack.ping(spec.kernel_ip)
                neighbor = stack.neighbors.entries.get(ipv4.addr(spec.kernel_ip))
                mac = neighbor.mac.hex(":") if neighbor and neighbor.mac else "?"
                _print(
                    f"- aiostack pings the kernel: {rtt * 1e3:.3f} ms "
                    f"(resolved {spec.kernel_ip} to {mac} by ARP)"
                )
            finally:
                echo.cancel()
                await asyncio.gather(echo, return_exceptions=True)
            _show_statistics(stack, "aiostack")
    _print(f"\npcap of the whole exchange: {pcap_path} (open it with tcpdump -r or tshark -r)")
    _print("namespace and TAP removed.")
    return 0


async def demo_memory(pcap_path: Path) -> int:
    a, b = MemoryWire.pair()
    device: NetDevice = PcapWriter(a, pcap_path)
    async with (
        Stack(device, address="198.18.0.1/24", seed=1) as left,
        Stack(b, address="198.18.0.2/24", seed=2) as right,
    ):
        _print("two stacks on an in-memory wire: 198.18.0.1 <-> 198.18.0.2")
        echo = asyncio.create_task(udp_echo(right))
        try:
            for size in (56, 8000):
                rtt = await left.ping("198.18.0.2", payload=bytes(size))
                _print(f"- ping with {size} bytes: {rtt * 1e3:.3f} ms")
            client = left.socket(AF_INET, SOCK_DGRAM)
            ok = 0
            for i in range(100):
                payload = b"aiostack-%d" % i
                await client.sendto(payload, ("198.18.0.2", UDP_ECHO_PORT))
                data, _peer = await client.recvfrom(65535)
                ok += data == payload
            client.close()
            _print(f"- UDP echo: {ok}/100 echoed")
        finally:
            echo.cancel()
            await asyncio.gather(echo, return_exceptions=True)
        _show_statistics(right, "198.18.0.2")
    _print(f"\npcap of the exchange: {pcap_path}")
    return 0


def _tap_missing() -> str | None:
    if os.geteuid() != 0:
        return "the TAP demo needs root (CAP_NET_ADMIN) to create a namespace and a TAP device"
    if not os.path.exists("/dev/net/tun"):
        return "the TAP demo needs /dev/net/tun (modprobe tun)"
    return None


def cmd_demo(args: argparse.Namespace) -> int:
    pcap_path = Path(args.pcap) if args.pcap else Path(tempfile.gettempdir()) / "aiostack-demo.pcap"
    if args.memory:
        return _run(demo_memory(pcap_path), args.loop)
    missing = _tap_missing()
    if missing is not None:
        _print(f"aiostack demo: {missing}.")
        _print(
            "Run it as root, or run the same demo between two stacks on an in-memory "
            "network, which needs no privileges:  aiostack demo --memory"
        )
        return 2
    return _run(demo_tap(pcap_path), args.loop)


def _run(coro: Coroutine[Any, Any, int], loop: str) -> int:
    if loop == "uvloop":
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aiostack", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="bring a stack up on a TAP and let the kernel talk to it")
    demo.add_argument(
        "--memory",
        action="store_true",
        help="run between two stacks on an in-memory wire (no root needed)",
    )
    demo.add_argument("--pcap", help="where to write the capture (default: a temp file)")
    demo.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    demo.set_defaults(handler=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130
