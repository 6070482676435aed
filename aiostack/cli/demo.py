"""``aiostack demo``: the README's main job.

As root it creates a network namespace with a TAP device, brings a stack up
on it with the built-in ``http`` and ``echo`` services
(:mod:`aiostack.services`), and lets the Linux kernel on the other side of
the TAP use them: ping (small, fragmented and flood), UDP echo, curl for the
page and a 50 MB ``/bytes/52428800`` download verified by SHA-256 (with its
throughput), and a TCP echo exchange from a kernel socket in the namespace.
While that echo connection is open it shows the stack's connection table
with TCP_INFO (what ``aiostack ss -ti`` prints), then the counters that
moved (``aiostack stats``), writes a pcap and removes what it created.

The pcap keeps only each frame's first :data:`PCAP_SNAPLEN` bytes
(Ethernet, IP and TCP headers with options, and the start of any payload),
as ``tcpdump -s 128`` would: the 50 MB download is some 36,000 frames, so a
full capture would be as large as the download, while the headers are what
one reads a TCP exchange by. That keeps the file near 6 MB.

Without root (or without /dev/net/tun) it says what is missing and offers
``--memory``: the same kind of exchange between two stacks on an in-memory
wire, which needs no privileges.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import re
import socket
import sys
import tempfile
import time
from pathlib import Path

from aiostack import services
from aiostack.aio.streams import open_connection
from aiostack.cli import ss as ss_cli
from aiostack.cli import stats as stats_cli
from aiostack.cli.control import socket_table
from aiostack.cli.run import run_main as _run
from aiostack.link.base import NetDevice
from aiostack.link.memory import MemoryWire
from aiostack.link.pcap import PcapWriter
from aiostack.services.http import PATTERN_PERIOD, pattern
from aiostack.socket import AF_INET, SOCK_DGRAM
from aiostack.stack.stack import Stack
from aiostack.testing.netns import NetNamespace
from aiostack.wire import ipv4

UDP_ECHO_PORT = 7
HTTP_PORT = 80
#: The big download: 50 MiB.
DOWNLOAD_SIZE = 52_428_800
#: Bytes of each frame kept in the demo's pcap (headers, not payload).
PCAP_SNAPLEN = 128
#: Bytes the kernel's TCP echo client sends.
TCP_ECHO_SIZE = 262_144

#: Kernel side of the big download, run in the namespace: curl writes the
#: body to stdout, this hashes it and prints "<bytes> <sha256>".
_KERNEL_SHA256 = """
import hashlib, sys
h = hashlib.sha256(); n = 0
while chunk := sys.stdin.buffer.read(1 << 20):
    h.update(chunk); n += len(chunk)
