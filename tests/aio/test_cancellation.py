"""Cancelling asyncio calls over aiostack leaves nothing half-done behind.

A cancelled connect or TLS handshake must release its socket (the stack's
descriptor table and the TCP layer's owners are empty afterwards), and a
cancelled read or drain must leave the connection as usable as the stdlib's
streams leave a kernel connection.
"""

from __future__ import annotations

import asyncio
import ssl

import pytest

from aiostack.stack.stack import Stack
from tests.aio.conftest import TLS_NAME, Net, Tls
from tests.helpers import B_IP, TIMEOUT, eventually

PORT = 8080


def clean(stack: Stack, listeners: int = 0) -> bool:
    return len(stack.sockets) == listeners and not stack.tcp.owners


class Silent(asyncio.Protocol):
    """Accepts, reads and never answers: a TLS handshake against it never ends."""

    def __init__(self, got: asyncio.Event) -> None:
        self.got = got

    def data_received(self, data: bytes) -> None:
        self.got.set()


async def test_cancelled_connect_releases_the_socket(wired: Net) -> None:
    before = set(asyncio.all_tasks())
    server = await wired.b.start_server(lambda r, w: None, "", PORT)
    task = asyncio.ensure_future(wired.a.open_connection(B_IP, PORT))
    await asyncio.sleep(0)  # the SYN is out, the SYN-ACK not yet in
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert clean(wired.a)
    server.close()
    async with asyncio.timeout(TIMEOUT):
        await server.wait_closed()
    assert set(asyncio.all_tasks()) == before


async def test_cancelled_tls_handshake_releases_the_socket(wired: Net, tls: Tls) -> None:
    got = asyncio.Event()
    server = await wired.b.create_server(lambda: Silent(got), "", PORT)
    task = asyncio.ensure_future(
        wired.a.open_connection(B_IP, PORT, ssl=tls.client, server_hostname=TLS_NAME)
    )
    async with asyncio.timeout(TIMEOUT):
        await got.wait()  # the ClientHello has arrived
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await eventually(lambda: clean(wired.a), what="the client socket to go")
    server.close()
    server.close_clients()
    async with asyncio.timeout(TIMEOUT):
        await server.wait_closed()
    await eventually(lambda: clean(wired.b), what="the server socket to go")


async def test_tls_handshake_timeout(wired: Net, tls: Tls) -> None:
    got = asyncio.Event()
    server = await wired.b.create_server(lambda: Silent(got), "", PORT)
    async with asyncio.timeout(TIMEOUT):
        with pytest.raises(ConnectionAbortedError, match="SSL handshake is taking longer"):
            await wired.a.open_connection(
                B_IP, PORT, ssl=tls.client, server_hostname=TLS_NAME, ssl_handshake_timeout=0.05
            )
    await eventually(lambda: clean(wired.a), what="the client socket to go")
    server.close()
    server.close_clients()
    async with asyncio.timeout(TIMEOUT):
        await server.wait_closed()


async def test_server_handshake_failure_closes_only_that_connection(wired: Net, tls: Tls) -> None:
    async def hello(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hi")
        await writer.drain()
        writer.close()

    server = await wired.b.start_server(hello, "", PORT, ssl=tls.server)
    with pytest.raises(ssl.SSLCertVerificationError):
        await wired.a.open_connection(B_IP, PORT, ssl=tls.untrusting, server_hostname=TLS_NAME)
    # A plain-text client is no better: the server drops it and keeps serving.
    reader, writer = await wired.a.open_connection(B_IP, PORT)
    writer.write(b"GET / HTTP/1.0\r\n\r\n")
    async with asyncio.timeout(TIMEOUT):
        assert await reader.read() == b""  # SSLProtocol ends it without an alert
    writer.close()
    reader, writer = await wired.a.open_connection(
        B_IP, PORT, ssl=tls.client, server_hostname=TLS_NAME
    )
    async with asyncio.timeout(TIMEOUT):
        assert await reader.read() == b"hi"
    writer.close()
    await writer.wait_closed()
    server.close()
    async with asyncio.timeout(TIMEOUT):
        await server.wait_closed()
    await eventually(lambda: clean(wired.b) and clean(wired.a), what="every socket to go")


async def test_cancelled_read_keeps_the_connection(wired: Net) -> None:
    release = asyncio.Event()

    async def late(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()
        writer.write(b"late")
        await writer.drain()
        writer.close()

    server = await wired.b.start_server(late, "", PORT)
    reader, writer = await wired.a.open_connection(B_IP, PORT)
    read = asyncio.ensure_future(reader.read(10))
    await asyncio.sleep(0)
    read.cancel()
    with pytest.raises(asyncio.CancelledError):
        await read
    release.set()
    async with asyncio.timeout(TIMEOUT):
        assert await reader.read() == b"late"
    writer.close()
    await writer.wait_closed()
    server.close()
    async with asyncio.timeout(TIMEOUT):
        await server.wait_closed()


async def test_cancelled_drain_keeps_the_data_flowing(wired: Net) -> None:
    release = asyncio.Event()
    received: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()
        received.set_result(len(await reader.read()))
        writer.close()

    server = await wired.b.start_server(slow, "", PORT)
    _reader, writer = await wired.a.open_connection(B_IP, PORT)
    writer.write(b"z" * 1_000_000)
    drain = asyncio.ensure_future(writer.drain())
    await asyncio.sleep(0)
    assert not drain.done()
    drain.cancel()
    with pytest.raises(asyncio.CancelledError):
        await drain
    release.set()
    async with asyncio.timeout(TIMEOUT):
        await writer.drain()
        writer.write_eof()
        assert await received == 1_000_000
    writer.close()
    await writer.wait_closed()
    server.close()
    async with asyncio.timeout(TIMEOUT):
        await server.wait_closed()
