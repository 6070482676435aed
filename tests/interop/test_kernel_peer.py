"""The Linux kernel as the peer, over a real TAP in a namespace each test creates.

Each test gets a fresh namespace holding a TAP whose kernel side is
198.18.0.1/24 and a stack attached to it at 198.18.0.2/24; both are removed
afterwards. The kernel's own tools (ping) and kernel sockets inside the
namespace talk to the stack. Tests wait on events with generous timeouts,
never on sleeps.
"""

from __future__ import annotations

import asyncio
import errno
import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from aiostack.link.pcap import PcapWriter
from aiostack.socket import AF_INET, SOCK_DGRAM
from aiostack.stack.stack import Stack
from aiostack.testing.netns import NetNamespace, TapSpec, require_tap, tap_in_netns
from aiostack.wire import ipv4

pytestmark = pytest.mark.tap

TIMEOUT = 30.0


@dataclass
class Peer:
    spec: TapSpec
    ns: NetNamespace
    stack: Stack
    pcap: Path


@pytest.fixture(params=[False, True], ids=["plain", "offload"])
async def peer(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Peer]:
    """A stack on a fresh TAP; with and without virtio-net offloads negotiated."""
    require_tap()
    async with tap_in_netns() as spec:
        pcap = tmp_path / "capture.pcap"
        device = PcapWriter(spec.device(offload=request.param), pcap)
        address = f"{spec.stack_ip}/{spec.prefixlen}"
        async with Stack(device, address=address, mac=spec.stack_mac, seed=7) as stack:
            assert device.vnet_hdr is request.param  # the offload really was negotiated
            yield Peer(spec, spec.namespace, stack, pcap)


def _received(output: str) -> int:
    match = re.search(r"(\d+) received", output)
    assert match is not None, output
    return int(match.group(1))


async def test_kernel_pings_the_stack(peer: Peer) -> None:
    result = await peer.ns.run_async(
        "ping", "-c", "5", "-i", "0.2", "-W", "5", peer.spec.stack_ip, timeout=TIMEOUT
    )
    assert _received(result.stdout.decode()) == 5, result.stdout.decode()
    mib = peer.stack.statistics()["mib"]
    assert mib["IcmpInEchos"] == 5
    assert mib["IcmpOutEchoReps"] == 5
    # The kernel had to resolve us first: we answered its ARP request.
    assert mib["ArpOutReplies"] >= 1


async def test_kernel_pings_8000_bytes_fragmented_both_ways(peer: Peer) -> None:
    result = await peer.ns.run_async(
        "ping",
        "-c",
        "3",
        "-i",
        "0.2",
        "-s",
        "8000",
        "-W",
        "5",
        peer.spec.stack_ip,
        timeout=TIMEOUT,
    )
    assert _received(result.stdout.decode()) == 3, result.stdout.decode()
    mib = peer.stack.statistics()["mib"]
    assert mib["IpReasmOKs"] == 3  # the kernel's requests arrived in fragments
    assert mib["IpFragOKs"] == 3  # and our replies left in fragments
    assert mib["IpFragCreates"] == 3 * 6  # 8028 bytes of ICMP over 1480-byte fragments


async def test_kernel_flood_ping_loses_nothing(peer: Peer) -> None:
    result = await peer.ns.run_async(
        "ping", "-f", "-c", "1000", "-W", "5", peer.spec.stack_ip, timeout=120
    )
    assert _received(result.stdout.decode()) == 1000, result.stdout.decode()
    assert peer.stack.statistics()["mib"]["IcmpOutEchoReps"] == 1000


async def test_stack_resolves_the_kernel_by_arp_and_pings_it(peer: Peer) -> None:
    kernel = ipv4.addr(peer.spec.kernel_ip)
    assert kernel not in peer.stack.neighbors.entries
    rtt = await peer.stack.ping(peer.spec.kernel_ip, timeout=TIMEOUT)
    assert rtt > 0
    entry = peer.stack.neighbors.entries[kernel]
    assert entry.mac == peer.spec.kernel_mac
    assert peer.stack.statistics()["mib"]["IcmpInEchoReps"] == 1


@pytest.mark.parametrize("size", [1, 1472, 20000])
async def test_kernel_udp_to_stack(peer: Peer, size: int) -> None:
    """Also with offloads: the kernel then leaves UDP checksums partial (NEEDS_CSUM)."""
    server = peer.stack.socket(AF_INET, SOCK_DGRAM)
    server.bind(("", 5000))
    kernel = peer.ns.socket()
    try:
        kernel.bind((peer.spec.kernel_ip, 0))
        payload = bytes(i % 251 for i in range(size))
        await asyncio.to_thread(kernel.sendto, payload, (peer.spec.stack_ip, 5000))
        async with asyncio.timeout(TIMEOUT):
            data, source = await server.recvfrom(65535)
        assert data == payload
        assert source == kernel.getsockname()
    finally:
        kernel.close()
        server.close()


