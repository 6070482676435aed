"""Stream conformance: the same tests on aiostack streams and on the kernel's loopback.

Each test runs four times: {aiostack, kernel} x {asyncio, uvloop}. The
``aiostack`` backend is two stacks on a MemoryWire (client on 198.18.0.1,
server on 198.18.0.2) using :meth:`Stack.open_connection` and
:meth:`Stack.start_server`; the ``kernel`` backend is the stdlib's own
``asyncio.open_connection``/``asyncio.start_server`` on 127.0.0.1. A test
that passes on the kernel and fails on aiostack is an aiostack bug, not a
test bug. Waits are bounded by timeouts, never sleeps.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

import pytest

from tests.aio.conftest import TLS_NAME, Tls
from tests.helpers import B_IP, TIMEOUT, fast_arp, wired_stacks

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@dataclass
class Backend:
    """Where the server runs and how to reach it."""

    name: str
    host: str
    open: Callable[..., Awaitable[Streams]]
    serve: Callable[..., Awaitable[Any]]  # asyncio.Server or aiostack.aio.Server

    @asynccontextmanager
    async def server(self, handler: Handler, **kwds: Any) -> AsyncIterator[int]:
        """Run ``handler`` per connection on a free port; yield the port."""
        server = await self.serve(handler, self.host, 0, **kwds)
        try:
            yield server.sockets[0].getsockname()[1]
        finally:
            server.close()
            async with asyncio.timeout(TIMEOUT):
                await server.wait_closed()

    async def connect(self, port: int, **kwds: Any) -> Streams:
        async with asyncio.timeout(TIMEOUT):
            return await self.open(self.host, port, **kwds)


@pytest.fixture(params=["aiostack", "kernel"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    if request.param == "kernel":
        yield Backend("kernel", "127.0.0.1", asyncio.open_connection, asyncio.start_server)
        return
    async with wired_stacks(settings=(fast_arp(), fast_arp()), privileged=False) as (a, b):
        yield Backend("aiostack", B_IP, a.open_connection, b.start_server)


def pattern(size: int, seed: int = 0) -> bytes:
    block = hashlib.sha256(seed.to_bytes(4, "big")).digest() * 2048
    return (block * (size // len(block) + 1))[:size]


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    async with asyncio.timeout(TIMEOUT):
        with suppress(ConnectionResetError, BrokenPipeError):
            await writer.wait_closed()


def serving(backend: Backend, handler: Handler, **kwds: Any) -> AbstractAsyncContextManager[int]:
    return backend.server(handler, **kwds)


def sender(payload: bytes) -> Handler:
    """A server that sends ``payload`` and closes."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(payload)
        await writer.drain()
        await close(writer)

    return handler


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        await close(writer)


# -- reading ------------------------------------------------------------------


async def test_read_and_readexactly(backend: Backend) -> None:
    payload = pattern(300_000)
    async with serving(backend, sender(payload)) as port:
        reader, writer = await backend.connect(port)
        async with asyncio.timeout(TIMEOUT):
            head = await reader.readexactly(1000)
            some = await reader.read(10)
            rest = await reader.read()  # to EOF
            assert reader.at_eof()
            assert await reader.read(10) == b""
        assert 1 <= len(some) <= 10
        assert head + some + rest == payload
        await close(writer)


async def test_readexactly_short_at_eof(backend: Backend) -> None:
    async with serving(backend, sender(b"12345")) as port:
        reader, writer = await backend.connect(port)
        async with asyncio.timeout(TIMEOUT):
            with pytest.raises(asyncio.IncompleteReadError) as info:
                await reader.readexactly(10)
        assert info.value.partial == b"12345"
        assert info.value.expected == 10
        await close(writer)


async def test_readuntil_and_readline(backend: Backend) -> None:
    async with serving(backend, sender(b"one\ntwo\r\nthree|tail")) as port:
        reader, writer = await backend.connect(port)
        async with asyncio.timeout(TIMEOUT):
            assert await reader.readline() == b"one\n"
            assert await reader.readuntil(b"\r\n") == b"two\r\n"
            assert await reader.readuntil(b"|") == b"three|"
            with pytest.raises(asyncio.IncompleteReadError) as info:
                await reader.readuntil(b"|")
            assert info.value.partial == b"tail"
            assert await reader.readline() == b""
        await close(writer)


async def test_readline_over_the_limit(backend: Backend) -> None:
    async with serving(backend, sender(b"x" * 5000 + b"\nok\n")) as port:
        reader, writer = await backend.connect(port, limit=1024)
        async with asyncio.timeout(TIMEOUT):
            with pytest.raises(ValueError):
                await reader.readline()
        await close(writer)


# -- writing ------------------------------------------------------------------


