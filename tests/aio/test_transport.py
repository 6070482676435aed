"""``TcpTransport`` against asyncio's Transport/Protocol contract, over two stacks on a MemoryWire.

Protocols here record every callback, so each test can check the order
(``connection_made -> data_received* -> eof_received? -> connection_lost``,
the last exactly once) as well as the payload. Waits are bounded by
timeouts; where a test must show that something does *not* happen, it first
waits until the bytes have provably reached the receiving stack (SIOCINQ),
then lets the loop run.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from aiostack.aio import Server, TcpTransport, TransportSocket, create_connection, create_server
from aiostack.socket import SIOCINQ, SOCK_STREAM, Socket
from aiostack.stack.stack import Stack
from tests.helpers import A_IP, B_IP, TIMEOUT, eventually, fast_arp, wired_stacks

PORT = 8080


@dataclass
class Net:
    a: Stack
    b: Stack


@pytest.fixture
async def net() -> AsyncIterator[Net]:
    async with wired_stacks(settings=(fast_arp(), fast_arp()), privileged=False) as (a, b):
        yield Net(a, b)


class Recorder(asyncio.Protocol):
    """Records callbacks as letters (M, D, E, L, P, R) and keeps the bytes."""

    def __init__(self, *, keep_open: bool = True) -> None:
        self.keep_open = keep_open
        self.events: list[str] = []
        self.data = bytearray()
        self.transport: TcpTransport | None = None
        self.exc: Exception | None = None
        loop = asyncio.get_running_loop()
        self.made: asyncio.Future[None] = loop.create_future()
        self.eof: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()
        self.resumed = asyncio.Event()
        self.buffer_at_pause: list[int] = []
        self.buffer_at_resume: list[int] = []
        self.arrived = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, TcpTransport)
        self.transport = transport
        self.events.append("M")
        self.made.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.events.append("D")
        self.data += data
        self.arrived.set()

    def eof_received(self) -> bool:
        self.events.append("E")
        self.eof.set_result(None)
        return self.keep_open

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append("L")
        self.exc = exc
        self.lost.set_result(None)

    def pause_writing(self) -> None:
        assert self.transport is not None
        self.events.append("P")
        self.buffer_at_pause.append(self.transport.get_write_buffer_size())

    def resume_writing(self) -> None:
        assert self.transport is not None
        self.events.append("R")
        self.buffer_at_resume.append(self.transport.get_write_buffer_size())
        self.resumed.set()

    def order(self) -> str:
        """The read-side callbacks only (flow-control letters removed)."""
        return "".join(e for e in self.events if e in "MDEL")

    def assert_grammar(self) -> None:
        assert re.fullmatch("MD*E?L", self.order()), self.events


class Served:
    """A server whose protocols are Recorders; ``accepted()`` gives the next one."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.queue: asyncio.Queue[Recorder] = asyncio.Queue()

    def __call__(self) -> Recorder:
        protocol = Recorder(**self.kwargs)
        self.queue.put_nowait(protocol)
        return protocol

    async def accepted(self) -> Recorder:
        async with asyncio.timeout(TIMEOUT):
            protocol = await self.queue.get()
            await protocol.made
        return protocol


@pytest.fixture
async def served(net: Net) -> AsyncIterator[Served]:
    factory = Served()
    server = await create_server(net.b, factory, B_IP, PORT)
    yield factory
    await shut(server)


async def shut(server: Server) -> None:
    server.close()
    server.close_clients()
    async with asyncio.timeout(TIMEOUT):
        await server.wait_closed()


async def dial(net: Net, **kwargs: Any) -> tuple[TcpTransport, Recorder]:
    async with asyncio.timeout(TIMEOUT):
        transport, protocol = await create_connection(net.a, lambda: Recorder(**kwargs), B_IP, PORT)
    assert isinstance(transport, TcpTransport)  # no ssl: the raw transport itself
    return transport, protocol


async def wait(fut: asyncio.Future[None]) -> None:
    async with asyncio.timeout(TIMEOUT):
        await asyncio.shield(fut)  # a timeout must not cancel the recorder's future


# -- call order -----------------------------------------------------------------


