"""The Linux kernel as the client of aiostack's built-in services (aiostack.services).

Each test gets a fresh namespace (kernel 198.18.0.1, stack 198.18.0.2, TAP
with virtio-net offloads), removed afterwards, and a stack running the
web server (port 80), echo (7) and discard (9). The clients are the
kernel's own: curl, a standard-library asyncio HTTP client run as a
separate process in the namespace (kernel_http_client.py), and kernel
sockets on worker threads. Every body is verified byte for byte or by
SHA-256.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from aiostack import services
from aiostack.services.http import pattern
from aiostack.testing.netns import KERNEL_IP, STACK_IP, netns, require_tap, unique_name

from .harness import (
    TIMEOUT,
    Peer,
    kernel_read_to_eof,
    kernel_send_then_shut,
    kernel_tcp,
    payload,
    python_in_ns,
    sha256,
    stack_on_tap,
)

pytestmark = pytest.mark.tap

#: Size of the large download, the uploads and the echo.
LARGE = 16 << 20
ECHO = 20 << 20
#: Bound for one bulk transfer: ~1 MB/s, several times slower than a loaded 2-core machine.
BULK_TIMEOUT = 120.0
#: Bound for the 1,000 and 200 connection runs: ~7 s and ~1 s on an idle machine, 45 s
#: seen under a load average of 8 with asyncio debug mode.
LOAD_TIMEOUT = 300.0


@dataclass
class Served:
    peer: Peer
    http: services.Service
    echo: services.Service
    discard: services.Service

    @property
    def url(self) -> str:
        return f"http://{self.peer.spec.stack_ip}"


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    async with stack_on_tap() as peer:
        stack = peer.stack
        async with (
            await services.http.serve(stack, 80) as http,
            await services.echo.serve(stack, 7, udp=False) as echo,
            await services.discard.serve(stack, 9, udp=False) as discard,
        ):
            yield Served(peer, http, echo, discard)


async def curl(served: Served, *args: str, timeout: float = TIMEOUT) -> bytes:
    result = await served.peer.ns.run_async(
        "curl", "-sS", "--fail", "--max-time", str(int(timeout)), *args, timeout=timeout + 10
    )
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


async def test_curl_gets_the_page(served: Served) -> None:
    out = await curl(served, "-i", f"{served.url}/")
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    assert body == services.http.PAGE


async def test_curl_downloads_bytes_verified_by_hash(served: Served) -> None:
    body = await curl(served, f"{served.url}/bytes/{LARGE}", timeout=BULK_TIMEOUT)
    assert len(body) == LARGE
    assert sha256(body) == sha256(pattern(0, LARGE))


async def test_curl_makes_100_keep_alive_requests_on_one_connection(served: Served) -> None:
    """curl fetches 100 URLs; ``%{num_connects}`` shows it connected once and reused it."""
    sizes = [i * 37 for i in range(100)]
    args: list[str] = []
    for size in sizes:
        args += [f"{served.url}/bytes/{size}", "-w", "\n%{num_connects} %{http_code}\n"]
    out = await curl(served, *args)
    connects = 0
    rest = out
    for size in sizes:
        body, rest = rest[:size], rest[size:]
        assert body == pattern(0, size)
        line, _, rest = rest[1:].partition(b"\n")
        count, code = line.split()
        assert code == b"200"
        connects += int(count)
    assert rest == b""
    assert connects == 1
    assert served.peer.stack.statistics()["mib"]["TcpPassiveOpens"] == 1


async def _kernel_http_client(
    served: Served, mode: str, count: int, size: int
) -> dict[str, object]:
    argv = python_in_ns(
        "kernel_http_client.py", served.peer.spec.stack_ip, "80", mode, str(count), str(size)
    )
    result = await served.peer.ns.run_async(*argv, timeout=LOAD_TIMEOUT)
    assert result.returncode == 0, result.stderr.decode()
    summary: dict[str, object] = json.loads(result.stdout)
    return summary


async def test_1000_sequential_connections(served: Served) -> None:
    """1,000 connections one after another, each a fetch with ``Connection: close``.

    The stack closes first each time, so its TIME_WAIT table fills with
    1,000 entries while the kernel keeps choosing ephemeral ports.
    """
    summary = await _kernel_http_client(served, "sequential", 1000, 1000)
    assert summary == {"ok": 1000, "ports": summary["ports"], "errors": []}
    mib = served.peer.stack.statistics()["mib"]
    assert mib["TcpPassiveOpens"] == 1000
    assert mib["TcpCurrEstab"] == 0


async def test_200_concurrent_connections(served: Served) -> None:
    """200 connections established at the same time, then a 10 KB fetch on each at once."""
    summary = await _kernel_http_client(served, "concurrent", 200, 10_000)
    assert summary == {"ok": 200, "ports": 200, "errors": []}
    assert served.peer.stack.statistics()["mib"]["TcpPassiveOpens"] == 200


async def test_curl_uploads_to_upload(served: Served, tmp_path: Path) -> None:
    data = payload(LARGE, 30)
    (tmp_path / "up.bin").write_bytes(data)
    out = await curl(
        served,
        "--data-binary",
        f"@{tmp_path / 'up.bin'}",
        "-H",
        "Content-Type: application/octet-stream",
        f"{served.url}/upload",
        timeout=BULK_TIMEOUT,
    )
    assert out == f"{LARGE}\n".encode()


def _bytes_acked(sock: socket.socket) -> int:
    """``tcpi_bytes_acked``: struct tcp_info has 8 bytes, 24 u32s, two u64 rates, then it."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    return int(struct.unpack_from("Q", info, 8 + 24 * 4 + 16)[0])


