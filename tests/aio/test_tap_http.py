"""A plain-asyncio HTTP/1.1 server on aiostack, fetched by curl from the kernel side of a TAP.

The handler below is ordinary ``asyncio.start_server`` code (StreamReader,
StreamWriter, drain, keep-alive); only the ``start_server`` import and the
stack argument say it runs on aiostack. The test makes its own namespace
and TAP (kernel 198.18.0.1, stack 198.18.0.2) and removes them afterwards.
"""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from aiostack.aio import start_server
from aiostack.stack.stack import Stack
from aiostack.testing.netns import require_tap, tap_in_netns

pytestmark = pytest.mark.tap

TIMEOUT = 60.0
PORT = 8080
BIG = hashlib.sha256(b"aiostack").hexdigest().encode() * 8192  # 512 KiB


def body_for(path: str) -> bytes:
    return BIG if path == "/big" else f"hello from aiostack, you asked for {path}\n".encode()


async def http_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A tiny HTTP/1.1 server: GET only, keep-alive until the client closes."""
    try:
        while request_line := await reader.readline():
            method, path, _version = request_line.decode("latin-1").split()
            headers: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            body = body_for(path) if method == "GET" else b"method not allowed\n"
            status = "200 OK" if method == "GET" else "405 Method Not Allowed"
            close = headers.get("connection", "").lower() == "close"
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\n"
                f"Content-Length: {len(body)}\r\n"
                f"Connection: {'close' if close else 'keep-alive'}\r\n\r\n".encode()
                + body
            )
            await writer.drain()
            if close:
                break
    finally:
        writer.close()
        await writer.wait_closed()


async def test_curl_fetches_from_a_plain_asyncio_http_server() -> None:
    require_tap()
    async with tap_in_netns() as spec:
        address = f"{spec.stack_ip}/{spec.prefixlen}"
        async with (
            Stack(spec.device(), address=address, mac=spec.stack_mac, seed=5) as stack,
            await start_server(stack, http_handler, spec.stack_ip, PORT) as server,
        ):
            base = f"http://{spec.stack_ip}:{PORT}"
            result = await spec.namespace.run_async("curl", "-s", f"{base}/", timeout=TIMEOUT)
            assert result.returncode == 0, result.stderr
            assert result.stdout == body_for("/")

            # Two requests on one kept-alive connection, one of them 512 KiB.
            result = await spec.namespace.run_async(
                "curl", "-s", f"{base}/first", f"{base}/big", timeout=TIMEOUT
            )
            assert result.returncode == 0, result.stderr
            assert result.stdout == body_for("/first") + BIG
            assert stack.statistics()["mib"]["TcpPassiveOpens"] == 2

            server.close()
            async with asyncio.timeout(TIMEOUT):
                await server.wait_closed()