async def test_call_order_and_extra_info(net: Net, served: Served) -> None:
    transport, client = await dial(net)
    assert client.order() == "M"  # create_connection returns after connection_made
    server = await served.accepted()
    assert transport.get_extra_info("peername") == (B_IP, PORT)
    assert transport.get_extra_info("sockname")[0] == A_IP
    sock = transport.get_extra_info("socket")
    assert isinstance(sock, TransportSocket)
    assert sock.type == SOCK_STREAM
    assert sock.getpeername() == (B_IP, PORT)
    assert server.transport is not None
    assert server.transport.get_extra_info("peername") == transport.get_extra_info("sockname")
    assert transport.get_extra_info("nonexistent", "dflt") == "dflt"
    assert transport.get_protocol() is client
    assert transport.is_reading() and not transport.is_closing()

    for i in range(50):
        transport.write(b"%d," % i)
    transport.write_eof()
    await wait(server.eof)
    assert server.data == b"".join(b"%d," % i for i in range(50))
    # eof_received returned True: the server may still write, then close.
    server.transport.write(b"bye")
    server.transport.close()
    assert server.transport.is_closing()
    await wait(server.lost)
    await wait(client.eof)
    assert bytes(client.data) == b"bye"
    transport.close()
    await wait(client.lost)
    for recorder in (client, server):
        recorder.assert_grammar()
        assert recorder.exc is None
    assert server.order() == "M" + "D" * (len(server.order()) - 3) + "EL"


async def test_eof_received_false_closes_the_transport(net: Net) -> None:
    factory = Served(keep_open=False)
    server = await create_server(net.b, factory, B_IP, PORT)
    transport, client = await dial(net)
    peer = await factory.accepted()
    transport.write(b"last words")
    transport.write_eof()
    await wait(peer.lost)  # no close() call: returning False from eof_received does it
    await wait(client.eof)
    assert peer.order() == "MDEL" and peer.data == b"last words"
    transport.close()
    await wait(client.lost)
    client.assert_grammar()
    await shut(server)


async def test_connection_lost_exactly_once(net: Net, served: Served) -> None:
    transport, client = await dial(net)
    peer = await served.accepted()
    transport.close()
    transport.close()
    transport.abort()
    transport.write(b"ignored after close")  # dropped: the connection is gone
    await wait(client.lost)
    await wait(peer.eof)  # a FIN: abort() after close() did nothing
    assert peer.transport is not None
    peer.transport.close()
    await wait(peer.lost)
    # Let anything wrongly scheduled run before counting.
    for _ in range(20):
        await asyncio.sleep(0)
    assert client.order() == "ML"
    assert peer.order() == "MEL"


async def test_close_flushes_then_fins(net: Net, served: Served) -> None:
    transport, client = await dial(net)
    peer = await served.accepted()
    payload = bytes(range(256)) * 4096  # 1 MiB, far more than the socket takes at once
    transport.write(payload)
    assert transport.get_write_buffer_size() > 0
    transport.close()
    await wait(client.lost)
    await wait(peer.eof)
    assert len(peer.data) == len(payload) and peer.data == payload
    assert client.exc is None


# -- abort --------------------------------------------------------------------------


async def test_abort_resets_the_peer(net: Net, served: Served) -> None:
    transport, client = await dial(net)
    peer = await served.accepted()
    transport.write(b"x" * 500_000)
    transport.abort()
    assert transport.is_closing()
    assert transport.get_write_buffer_size() == 0
    await wait(client.lost)
    assert client.exc is None
    await wait(peer.lost)
    assert isinstance(peer.exc, ConnectionResetError)
    assert "E" not in peer.order()
    peer.assert_grammar()


# -- read flow control ---------------------------------------------------------------