async def test_kernel_uploads_to_discard(served: Served) -> None:
    """16 MB to discard: the stack acknowledges every byte and closes when the kernel does."""
    data = payload(LARGE, 31)
    kernel = kernel_tcp(served.peer.ns, BULK_TIMEOUT)

    def upload() -> tuple[bytes, int]:
        with kernel:
            kernel.connect((served.peer.spec.stack_ip, 9))
            kernel_send_then_shut(kernel, data)
            rest = kernel_read_to_eof(kernel)  # discard closes after our FIN
            return rest, _bytes_acked(kernel)

    rest, acked = await asyncio.to_thread(upload)
    assert rest == b""
    assert acked >= LARGE  # every byte acknowledged (plus the FIN's sequence number)


async def test_kernel_echo_20_mb_verified(served: Served) -> None:
    data = payload(ECHO, 32)
    kernel = kernel_tcp(served.peer.ns, BULK_TIMEOUT)

    def exchange() -> bytes:
        with kernel:
            kernel.connect((served.peer.spec.stack_ip, 7))
            sender = threading.Thread(target=kernel_send_then_shut, args=(kernel, data))
            sender.start()
            got = kernel_read_to_eof(kernel)
            sender.join(BULK_TIMEOUT)
            assert not sender.is_alive()
            return got

    got = await asyncio.to_thread(exchange)
    assert len(got) == ECHO
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()


async def test_curl_against_aiostack_up(tmp_path: Path) -> None:
    """``aiostack up`` as its own process: it creates a TAP in our namespace and serves on it.

    curl fetches the page and a verified 1 MB body; echo answers nc; SIGTERM
    stops it with status 0 and it removes the TAP it made (the namespace is
    ours and stays until the test deletes it).
    """
    require_tap()
    async with netns() as ns:
        tap = unique_name("tap")
        argv = [sys.executable, "-m", "aiostack", "up", "--tap", tap, "--netns", ns.name]
        argv += ["--addr", f"{STACK_IP}/24", "--peer-addr", f"{KERNEL_IP}/24"]
        argv += ["--serve", "http", "--serve", "echo", "--control", str(tmp_path / "up.sock")]
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            assert proc.stdout is not None
            async with asyncio.timeout(TIMEOUT):
                ready = await proc.stdout.readline()
            assert ready.startswith(b"aiostack up: ready "), ready
            assert b"http:80" in ready and b"echo:7" in ready, ready
            page = await ns.run_async("curl", "-sS", "--fail", f"http://{STACK_IP}/")
            assert page.returncode == 0, page.stderr.decode()
            assert page.stdout == services.http.PAGE
            body = await ns.run_async("curl", "-sS", "--fail", f"http://{STACK_IP}/bytes/1048576")
            assert body.stdout == pattern(0, 1 << 20)
            echoed = await ns.run_async("nc", "-N", STACK_IP, "7", input=b"hello, echo\n")
            assert echoed.stdout == b"hello, echo\n"
            proc.terminate()  # by PID: the process this test started
            async with asyncio.timeout(TIMEOUT):
                _, stderr = await proc.communicate()
            assert proc.returncode == 0, stderr.decode()
            links = await ns.run_async("ip", "-o", "link", "show")
            assert tap not in links.stdout.decode()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