print(n, h.hexdigest())
"""


def _print(line: str = "") -> None:
    print(line, flush=True)


def pattern_sha256(size: int) -> str:
    """SHA-256 of ``/bytes/size``, computed in slices (never ``size`` bytes at once)."""
    block = bytes(range(PATTERN_PERIOD)) * 4096
    digest = hashlib.sha256()
    for offset in range(0, size, len(block)):
        digest.update(block[: min(len(block), size - offset)])
    return digest.hexdigest()


def _summarise_ping(output: str) -> str:
    loss = re.search(r"(\d+(?:\.\d+)?)% packet loss", output)
    rtt = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)/", output)
    parts = [f"{loss.group(1)}% loss" if loss else "no summary"]
    if rtt:
        parts.append(f"rtt min/avg/max {rtt.group(1)}/{rtt.group(2)}/{rtt.group(3)} ms")
    return ", ".join(parts)


def _show_statistics(stack: Stack, title: str) -> None:
    _print(f"\n{title}: counters that moved (aiostack stats; Linux SNMP names)")
    pairs = stats_cli.counter_lines(stack.statistics(), zeros=False)
    for line in stats_cli.render(pairs).splitlines()[1:]:
        _print("  " + line)


def _show_connections(stack: Stack) -> None:
    _print("\nconnection table (aiostack ss -tai):")
    rows = ss_cli.select_rows(socket_table(stack), tcp=True, udp=False, listening=False, every=True)
    for line in ss_cli.render(rows, info=True).splitlines():
        _print("  " + line)


def _udp_echo_client(ns: NetNamespace, host: str, count: int) -> int:
    """Kernel side: ``count`` datagrams to the echo service; how many came back intact."""
    with ns.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        ok = 0
        for i in range(count):
            payload = (b"aiostack-%d-" % i) * (1 + i % 7)
            sock.sendto(payload, (host, UDP_ECHO_PORT))
            data, _ = sock.recvfrom(65535)
            ok += data == payload
        return ok


def _tcp_echo_open(ns: NetNamespace, host: str) -> tuple[socket.socket, bool]:
    """Kernel side: connect to echo, send :data:`TCP_ECHO_SIZE` bytes, read them back.

    Sends in 16 KiB slices and reads each slice's echo before the next, so
    neither side's buffers can fill up and deadlock a single thread. The
    connection is left open for the connection table.
    """
    sock = ns.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(30)
    sock.connect((host, UDP_ECHO_PORT))
    intact = True
    for _ in range(TCP_ECHO_SIZE // 16384):
        piece = os.urandom(16384)
        sock.sendall(piece)
        got = b""
        while len(got) < len(piece):
            data = sock.recv(len(piece) - len(got))
            if not data:
                return sock, False
            got += data
        intact &= got == piece
    return sock, intact


def _tcp_echo_close(sock: socket.socket) -> bool:
    """Half-close; the echo server answers our FIN with its own (EOF, nothing more)."""
    try:
        sock.shutdown(socket.SHUT_WR)
        return sock.recv(1) == b""
    finally:
        sock.close()


async def demo_tap(pcap_path: Path) -> int:
    from aiostack.testing.netns import TapNamespace

    async with TapNamespace(prefix="aiostkdemo") as spec:
        ns = spec.namespace
        device: NetDevice = PcapWriter(spec.device(), pcap_path, snaplen=PCAP_SNAPLEN)
        address = f"{spec.stack_ip}/{spec.prefixlen}"
        async with Stack(device, address=address, mac=spec.stack_mac) as stack:
            started = [
                await services.http.serve(stack, HTTP_PORT),
                await services.echo.serve(stack, UDP_ECHO_PORT),
            ]
            _print(
                f"aiostack is up on TAP {spec.name} in namespace {spec.netns}: {address}, "
                f"MAC {spec.stack_mac.hex(':')}; the kernel is {spec.kernel_ip}; services "
                + ", ".join(s.describe() for s in started)
            )
            try:
                await _kernel_side(stack, ns, spec.stack_ip, spec.kernel_ip)
            finally:
                for service in started:
                    await service.aclose()
            _show_statistics(stack, "aiostack")
    size = await asyncio.to_thread(lambda: pcap_path.stat().st_size)
    _print(
        f"\npcap of the whole exchange, headers only (snaplen {PCAP_SNAPLEN}): {pcap_path}, "
        f"{size / 1e6:.1f} MB (open it with tcpdump -r or tshark -r)"
    )
    _print("namespace and TAP removed.")
    return 0


async def _kernel_side(stack: Stack, ns: NetNamespace, stack_ip: str, kernel_ip: str) -> None:
    checks = [
        ("kernel pings aiostack (5 x 56 bytes)", ("ping", "-c", "5", "-i", "0.2", "-W", "2")),
        (
            "kernel pings with 8000 bytes (fragmented both ways)",
            ("ping", "-c", "3", "-i", "0.2", "-s", "8000", "-W", "2"),
        ),
        ("kernel flood-pings aiostack (1000)", ("ping", "-f", "-c", "1000", "-W", "2")),
    ]
    for title, argv in checks:
        result = await ns.run_async(*argv, stack_ip, timeout=60)
        _print(f"- {title}: {_summarise_ping(result.stdout.decode())}")

    echoed = await asyncio.to_thread(_udp_echo_client, ns, stack_ip, 100)
    _print(f"- kernel UDP client -> aiostack echo on port 7: {echoed}/100 echoed")

    url = f"http://{stack_ip}:{HTTP_PORT}"
    page = await ns.run_async("curl", "-s", "--max-time", "30", f"{url}/", timeout=60)
    ok = page.stdout == services.http.PAGE
    _print(f"- curl {url}/: {'the page arrived intact' if ok else 'FAILED'}")

    want = await asyncio.to_thread(pattern_sha256, DOWNLOAD_SIZE)
    download = await ns.run_async(
        "sh",
        "-c",
        f"curl -s --max-time 120 -w '%{{stderr}}%{{speed_download}}' {url}/bytes/{DOWNLOAD_SIZE}"
        f" | {sys.executable} -c '{_KERNEL_SHA256}'",
        timeout=180,
    )
    got = download.stdout.decode().split()
    speed = re.match(r"[\d.]+", download.stderr.decode())
    if len(got) == 2 and speed is not None:
        verdict = "OK" if got == [str(DOWNLOAD_SIZE), want] else "BAD"
        _print(
            f"- curl {url}/bytes/{DOWNLOAD_SIZE}: {verdict} {got[0]} bytes, sha256 "
            f"{'verified' if verdict == 'OK' else 'MISMATCH'}, "
            f"{float(speed.group()) / 1e6:.1f} MB/s"
        )
    else:
        _print(f"- curl {url}/bytes/{DOWNLOAD_SIZE}: FAILED {download.stderr.decode()!r}")

    sock, intact = await asyncio.to_thread(_tcp_echo_open, ns, stack_ip)
    try:
        _print(
            f"- kernel TCP client -> aiostack echo on port 7: {TCP_ECHO_SIZE} bytes "
            + ("echoed intact" if intact else "NOT echoed intact")
        )
        _show_connections(stack)
    finally:
        closed = await asyncio.to_thread(_tcp_echo_close, sock)
    _print(f"- the echo server closed after the kernel's FIN: {'yes' if closed else 'NO'}")

    rtt = await stack.ping(kernel_ip)
    neighbor = stack.neighbors.entries.get(ipv4.addr(kernel_ip))
    mac = neighbor.mac.hex(":") if neighbor and neighbor.mac else "?"
    _print(
        f"- aiostack pings the kernel: {rtt * 1e3:.3f} ms (resolved {kernel_ip} to {mac} by ARP)"
    )


async def demo_memory(pcap_path: Path) -> int:
    a, b = MemoryWire.pair()
    device: NetDevice = PcapWriter(a, pcap_path, snaplen=PCAP_SNAPLEN)
    # In-memory stacks belong to this process: ports below 1024 need no privilege.
    async with (
        Stack(device, address="198.18.0.1/24", seed=1, privileged=True) as left,
        Stack(b, address="198.18.0.2/24", seed=2, privileged=True) as right,
        await services.echo.serve(right, UDP_ECHO_PORT),
        await services.http.serve(right, HTTP_PORT),
    ):
        _print("two stacks on an in-memory wire: 198.18.0.1 <-> 198.18.0.2 (echo and http)")
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
        size = 5_000_000
        start = time.perf_counter()
        reader, writer = await open_connection(left, "198.18.0.2", HTTP_PORT)
        writer.write(b"GET /bytes/%d HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n" % size)
        head = await reader.readuntil(b"\r\n\r\n")
        digest, received = hashlib.sha256(), 0
        while chunk := await reader.read(1 << 16):
            digest.update(chunk)
            received += len(chunk)
        writer.close()
        elapsed = time.perf_counter() - start
        ok_http = head.startswith(b"HTTP/1.1 200 ") and digest.digest() == (
            hashlib.sha256(pattern(0, size)).digest()
        )
        _print(
            f"- HTTP GET /bytes/{size}: {'OK' if ok_http else 'BAD'} {received} bytes, "
            f"{received / elapsed / 1e6:.1f} MB/s"
        )
        _show_connections(right)
        _show_statistics(right, "198.18.0.2")
    _print(f"\npcap of the exchange (headers, snaplen {PCAP_SNAPLEN}): {pcap_path}")
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
