"""aiostack as the client of real kernel programs: ``python -m http.server``, ``nc -l``, asyncio.

Each test gets a fresh namespace (kernel 198.18.0.1, stack 198.18.0.2, TAP
with virtio-net offloads), removed afterwards. The kernel programs run as
separate processes inside the namespace, started by the test, which waits
for each to say it listens before connecting. Every transfer is 100 MB in
each direction the program supports, verified by SHA-256: about 2-5 s per
test and loop on the 2-core reference machine under a load average of 4,
most of it generating, writing and hashing the data. A slower stack or
machine can set ``AIOSTACK_INTEROP_MB`` to a smaller size; the bound on
each test grows with the size (at least 120 s, 2 s per MB).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aiostack.aio.streams import open_connection
from aiostack.socket import AF_INET, SHUT_WR, SOCK_STREAM

from .harness import (
    KernelProcess,
    Peer,
    hash_to_eof,
    payload,
    python_in_ns,
    sha256,
    stack_on_tap,
)

pytestmark = pytest.mark.tap

SIZE = int(os.environ.get("AIOSTACK_INTEROP_MB", "100")) * 1024 * 1024
#: Bound on one transfer test: 2 s per MB (0.5 MB/s, 50+ times slower than seen under load).
TRANSFER_TIMEOUT = max(120.0, 2 * SIZE / 1e6)
PORT = 8000


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    async with stack_on_tap(offload=True) as peer:
        yield peer


def _report(what: str, size: int, elapsed: float) -> None:
    print(f"\n{what}: {size / 1e6:.0f} MB in {elapsed:.2f} s ({size / elapsed / 1e6:.1f} MB/s)")


async def test_stack_fetches_a_file_from_kernel_http_server(peer: Peer, tmp_path: Path) -> None:
    """GET a generated file from ``python -m http.server`` over aiostack's Streams."""
    body = payload(SIZE, 1)
    (tmp_path / "big.bin").write_bytes(body)
    expected = sha256(body)
    del body
    argv = [sys.executable, "-u", "-m", "http.server", "-b", peer.spec.kernel_ip]
    argv += ["-d", str(tmp_path)]
    async with KernelProcess(peer.ns, [*argv, str(PORT)], ready=r"Serving HTTP"):
        async with asyncio.timeout(TRANSFER_TIMEOUT):
            reader, writer = await open_connection(peer.stack, peer.spec.kernel_ip, PORT)
            start = time.perf_counter()
            writer.write(b"GET /big.bin HTTP/1.1\r\nHost: " + peer.spec.kernel_ip.encode())
            writer.write(b"\r\nConnection: close\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            status, *fields = head.decode("latin-1").split("\r\n")
            assert status.split()[1] == "200", head
            headers = dict(f.split(": ", 1) for f in fields if f)
            assert int(headers["Content-Length"]) == SIZE
            digest = hashlib.sha256()
            received = 0
            while chunk := await reader.read(1 << 20):
                digest.update(chunk)
                received += len(chunk)
            elapsed = time.perf_counter() - start
            writer.close()
            await writer.wait_closed()
    assert received == SIZE
    assert digest.hexdigest() == expected
    _report("http.server -> stack", SIZE, elapsed)


async def test_stack_exchanges_with_nc(peer: Peer, tmp_path: Path) -> None:
    """``nc -N -l`` sends a file while the stack sends it as much; both arrive intact."""
    down, up = payload(SIZE, 2), payload(SIZE, 3)
    (tmp_path / "down.bin").write_bytes(down)
    down_digest, up_digest = sha256(down), sha256(up)
    del down
    with (tmp_path / "down.bin").open("rb") as stdin, (tmp_path / "up.bin").open("wb") as stdout:
        nc = KernelProcess(
            peer.ns,
            ["nc", "-n", "-v", "-N", "-l", peer.spec.kernel_ip, str(PORT)],
            ready=r"Listening on",
            ready_on="stderr",
            stdin=stdin,
            stdout=stdout,
        )
        async with nc:
            client = peer.stack.socket(AF_INET, SOCK_STREAM)
            try:
                async with asyncio.timeout(TRANSFER_TIMEOUT):
                    await client.connect((peer.spec.kernel_ip, PORT))
                    start = time.perf_counter()

                    _, (received, got) = await asyncio.gather(
                        client.sendall(up), hash_to_eof(client)
                    )
                    # Our FIN only now: OpenBSD ``nc -l`` exits as soon as its peer
                    # has closed and its buffers are empty, unsent stdin or not.
                    client.shutdown(SHUT_WR)
                    assert await nc.wait() == 0, nc.output.decode(errors="replace")
                    elapsed = time.perf_counter() - start
            finally:
                client.close()
    assert received == SIZE
    assert got == down_digest
    assert (tmp_path / "up.bin").stat().st_size == SIZE
    assert await asyncio.to_thread(_file_sha256, tmp_path / "up.bin") == up_digest
    _report("stack <-> nc, both ways", 2 * SIZE, elapsed)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


async def test_stack_through_kernel_asyncio_echo_server(peer: Peer) -> None:
    """SIZE bytes through a kernel asyncio echo server and back, sending and receiving at once."""
    data = payload(SIZE, 4)
    argv = python_in_ns("kernel_echo_server.py", peer.spec.kernel_ip, str(PORT))
    async with KernelProcess(peer.ns, argv, ready=r"listening"):
        client = peer.stack.socket(AF_INET, SOCK_STREAM)
        try:
            async with asyncio.timeout(TRANSFER_TIMEOUT):
                await client.connect((peer.spec.kernel_ip, PORT))
                start = time.perf_counter()

                async def send() -> None:
                    await client.sendall(data)
                    client.shutdown(SHUT_WR)

                _, (received, got) = await asyncio.gather(send(), hash_to_eof(client))
                elapsed = time.perf_counter() - start
        finally:
            client.close()
    assert received == SIZE
    assert got == sha256(data)
    _report("stack -> asyncio echo -> stack", 2 * SIZE, elapsed)