@pytest.mark.parametrize("size", [1, 1472, 20000])
async def test_stack_udp_to_kernel(peer: Peer, size: int) -> None:
    kernel = peer.ns.socket()
    client = peer.stack.socket(AF_INET, SOCK_DGRAM)
    try:
        kernel.bind((peer.spec.kernel_ip, 6000))
        kernel.settimeout(TIMEOUT)
        payload = bytes((i * 7) % 256 for i in range(size))
        await client.sendto(payload, (peer.spec.kernel_ip, 6000))
        data, source = await asyncio.to_thread(kernel.recvfrom, 65535)
        assert data == payload
        # Unbound, the socket's name keeps the wildcard (as on Linux); the
        # datagram carries the route's source address.
        assert source == (peer.spec.stack_ip, client.getsockname()[1])
    finally:
        kernel.close()
        client.close()


async def test_udp_echo_round_trips_with_the_kernel(peer: Peer) -> None:
    """The stack answers a kernel client; the reply reaches the kernel socket that asked."""
    server = peer.stack.socket(AF_INET, SOCK_DGRAM)
    server.bind(("", 7))

    async def echo() -> None:
        while True:
            data, source = await server.recvfrom(65535)
            await server.sendto(data, source)

    task = asyncio.create_task(echo())
    kernel = peer.ns.socket()
    try:
        kernel.settimeout(TIMEOUT)
        kernel.connect((peer.spec.stack_ip, 7))
        for i in range(50):
            message = b"datagram %d " % i * (i + 1)
            await asyncio.to_thread(kernel.send, message)
            assert await asyncio.to_thread(kernel.recv, 65535) == message
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        kernel.close()
        server.close()


async def test_kernel_gets_port_unreachable_from_a_closed_port(peer: Peer) -> None:
    kernel = peer.ns.socket()
    try:
        kernel.settimeout(TIMEOUT)
        kernel.connect((peer.spec.stack_ip, 9))
        await asyncio.to_thread(kernel.send, b"anyone?")
        with pytest.raises(ConnectionRefusedError):
            await asyncio.to_thread(kernel.recv, 100)
    finally:
        kernel.close()
    mib = peer.stack.statistics()["mib"]
    assert mib["UdpNoPorts"] == 1
    assert mib["IcmpOutDestUnreachs"] == 1


async def test_stack_gets_port_unreachable_from_the_kernel(peer: Peer) -> None:
    client = peer.stack.socket(AF_INET, SOCK_DGRAM)
    try:
        await client.connect((peer.spec.kernel_ip, 9))
        await client.send(b"anyone?")
        with pytest.raises(ConnectionRefusedError) as info:
            async with asyncio.timeout(TIMEOUT):
                await client.recv(100)
        assert info.value.errno == errno.ECONNREFUSED
    finally:
        client.close()


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
async def test_capture_opens_in_tshark(peer: Peer) -> None:
    result = await peer.ns.run_async(
        "ping", "-c", "2", "-i", "0.2", "-W", "5", peer.spec.stack_ip, timeout=TIMEOUT
    )
    assert _received(result.stdout.decode()) == 2
    await peer.stack.aclose()  # flush and close the capture
    argv = [
        "tshark",
        "-r",
        str(peer.pcap),
        "-T",
        "fields",
        "-e",
        "_ws.col.Protocol",
        "-e",
        "icmp.type",
    ]
    shown = (
        await asyncio.to_thread(
            subprocess.run,
            argv,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    ).stdout.split("\n")
    rows = [line.split("\t") for line in shown if line]
    assert ["ARP", ""] in rows
    assert rows.count(["ICMP", "8"]) == 2  # the kernel's echo requests...
    assert rows.count(["ICMP", "0"]) == 2  # ...and our replies


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


async def test_stack_on_a_tap_leaves_no_descriptor_or_task_behind() -> None:
    require_tap()

    async def one_life() -> None:
        async with tap_in_netns() as spec:
            address = f"{spec.stack_ip}/{spec.prefixlen}"
            async with Stack(spec.device(), address=address, mac=spec.stack_mac) as stack:
                sock = stack.socket(AF_INET, SOCK_DGRAM)
                sock.bind(("", 5000))
                result = await spec.namespace.run_async(
                    "ping", "-c", "1", "-W", "5", spec.stack_ip, timeout=TIMEOUT
                )
                assert _received(result.stdout.decode()) == 1

    # The first run lets the loop make what it makes once and keeps (uvloop
    # opens its child-process watcher on the first subprocess).
    await one_life()
    before_fds = _open_fds()
    before_tasks = asyncio.all_tasks()
    for _ in range(3):
        await one_life()
    assert asyncio.all_tasks() == before_tasks
    assert _open_fds() == before_fds