async def test_pause_reading_stops_delivery_and_resume_restarts(net: Net) -> None:
    listener = net.b.socket()
    listener.bind((B_IP, PORT))
    listener.listen()
    sock = net.a.socket()
    async with asyncio.timeout(TIMEOUT):
        await sock.connect((B_IP, PORT))
        peer, _ = await listener.accept()
    transport, client = await create_connection(net.a, Recorder, sock=sock)

    await peer.sendall(b"first")
    async with asyncio.timeout(TIMEOUT):
        await client.arrived.wait()
    transport.pause_reading()
    assert not transport.is_reading()
    transport.pause_reading()  # idempotent
    client.arrived.clear()
    await peer.sendall(b"second")
    # The bytes are in the stack's receive queue, yet nobody delivers them.
    await eventually(lambda: sock.ioctl(SIOCINQ) == 6, what="bytes queued on the paused side")
    for _ in range(20):
        await asyncio.sleep(0)
    assert client.data == b"first" and not client.arrived.is_set()

    transport.resume_reading()
    assert transport.is_reading()
    async with asyncio.timeout(TIMEOUT):
        await client.arrived.wait()
    assert client.data == b"firstsecond"

    # Pausing also holds back EOF.
    transport.pause_reading()
    peer.close()
    await eventually(lambda: sock.ioctl(SIOCINQ) == 0 and transport.get_extra_info("socket"))
    for _ in range(20):
        await asyncio.sleep(0)
    assert "E" not in client.events
    transport.resume_reading()
    await wait(client.eof)
    transport.close()
    assert not transport.is_reading()
    await wait(client.lost)
    client.assert_grammar()
    listener.close()


# -- write flow control ----------------------------------------------------------------


async def test_write_limits_defaults_and_validation(net: Net, served: Served) -> None:
    transport, _client = await dial(net)
    assert transport.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
    transport.set_write_buffer_limits(high=1000)
    assert transport.get_write_buffer_limits() == (250, 1000)
    transport.set_write_buffer_limits(low=100)
    assert transport.get_write_buffer_limits() == (100, 400)
    with pytest.raises(ValueError):
        transport.set_write_buffer_limits(high=10, low=20)
    with pytest.raises(ValueError):
        transport.set_write_buffer_limits(high=-1, low=-2)
    transport.set_write_buffer_limits()
    assert transport.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
    transport.close()


async def test_pause_writing_strictly_over_high_resume_at_or_under_low(
    net: Net, served: Served
) -> None:
    """The thresholds exactly, checked while nothing can drain (no await in between)."""
    transport, client = await dial(net)
    peer = await served.accepted()
    assert peer.transport is not None
    peer.transport.pause_reading()  # the peer stops reading: its window will close

    transport.set_write_buffer_limits(high=1 << 30)
    transport.write(b"a" * (1 << 20))
    base = transport.get_write_buffer_size()
    assert base > 0  # the socket took part of it; the rest is queued
    # From here to the pause nothing awaits, so nothing drains the queue.
    low = base // 2
    transport.set_write_buffer_limits(high=base + 10, low=low)
    transport.write(b"b" * 10)
    assert transport.get_write_buffer_size() == base + 10
    assert "P" not in client.events  # at the mark is not over it
    transport.write(b"c")
    assert client.events.count("P") == 1  # synchronously, strictly over
    assert client.buffer_at_pause == [base + 11]
    transport.write(b"d" * 1000)
    assert client.events.count("P") == 1  # once, until resumed

    peer.transport.resume_reading()
    async with asyncio.timeout(TIMEOUT):
        await client.resumed.wait()
    assert client.events.count("R") == 1
    assert client.buffer_at_resume[0] <= low
    transport.write_eof()
    await wait(peer.eof)
    assert len(peer.data) == (1 << 20) + 1011
    assert peer.data.endswith(b"b" * 10 + b"c" + b"d" * 1000)
    # Lowering the high-water mark under what is queued pauses at once.
    transport.close()
    await wait(client.lost)


async def test_set_limits_below_queue_pauses_at_once(net: Net, served: Served) -> None:
    transport, client = await dial(net)
    peer = await served.accepted()
    assert peer.transport is not None
    peer.transport.pause_reading()
    transport.set_write_buffer_limits(high=1 << 30)
    transport.write(b"z" * (1 << 20))
    assert "P" not in client.events
    transport.set_write_buffer_limits(high=1000)
    assert client.events.count("P") == 1
    transport.abort()
    await wait(client.lost)


# -- BufferedProtocol ------------------------------------------------------------------


class BufferedRecorder(asyncio.BufferedProtocol):
    """Receives into a small fixed buffer, as the stdlib TLS layer would."""

    def __init__(self) -> None:
        self.buf = bytearray(1000)
        self.data = bytearray()
        self.events: list[str] = []
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.events.append("M")

    def get_buffer(self, sizehint: int) -> bytearray:
        self.events.append("G")
        return self.buf

    def buffer_updated(self, nbytes: int) -> None:
        assert 0 < nbytes <= len(self.buf)
        self.events.append("U")
        self.data += self.buf[:nbytes]

    def eof_received(self) -> bool:
        self.events.append("E")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append("L")
        self.lost.set_result(None)


