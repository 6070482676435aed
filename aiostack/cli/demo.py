"""``aiostack demo``: the README's main job.

It is the README's main job: as root it creates a network
namespace with a TAP device, brings a stack up on it, and lets the Linux
kernel on the other side of the TAP ping it (small, fragmented and flood
pings), exchange UDP datagrams with it, and fetch a page and a verified 5 MB
download with curl from an HTTP server written with plain asyncio streams on
the stack; then it shows the counters, writes a pcap of everything, and
removes what it created. Without root (or
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
from pathlib import Path

from aiostack.aio.streams import start_server
from aiostack.cli.run import run_main as _run
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


#: ``/bytes/N`` serves byte i as ``i % 251``, so any client can verify what it got.
#: Chunks are a whole number of periods long, so every chunk starts at byte 0.
_PATTERN_CHUNK = bytes(range(251)) * 261
HTTP_PORT = 80

_PAGE = b"<!doctype html><title>aiostack</title><h1>Hello from aiostack</h1>\n"

#: A kernel-side check of a /bytes/N download: reads stdin, prints "OK n" or "BAD n".
_KERNEL_PATTERN_CHECK = """
import sys
data = sys.stdin.buffer.read()
want = (bytes(range(251)) * (len(data) // 251 + 1))[: len(data)]
print(("OK" if data == want else "BAD"), len(data))
"""


async def http_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A small HTTP/1.1 server on plain asyncio streams: ``/`` and ``/bytes/N``, keep-alive."""
    try:
        while True:
            request = await reader.readline()
            if not request:
                break
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass  # headers: nothing here needs them
            parts = request.split()
            path = parts[1].decode("ascii", "replace") if len(parts) > 1 else "/"
            if path == "/":
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(_PAGE), _PAGE)
                )
            elif path.startswith("/bytes/") and path[7:].isdigit():
                size = int(path[7:])
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                    b"Content-Length: %d\r\n\r\n" % size
                )
                for offset in range(0, size, len(_PATTERN_CHUNK)):
                    writer.write(_PATTERN_CHUNK[: size - offset])
                    await writer.drain()
            else:
                writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


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
            http = await start_server(stack, http_handler, "", HTTP_PORT)
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
                url = f"http://{spec.stack_ip}:{HTTP_PORT}"
                page = await ns.run_async("curl", "-s", "--max-time", "30", f"{url}/", timeout=60)
                ok = page.stdout.decode() == _PAGE.decode()
                _print(f"- curl {url}/: {'the page arrived intact' if ok else 'FAILED'}")
                size = 5_000_000
                download = await ns.run_async(
                    "sh",
                    "-c",
                    f"curl -s --max-time 120 -w '%{{speed_download}}' -o /tmp/.aiostack-demo-$$ "
                    f"{url}/bytes/{size} && python3 -c '{_KERNEL_PATTERN_CHECK}' "
                    f"< /tmp/.aiostack-demo-$$; rm -f /tmp/.aiostack-demo-$$",
                    timeout=180,
                )
                # curl prints the speed (no newline), then the checker "OK n" or "BAD n".
                outcome = re.match(r"([\d.]+)(OK|BAD) (\d+)", download.stdout.decode())
                if outcome is None:
                    _print(f"- curl {url}/bytes/{size}: FAILED {download.stderr.decode()}")
                else:
                    speed, verdict, got = outcome.groups()
                    _print(
                        f"- curl {url}/bytes/{size}: {verdict} {got} bytes verified, "
                        f"{float(speed) / 1e6:.1f} MB/s"
                    )
                rtt = await stack.ping(spec.kernel_ip)
                neighbor = stack.neighbors.entries.get(ipv4.addr(spec.kernel_ip))
                mac = neighbor.mac.hex(":") if neighbor and neighbor.mac else "?"
                _print(
                    f"- aiostack pings the kernel: {rtt * 1e3:.3f} ms "
                    f"(resolved {spec.kernel_ip} to {mac} by ARP)"
                )
            finally:
                http.close()
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


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``aiostack demo`` to the command's sub-commands."""
    demo = sub.add_parser("demo", help="bring a stack up on a TAP and let the kernel talk to it")
    demo.add_argument(
        "--memory",
        action="store_true",
        help="run between two stacks on an in-memory wire (no root needed)",
    )
    demo.add_argument("--pcap", help="where to write the capture (default: a temp file)")
    demo.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    demo.set_defaults(handler=cmd_demo)