async def test_drain_applies_back_pressure_with_a_slow_reader(backend: Backend) -> None:
    """The server reads nothing until told: drain() must block, then finish."""
    go = asyncio.Event()
    digest: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        await go.wait()
        h = hashlib.sha256()
        size = 0
        while data := await reader.read(65536):
            h.update(data)
            size += len(data)
        digest.set_result((size, h.hexdigest()))
        await close(writer)

    # Enough to overflow every buffer on the way: Linux autotunes its send buffer
    # up to megabytes; aiostack's stay at their (small) defaults.
    payload = pattern((8 if backend.name == "kernel" else 1) << 20, seed=3)
    async with serving(backend, slow) as port:
        _reader, writer = await backend.connect(port)
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        assert writer.transport.get_write_buffer_limits()[1] == 65536  # uvloop: low is 16
        writer.write(payload)
        drain = asyncio.ensure_future(writer.drain())
        for _ in range(50):
            await asyncio.sleep(0)
        assert not drain.done()
        assert writer.transport.get_write_buffer_size() > 65536
        go.set()
        async with asyncio.timeout(TIMEOUT * 3):
            await drain
            assert writer.transport.get_write_buffer_size() <= 16384
            writer.write_eof()
            size, hexdigest = await digest
        assert size == len(payload)
        assert hexdigest == hashlib.sha256(payload).hexdigest()
        await close(writer)


async def test_write_eof_half_closes(backend: Backend) -> None:
    async def upper(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read()  # to the client's FIN
        writer.write(data.upper())
        await close(writer)

    async with serving(backend, upper) as port:
        reader, writer = await backend.connect(port)
        assert writer.can_write_eof()
        writer.write(b"hello ")
        writer.writelines([b"half ", b"close"])
        writer.write_eof()
        async with asyncio.timeout(TIMEOUT):
            assert await reader.read() == b"HELLO HALF CLOSE"
        assert reader.at_eof()
        await close(writer)


async def test_echo_many_sizes(backend: Backend) -> None:
    async with serving(backend, echo) as port:
        reader, writer = await backend.connect(port)
        async with asyncio.timeout(TIMEOUT):
            for size in (1, 100, 1460, 1461, 65536, 200_000):
                data = pattern(size, seed=size)
                writer.write(data)
                await writer.drain()
                assert await reader.readexactly(size) == data
        await close(writer)


# -- errors -------------------------------------------------------------------


async def test_reset_by_peer_gives_connection_reset_error(backend: Backend) -> None:
    async def resetter(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(4)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    async with serving(backend, resetter) as port:
        reader, writer = await backend.connect(port)
        writer.write(b"ping")
        async with asyncio.timeout(TIMEOUT):
            with pytest.raises(ConnectionResetError):
                await reader.read(100)
            await close(writer)


async def test_connection_refused(backend: Backend) -> None:
    async with serving(backend, echo) as port:
        pass  # the port is free again once the server has closed
    with pytest.raises(ConnectionRefusedError):
        await backend.connect(port)


# -- TLS ------------------------------------------------------------------------


async def test_tls_echo(backend: Backend, tls: Tls) -> None:
    async with serving(backend, echo, ssl=tls.server) as port:
        reader, writer = await backend.connect(port, ssl=tls.client, server_hostname=TLS_NAME)
        ssl_object = writer.get_extra_info("ssl_object")
        assert isinstance(ssl_object, ssl.SSLObject)
        assert writer.get_extra_info("peercert")["subjectAltName"] == (("DNS", TLS_NAME),)
        assert writer.get_extra_info("peername")[1] == port
        async with asyncio.timeout(TIMEOUT):
            for size in (1, 16384, 16385, 300_000):
                data = pattern(size, seed=size)
                writer.write(data)
                await writer.drain()
                assert await reader.readexactly(size) == data
        await close(writer)


async def test_tls_untrusted_certificate_fails_the_handshake(backend: Backend, tls: Tls) -> None:
    loop = asyncio.get_running_loop()
    # asyncio's server reports the failed handshake in debug mode; that is expected here.
    loop.set_exception_handler(lambda loop, context: None)
    async with serving(backend, echo, ssl=tls.server) as port:
        with pytest.raises(ssl.SSLCertVerificationError):
            await backend.connect(port, ssl=tls.untrusting, server_hostname=TLS_NAME)


async def test_tls_wrong_name_fails_the_handshake(backend: Backend, tls: Tls) -> None:
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda loop, context: None)
    async with serving(backend, echo, ssl=tls.server) as port:
        with pytest.raises(ssl.SSLCertVerificationError):
            await backend.connect(port, ssl=tls.client, server_hostname="other.test")


async def test_tls_argument_checks(backend: Backend, tls: Tls) -> None:
    with pytest.raises(ValueError, match="server_hostname is only meaningful with ssl"):
        await backend.open(backend.host, 1, server_hostname=TLS_NAME)
    with pytest.raises(ValueError, match="ssl_handshake_timeout is only meaningful with ssl"):
        await backend.open(backend.host, 1, ssl_handshake_timeout=1.0)