async def test_buffered_protocol_receives_everything(net: Net) -> None:
    receiver = BufferedRecorder()
    server = await create_server(net.b, lambda: receiver, B_IP, PORT)
    transport, _client = await dial(net)
    payload = bytes(i * 31 % 256 for i in range(200_000))
    transport.write(payload)
    transport.write_eof()
    await wait(receiver.lost)
    assert receiver.data == payload
    order = "".join(e for e in receiver.events if e != "G")
    assert re.fullmatch("MU+EL", order), order
    transport.close()
    await shut(server)


# -- errors ------------------------------------------------------------------------------


async def test_exception_in_data_received_is_reported_and_closes(net: Net, served: Served) -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:

        class Broken(Recorder):
            def data_received(self, data: bytes) -> None:
                super().data_received(data)
                raise ValueError("bug in the protocol")

        async with asyncio.timeout(TIMEOUT):
            transport, client = await create_connection(net.a, Broken, B_IP, PORT)
        peer = await served.accepted()
        assert peer.transport is not None
        peer.transport.write(b"boom")
        await wait(client.lost)
        assert isinstance(client.exc, ValueError)
        assert client.order() == "MDL"
        assert [type(c.get("exception")) for c in reported] == [ValueError]
        assert transport.is_closing()
    finally:
        loop.set_exception_handler(previous)


async def test_create_connection_arguments(net: Net) -> None:
    with pytest.raises(ValueError):
        await create_connection(net.a, Recorder)
    sock = net.a.socket()
    with pytest.raises(ValueError):
        await create_connection(net.a, Recorder, B_IP, PORT, sock=sock)
    sock.close()
    with pytest.raises(ConnectionRefusedError):
        await dial(net)


async def test_server_on_existing_socket_and_every_address(net: Net) -> None:
    lsock: Socket = net.b.socket()
    lsock.bind(("", PORT))
    factory = Served()
    server = await create_server(net.b, factory, sock=lsock)
    transport, _client = await dial(net)
    await factory.accepted()
    transport.close()
    await shut(server)
    assert lsock.fileno() == -1  # the server owns and closed it


# -- switching protocols, readiness ------------------------------------------------------


async def test_set_protocol_switches_delivery(net: Net, served: Served) -> None:
    """Bytes after set_protocol go to the new protocol, a BufferedProtocol included."""
    transport, client = await dial(net)
    server = await served.accepted()
    assert server.transport is not None
    server.transport.write(b"first")
    await wait_for_data(client, b"first")
    buffered = BufferedRecorder()
    transport.set_protocol(buffered)
    assert transport.get_protocol() is buffered
    server.transport.write(b"second")
    server.transport.close()
    await wait(buffered.lost)
    assert bytes(client.data) == b"first"
    assert buffered.data == b"second"
    assert client.order() == "MD"
    transport.close()


async def test_no_task_per_connection(net: Net, served: Served) -> None:
    """Connections are driven by the socket's readiness hook, not by tasks."""
    before = len(asyncio.all_tasks())
    transports = [(await dial(net))[0] for _ in range(20)]
    assert len(asyncio.all_tasks()) == before
    for transport in transports:
        transport.write(b"x" * 100_000)  # more than the socket takes at once
    assert any(t.get_write_buffer_size() for t in transports)
    assert len(asyncio.all_tasks()) == before
    for transport in transports:
        transport.close()
    for _ in range(20):
        server = await served.accepted()
        await wait(server.eof)  # every byte, then the FIN that close() sends after them
        assert len(server.data) == 100_000


async def wait_for_data(recorder: Recorder, data: bytes) -> None:
    async with asyncio.timeout(TIMEOUT):
        while bytes(recorder.data) != data:
            recorder.arrived.clear()
            await recorder.arrived.wait()


async def test_transport_turns_nagle_off_like_asyncio(net: Net, served: Served) -> None:
    """asyncio's TCP transports set TCP_NODELAY (``base_events._set_nodelay``); so do ours,
    or a server writing headers and body separately waits a round trip for the body."""
    transport, _ = await dial(net)
    server_side = await served.accepted()
    assert server_side.transport is not None
    for end in (transport, server_side.transport):
        sock = end.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    transport.close()
