"""Bulk TCP between aiostack and the kernel over a real TAP, with 64 KB segments both ways.

With virtio-net offloads at MTU 1500 the kernel must accept aiostack's TSO
super-frames (virtio header TCPV4, ``gso_size`` = MSS, checksum left to it)
and aiostack must take the kernel's GSO super-frames whole; at a TAP MTU
of 65000 segments are that large without any offload. The data must
arrive intact and in far fewer frames than MSS-sized segments.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
from collections.abc import AsyncIterator

import pytest

from aiostack.stack.stack import Stack
from aiostack.testing.netns import TapSpec, require_tap, tap_in_netns

pytestmark = pytest.mark.tap

PORT = 7100
SIZE = 8 << 20
TIMEOUT = 60.0
CASES = [
    pytest.param((1500, True), id="mtu1500-offload"),
    pytest.param((65000, False), id="mtu65000"),
]


async def _stack(spec: TapSpec, offload: bool) -> Stack:
    stack = Stack(
        spec.device(offload=offload),
        address=f"{spec.stack_ip}/{spec.prefixlen}",
        mac=spec.stack_mac,
    )
    await stack.__aenter__()
    stack.add_neighbor(spec.kernel_ip, spec.kernel_mac)
    return stack


@pytest.fixture
async def setup(request: pytest.FixtureRequest) -> AsyncIterator[tuple[TapSpec, Stack]]:
    mtu, offload = request.param
    require_tap()
    async with tap_in_netns(prefix="aiostktso", mtu=mtu, static_neighbor=True) as spec:
        stack = await _stack(spec, offload)
        try:
            yield spec, stack
        finally:
            await stack.__aexit__(None, None, None)


@pytest.mark.parametrize("setup", CASES, indirect=True)
async def test_aiostack_to_kernel_in_super_segments(setup: tuple[TapSpec, Stack]) -> None:
    spec, stack = setup
    data = os.urandom(SIZE)
    listener = spec.namespace.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((spec.kernel_ip, PORT))
    listener.listen(1)
    listener.settimeout(TIMEOUT)

    def receive() -> bytes:
        conn, _ = listener.accept()
        conn.settimeout(TIMEOUT)
        digest = hashlib.sha256()
        with conn:
            while chunk := conn.recv(1 << 20):
                digest.update(chunk)
        return digest.digest()

    received = asyncio.ensure_future(asyncio.to_thread(receive))
    try:
        sock = stack.socket(socket.AF_INET, socket.SOCK_STREAM)
        async with asyncio.timeout(TIMEOUT):
            await sock.connect((spec.kernel_ip, PORT))
            await sock.sendall(data)
            sock.close()
            assert await received == hashlib.sha256(data).digest()
    finally:
        listener.close()
        await asyncio.wait({received})
    frames = stack.statistics()["device"]["tx_frames"]
    mss_segments = SIZE // 1448
    assert frames < mss_segments // 4, f"{frames} frames for {mss_segments} MSS of data"
    assert stack.statistics()["device"]["drops"] == {}


@pytest.mark.parametrize("setup", CASES, indirect=True)
async def test_kernel_to_aiostack_in_super_segments(setup: tuple[TapSpec, Stack]) -> None:
    spec, stack = setup
    data = os.urandom(SIZE)
    listener = stack.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("", PORT))
    listener.listen(1)

    def send() -> None:
        with spec.namespace.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(TIMEOUT)
            sock.connect((spec.stack_ip, PORT))
            sock.sendall(data)

    sent = asyncio.ensure_future(asyncio.to_thread(send))
    try:
        digest = hashlib.sha256()
        async with asyncio.timeout(TIMEOUT):
            conn, _ = await listener.accept()
            while chunk := await conn.recv(1 << 20):
                digest.update(chunk)
            conn.close()
            await sent
        assert digest.digest() == hashlib.sha256(data).digest()
    finally:
        listener.close()
        await asyncio.wait({sent})
    stats = stack.statistics()
    frames = stats["device"]["rx_frames"]
    # The kernel sizes its super-frames by its pacing rate (tcp_tso_autosize),
    # so how large they get depends on the machine's load: only ask for some.
    assert frames < SIZE // 1448 * 3 // 4, f"{frames} frames received for {SIZE} bytes"
    assert stats["mib"]["TcpInErrs"] == 0
