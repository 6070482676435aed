"""The built-in web server: routes, keep-alive, uploads, and hostile requests.

A raw client on stack A talks to the server on stack B (MemoryWire), so
every byte of each request is under the test's control. Responses are
parsed here with a few lines of independent code (not the server's
parser).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

import pytest

from aiostack.aio import open_connection
from aiostack.services import http
from aiostack.services.http import HttpConfig
from aiostack.stack.stack import Stack
from aiostack.testing.virtual_time import run_virtual
from tests.helpers import B_IP, TIMEOUT, eventually, fast_arp, wired_stacks

PORT = 8080


@pytest.fixture
async def server() -> AsyncIterator[tuple[Stack, http.Service]]:
    async with wired_stacks(settings=(fast_arp(), fast_arp()), privileged=False) as (a, b):
        # Lingering ends at the client's EOF; a long bound keeps a loaded machine from
        # turning it into a reset.
        config = HttpConfig(max_upload=1_000_000, idle_timeout=TIMEOUT, linger=TIMEOUT)
        async with await http.serve(b, PORT, config=config) as service:
            yield a, service


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


async def read_response(reader: asyncio.StreamReader, *, head: bool = False) -> Response:
    status_line = await reader.readuntil(b"\r\n")
    version, status, _reason = status_line.decode().split(" ", 2)
    assert version == "HTTP/1.1"
    headers: dict[str, str] = {}
    while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
        name, _, value = line.decode().partition(":")
        headers[name.lower()] = value.strip()
    length = int(headers["content-length"])
    body = b"" if head or int(status) == 100 else await reader.readexactly(length)
    return Response(int(status), headers, body)


async def connect(a: Stack) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await open_connection(a, B_IP, PORT)


async def exchange(a: Stack, request: bytes, *, head: bool = False) -> tuple[Response, bytes]:
    """Send ``request`` on a new connection; return the response and what followed it."""
    async with asyncio.timeout(TIMEOUT):
        reader, writer = await connect(a)
        writer.write(request)
        response = await read_response(reader, head=head)
        rest = await reader.read() if response.headers.get("connection") == "close" else b""
        writer.close()
        return response, rest


async def test_page_and_keep_alive_with_pipelining(server: tuple[Stack, http.Service]) -> None:
    a, _ = server
    async with asyncio.timeout(TIMEOUT):
        reader, writer = await connect(a)
        # Three pipelined requests on one connection, the last one closing it.
        writer.write(
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
            b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /bytes/10 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        page = await read_response(reader)
        head = await read_response(reader, head=True)
        small = await read_response(reader)
        assert await reader.read() == b""  # closed after the third
        writer.close()
    assert page.status == 200 and page.body == http.PAGE
    assert page.headers["content-type"].startswith("text/html")
    assert "connection" not in page.headers
    assert head.status == 200 and head.headers["content-length"] == str(len(http.PAGE))
    assert small.body == bytes(range(10)) and small.headers["connection"] == "close"


async def test_http10_closes_unless_asked_to_keep_alive(server: tuple[Stack, http.Service]) -> None:
    a, _ = server
    response, _rest = await exchange(a, b"GET / HTTP/1.0\r\n\r\n")
    assert response.status == 200 and response.headers["connection"] == "close"
    async with asyncio.timeout(TIMEOUT):
        reader, writer = await connect(a)
        writer.write(b"GET /bytes/3 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        kept = await read_response(reader)
        assert kept.headers["connection"] == "keep-alive"
        writer.write(b"GET /bytes/2 HTTP/1.0\r\n\r\n")
        assert (await read_response(reader)).body == b"\x00\x01"
        assert await reader.read() == b""
        writer.close()


async def test_bytes_download_is_the_pattern(server: tuple[Stack, http.Service]) -> None:
    a, _ = server
    size = 1_000_003
    async with asyncio.timeout(TIMEOUT):
        reader, writer = await connect(a)
        writer.write(b"GET /bytes/%d HTTP/1.1\r\nHost: x\r\n\r\n" % size)
        response = await read_response(reader)
        writer.close()
    assert response.headers["content-type"] == "application/octet-stream"
    want = hashlib.sha256(http.pattern(0, size)).hexdigest()
    assert hashlib.sha256(response.body).hexdigest() == want
    assert response.body[250:253] == b"\xfa\x00\x01"
    assert http.pattern(500, 4) == bytes([249, 250, 0, 1])


async def test_upload_content_length_and_chunked(server: tuple[Stack, http.Service]) -> None:
    a, _ = server
    async with asyncio.timeout(TIMEOUT):
        reader, writer = await connect(a)
        body = b"z" * 300_000
        writer.write(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
        writer.write(body)
        counted = await read_response(reader)
        # Chunked, with an extension, a trailer, and upper-case hex.
        writer.write(
            b"PUT /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"A;ext=1\r\n0123456789\r\n1\r\n!\r\n0\r\nX-Trailer: yes\r\n\r\n"
        )
        chunked = await read_response(reader)
        # Expect: 100-continue gets the interim response first.
        writer.write(
            b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        interim = await reader.readuntil(b"\r\n\r\n")
        writer.write(b"hello")
        continued = await read_response(reader)
        writer.close()
    assert counted.status == 200 and counted.body == b"300000\n"
    assert chunked.status == 200 and chunked.body == b"11\n"
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert continued.body == b"5\n"


async def test_errors_404_405_413(server: tuple[Stack, http.Service]) -> None:
    a, _ = server
    missing, _ = await exchange(a, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
    assert missing.status == 404 and "connection" not in missing.headers  # kept alive
    wrong, _ = await exchange(a, b"DELETE / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert wrong.status == 405 and wrong.headers["allow"] == "GET, HEAD"
    upload_get, _ = await exchange(a, b"GET /upload HTTP/1.1\r\nHost: x\r\n\r\n")
    assert upload_get.status == 405 and upload_get.headers["allow"] == "POST, PUT"
    big, rest = await exchange(
        a, b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000001\r\n\r\n" + b"x" * 1000
    )
    assert big.status == 413 and big.headers["connection"] == "close" and rest == b""
    chunked_big, _ = await exchange(
        a,
        b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"F4241\r\n" + b"x" * 1000,
    )
    assert chunked_big.status == 413


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /\r\n\r\n", 400),
        (b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),  # space before the colon
        (b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\rY\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        (
            b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
            400,
        ),
        (b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (b"POST /upload HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n", 400),
        (b"POST /upload HTTP/1.1\r\nHost: x\r\nExpect: magic\r\nContent-Length: 1\r\n\r\n", 417),
        (b"GET /bytes/abc HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET /bytes/99999999999999999999 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET * HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nBad\x01Name: y\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n", 400),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"v" * 9000 + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X: y\r\n" * 101 + b"\r\n", 431),
        (b"\r\n" * 20 + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ],
)
async def test_bad_requests_get_an_error_and_close(
    server: tuple[Stack, http.Service], request_bytes: bytes, status: int
) -> None:
    a, service = server
    response, rest = await exchange(a, request_bytes)
    assert response.status == status, response.body
    assert response.headers["connection"] == "close"
    assert rest == b""
    assert service.tcp is not None and service.tcp.is_serving()


async def test_tolerated_forms(server: tuple[Stack, http.Service]) -> None:
    a, _ = server
    # Bare LF line ends, leading empty lines, absolute-form target, a query string.
    response, _ = await exchange(a, b"\r\n\r\nGET http://x/bytes/4?q=1 HTTP/1.1\nHost: x\n\n")
    assert response.status == 200 and response.body == b"\x00\x01\x02\x03"
    # A small body on a GET is read and dropped; the connection stays usable.
    async with asyncio.timeout(TIMEOUT):
        reader, writer = await connect(a)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody")
        writer.write(b"GET /bytes/1 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await read_response(reader)).status == 200
        assert (await read_response(reader)).body == b"\x00"
        writer.close()


async def test_client_vanishing_mid_request_is_harmless(
    server: tuple[Stack, http.Service],
) -> None:
    a, service = server
    for partial in (
        b"GET / HT",
        b"GET / HTTP/1.1\r\nHost: x\r\n",
        b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc",
        b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
    ):
        async with asyncio.timeout(TIMEOUT):
            reader, writer = await connect(a)
            writer.write(partial)
            writer.write_eof()
            assert await reader.read() == b""
            writer.close()
    response, _ = await exchange(a, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert response.status == 200
    await eventually(lambda: service.connections == 0, what="every connection to end")


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="max_upload"):
        HttpConfig(max_upload=-1)
    with pytest.raises(ValueError, match="idle_timeout"):
        HttpConfig(idle_timeout=0)
    with pytest.raises(ValueError, match="linger"):
        HttpConfig(linger=-1)


def test_idle_keep_alive_connection_is_closed_after_idle_timeout() -> None:
    """On virtual time: the server closes a connection idle for ``idle_timeout`` seconds."""

    async def main() -> tuple[float, bytes]:
        async with wired_stacks(settings=(fast_arp(), fast_arp()), privileged=False) as (a, b):
            config = HttpConfig(idle_timeout=30.0)
            async with await http.serve(b, PORT, config=config):
                loop = asyncio.get_running_loop()
                reader, writer = await open_connection(a, B_IP, PORT)
                writer.write(b"GET /bytes/1 HTTP/1.1\r\nHost: x\r\n\r\n")
                first = await read_response(reader)
                idle_since = loop.time()
                rest = await reader.read()  # EOF when the server gives up on us
                elapsed = loop.time() - idle_since
                writer.close()
                return elapsed, first.body + rest

    elapsed, data = run_virtual(main())
    assert data == b"\x00"
    assert 30.0 <= elapsed < 30.5


async def test_large_unwanted_body_gets_the_answer_then_a_clean_close(
    server: tuple[Stack, http.Service],
) -> None:
    """The server answers without reading a 1 MB body, then lingers: FIN, not a reset."""
    a, _ = server
    async with asyncio.timeout(TIMEOUT):
        reader, writer = await connect(a)
        writer.write(b"POST /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")

        async def send_body() -> None:
            for _ in range(20):
                writer.write(b"y" * 50_000)
                await writer.drain()
            writer.write_eof()

        sender = asyncio.create_task(send_body())
        response = await read_response(reader)
        assert await reader.read() == b""  # the server's FIN, not a reset
        await sender
        writer.close()
    assert response.status == 404 and response.headers["connection"] == "close"
