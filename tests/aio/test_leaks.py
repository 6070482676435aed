"""Thousands of connections opened and closed leave nothing behind; idle ones cost no task.

"Nothing behind" is checked where it could hide: the loop's tasks
(``asyncio.all_tasks``), the transports themselves (weak references that
must die once the garbage collector has run), the stacks' descriptor tables
and the TCP layer's socket owners.
"""

from __future__ import annotations

import asyncio
import gc
import weakref

from aiostack.aio import TcpTransport
from aiostack.stack.stack import Stack
from tests.aio.conftest import TLS_NAME, Net, Tls
from tests.helpers import B_IP, TIMEOUT, eventually

PORT = 8080
CONCURRENCY = 25


class Tracked(asyncio.Protocol):
    """Remembers every transport it is given, weakly."""

    seen: weakref.WeakSet[asyncio.BaseTransport]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.seen.add(transport)


def tracking(seen: weakref.WeakSet[asyncio.BaseTransport]) -> type[Tracked]:
    return type("T", (Tracked,), {"seen": seen})


class EchoClose(asyncio.Protocol):
    """Echoes, and closes its side at the peer's EOF (eof_received returns None)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


def only_listeners(stack: Stack, listeners: int) -> bool:
    return len(stack.sockets) == listeners and not stack.tcp.owners


async def settle(net: Net, server_listeners: int) -> None:
    await eventually(
        lambda: only_listeners(net.a, 0) and only_listeners(net.b, server_listeners),
        what="sockets to go",
    )


async def test_thousands_of_connections_leave_nothing(wired: Net) -> None:
    baseline = set(asyncio.all_tasks())
    seen: weakref.WeakSet[asyncio.BaseTransport] = weakref.WeakSet()
    server = await wired.b.create_server(tracking(seen), "", PORT)
    created = 0

    async def one(i: int) -> None:
        nonlocal created
        _reader, writer = await wired.a.open_connection(B_IP, PORT)
        seen.add(writer.transport)
        created += 1
        if i % 2:
            writer.write(b"x" * (i % 3000))
        if i % 5 == 0:
            writer.transport.abort()
        else:
            writer.close()
        await writer.wait_closed()

    for start in range(0, 2000, CONCURRENCY):
        async with asyncio.timeout(TIMEOUT):  # per batch: a loaded machine is slow, not stuck
            await asyncio.gather(*(one(i) for i in range(start, start + CONCURRENCY)))
    # The server's side goes when the peer's FIN or RST is read.
    await eventually(
        lambda: all(t.is_closing() for t in seen if isinstance(t, TcpTransport)),
        what="server transports to close",
    )
    server.close()
    await server.wait_closed()
    await settle(wired, 0)
    assert created == 2000
    assert set(asyncio.all_tasks()) == baseline
    gc.collect()
    assert len(seen) == 0, list(seen)[:3]


async def test_tls_connections_leave_nothing(wired: Net, tls: Tls) -> None:
    baseline = set(asyncio.all_tasks())
    seen: weakref.WeakSet[asyncio.BaseTransport] = weakref.WeakSet()
    server = await wired.b.create_server(EchoClose, "", PORT, ssl=tls.server)

    async def one() -> None:
        reader, writer = await wired.a.open_connection(
            B_IP, PORT, ssl=tls.client, server_hostname=TLS_NAME
        )
        seen.add(writer.transport)
        writer.write(b"hello")
        assert await reader.readexactly(5) == b"hello"
        writer.close()
        await writer.wait_closed()

    for _ in range(10):
        async with asyncio.timeout(TIMEOUT):
            await asyncio.gather(*(one() for _ in range(10)))
    server.close()
    async with asyncio.timeout(TIMEOUT):
        await server.wait_closed()
    await settle(wired, 0)
    assert set(asyncio.all_tasks()) == baseline
    gc.collect()
    assert len(seen) == 0


async def test_idle_connections_cost_no_task(wired: Net) -> None:
    baseline = len(asyncio.all_tasks())
    server = await wired.b.create_server(EchoClose, "", PORT, backlog=500)
    with_server = len(asyncio.all_tasks())
    assert with_server == baseline  # not even one per listening socket
    transports = []
    for _ in range(500):
        async with asyncio.timeout(TIMEOUT):
            transport, _ = await wired.a.create_connection(asyncio.Protocol, B_IP, PORT)
        transports.append(transport)
    assert len(asyncio.all_tasks()) == with_server
    # Every one of them still works, without any task having run for it.
    transports[-1].write(b"ping")
    for transport in transports:
        transport.close()
    server.close()
    async with asyncio.timeout(TIMEOUT * 3):  # 500 FINs each way
        await server.wait_closed()
    await settle(wired, 0)
