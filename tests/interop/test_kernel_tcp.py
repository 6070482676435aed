"""TCP between aiostack and the Linux kernel over a real TAP in a fresh namespace.

Each test gets its own namespace (kernel side 198.18.0.1/24, stack
198.18.0.2/24), removed afterwards, with and without virtio-net offloads.
Kernel sockets live in the namespace and run their blocking calls on
threads; the stack's run on the test's loop. Waits are bounded by generous
timeouts, never sleeps. Throughput of the 10 MB transfers is printed
(``pytest -s``) for the record, not asserted.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from aiostack.socket import AF_INET, SHUT_WR, SOCK_STREAM
from aiostack.stack.stack import Stack
from aiostack.testing.netns import NetNamespace, TapSpec, require_tap, tap_in_netns

from . import harness
from .harness import kernel_read_to_eof, kernel_send_then_shut, payload, read_to_eof

pytestmark = pytest.mark.tap

TIMEOUT = 60.0
PORT = 8080
TEN_MB = 10 * 1024 * 1024


@dataclass
class Peer:
    spec: TapSpec
    ns: NetNamespace
    stack: Stack


@pytest.fixture(params=[False, True], ids=["plain", "offload"])
async def peer(request: pytest.FixtureRequest) -> AsyncIterator[Peer]:
    require_tap()
    async with tap_in_netns() as spec:
        device = spec.device(offload=request.param)
        address = f"{spec.stack_ip}/{spec.prefixlen}"
        async with Stack(device, address=address, mac=spec.stack_mac, seed=11) as stack:
            yield Peer(spec, spec.namespace, stack)


def kernel_tcp(peer: Peer) -> socket.socket:
    return harness.kernel_tcp(peer.ns, TIMEOUT)


async def test_kernel_client_to_stack_listener(peer: Peer) -> None:
    server = peer.stack.socket(AF_INET, SOCK_STREAM)
    server.bind(("", PORT))
    server.listen(8)
    kernel = kernel_tcp(peer)

    def client() -> bytes:
        kernel.connect((peer.spec.stack_ip, PORT))
        kernel.sendall(b"hello from linux")
        kernel.shutdown(socket.SHUT_WR)
        return kernel_read_to_eof(kernel)

    try:
        async with asyncio.timeout(TIMEOUT):
            reply = asyncio.ensure_future(asyncio.to_thread(client))
            conn, address = await server.accept()
            assert address[0] == peer.spec.kernel_ip
            request = await read_to_eof(conn)
            await conn.sendall(request.upper())
            conn.close()
            assert await reply == b"HELLO FROM LINUX"
    finally:
        kernel.close()
        server.close()


async def test_stack_client_to_kernel_listener(peer: Peer) -> None:
    kernel = kernel_tcp(peer)
    kernel.bind((peer.spec.kernel_ip, PORT))
    kernel.listen(8)

    def serve() -> tuple[bytes, tuple[str, int]]:
        conn, address = kernel.accept()
        with conn:
            conn.settimeout(TIMEOUT)
            data = kernel_read_to_eof(conn)
            conn.sendall(data[::-1])
        return data, address

    client = peer.stack.socket(AF_INET, SOCK_STREAM)
    try:
        async with asyncio.timeout(TIMEOUT):
            served = asyncio.ensure_future(asyncio.to_thread(serve))
            await client.connect((peer.spec.kernel_ip, PORT))
            await client.sendall(b"abcdef")
            client.shutdown(SHUT_WR)
            assert await read_to_eof(client) == b"fedcba"
            data, address = await served
        assert data == b"abcdef"
        assert address == client.getsockname()
    finally:
        client.close()
        kernel.close()


async def test_ten_megabytes_each_way_by_hash(peer: Peer) -> None:
    """The stack sends 10 MB to the kernel and the kernel 10 MB back, at once."""
    kernel = kernel_tcp(peer)
    kernel.bind((peer.spec.kernel_ip, PORT))
    kernel.listen(8)
    up, down = payload(TEN_MB, 1), payload(TEN_MB, 2)

    def serve() -> bytes:
        conn, _ = kernel.accept()
        with conn:
            conn.settimeout(TIMEOUT)
            thread = threading.Thread(target=kernel_send_then_shut, args=(conn, down))
            thread.start()
            data = kernel_read_to_eof(conn)
            thread.join(TIMEOUT)
        return data

    client = peer.stack.socket(AF_INET, SOCK_STREAM)

    async def send_up() -> None:
        await client.sendall(up)
        client.shutdown(SHUT_WR)

    try:
        async with asyncio.timeout(120):
            served = asyncio.ensure_future(asyncio.to_thread(serve))
            await client.connect((peer.spec.kernel_ip, PORT))
            start = time.perf_counter()
            _, got_down, got_up = await asyncio.gather(send_up(), read_to_eof(client), served)
            elapsed = time.perf_counter() - start
        assert hashlib.sha256(got_up).hexdigest() == hashlib.sha256(up).hexdigest()
        assert hashlib.sha256(got_down).hexdigest() == hashlib.sha256(down).hexdigest()
        rate = 2 * TEN_MB / elapsed / 1e6
        print(f"\n10 MB each way with the kernel in {elapsed:.2f} s: {rate:.1f} MB/s total")
    finally:
        client.close()
        kernel.close()


async def test_curl_fetches_from_a_stack_http_responder(peer: Peer) -> None:
    server = peer.stack.socket(AF_INET, SOCK_STREAM)
    server.bind(("", 80))
    server.listen(8)
    body = b"<h1>served by aiostack</h1>\n" * 100

    async def respond() -> bytes:
        conn, _ = await server.accept()
        request = bytearray()
        while b"\r\n\r\n" not in request:
            chunk = await conn.recv(4096)
            if not chunk:
                break
            request += chunk
        head = (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n"
        )
        await conn.sendall(head + body)
        conn.shutdown(SHUT_WR)
        await read_to_eof(conn)
        conn.close()
        return bytes(request)

    try:
        async with asyncio.timeout(TIMEOUT):
            responder = asyncio.ensure_future(respond())
            result = await peer.ns.run_async(
                "curl", "-sS", "--max-time", "30", f"http://{peer.spec.stack_ip}/index.html"
            )
            request = await responder
        assert result.returncode == 0, result.stderr.decode()
        assert result.stdout == body
        assert request.startswith(b"GET /index.html HTTP/1.1\r\n")
    finally:
        server.close()


async def test_connect_to_closed_kernel_port_is_refused(peer: Peer) -> None:
    client = peer.stack.socket(AF_INET, SOCK_STREAM)
    try:
        async with asyncio.timeout(TIMEOUT):
            with pytest.raises(ConnectionRefusedError):
                await client.connect((peer.spec.kernel_ip, 9))
    finally:
        client.close()
