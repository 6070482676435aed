"""Stdlib asyncio Streams over aiostack: ``start_server`` and ``open_connection`` on two stacks.

Stack A (198.18.0.1) runs the clients, stack B (198.18.0.2) the servers, on
the two ends of a MemoryWire. The server and client code is what one would
write against ``asyncio.start_server``/``asyncio.open_connection``; only the
stack argument differs. Waits are bounded by timeouts, never sleeps.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from aiostack.aio import Server, TcpTransport, open_connection, start_server
from aiostack.stack.stack import Stack
from tests.helpers import A_IP, B_IP, TIMEOUT, fast_arp, wired_stacks

PORT = 8080


@dataclass
class Net:
    a: Stack
    b: Stack


@pytest.fixture
async def net() -> AsyncIterator[Net]:
    async with wired_stacks(settings=(fast_arp(), fast_arp()), privileged=False) as (a, b):
        yield Net(a, b)


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The asyncio docs' echo server, chunk by chunk until EOF, then close."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.fixture
async def echo_server(net: Net) -> AsyncIterator[Server]:
    async with await start_server(net.b, echo, "", PORT) as server:
        yield server
        async with asyncio.timeout(TIMEOUT):
            server.close()
            await server.wait_closed()


async def connect(net: Net) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    async with asyncio.timeout(TIMEOUT):
        return await open_connection(net.a, B_IP, PORT)


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    async with asyncio.timeout(TIMEOUT):
        await writer.wait_closed()


def pattern(size: int, seed: int = 0) -> bytes:
    block = hashlib.sha256(seed.to_bytes(4, "big")).digest() * 2048
    return (block * (size // len(block) + 1))[:size]


async def test_many_messages_readline(net: Net, echo_server: Server) -> None:
    reader, writer = await connect(net)
    assert isinstance(writer.transport, TcpTransport)
    assert writer.get_extra_info("peername") == (B_IP, PORT)
    assert writer.get_extra_info("sockname")[0] == A_IP
    async with asyncio.timeout(TIMEOUT):
        for i in range(200):
            line = f"line {i} ".encode() * (i % 7 + 1) + b"\n"
            writer.write(line)
            await writer.drain()
            assert await reader.readline() == line
    await close(writer)


async def test_pipelined_lines_and_readexactly(net: Net, echo_server: Server) -> None:
    reader, writer = await connect(net)
    lines = [f"{i:05d}\n".encode() for i in range(500)]
    writer.writelines(lines)
    async with asyncio.timeout(TIMEOUT):
        await writer.drain()
        for expected in lines[:250]:
            assert await reader.readline() == expected
        assert await reader.readexactly(6 * 250) == b"".join(lines[250:])
        writer.write(b"tail")
        writer.write_eof()
        with pytest.raises(asyncio.IncompleteReadError) as caught:
            await reader.readexactly(10)
    assert caught.value.partial == b"tail"
    assert reader.at_eof()
    await close(writer)


async def test_write_eof_half_close_keeps_the_other_direction(net: Net) -> None:
    """The client half-closes; the server reads to EOF, then still answers."""

    async def count_then_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read()
        writer.write(f"{len(data)} {hashlib.sha256(data).hexdigest()}\n".encode())
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async with await start_server(net.b, count_then_answer, B_IP, PORT):
        reader, writer = await connect(net)
        payload = pattern(300_000, seed=1)
        assert writer.can_write_eof()
        writer.write(payload)
        writer.write_eof()
        with pytest.raises(RuntimeError):
            writer.write(b"after eof")
        async with asyncio.timeout(TIMEOUT):
            answer = await reader.readline()
            assert await reader.read() == b""
        assert answer == f"{len(payload)} {hashlib.sha256(payload).hexdigest()}\n".encode()
        await close(writer)


async def test_one_megabyte_through_with_drain(net: Net, echo_server: Server) -> None:
    """1 MB echoed while writing faster than the peer drains: drain() must block."""
    reader, writer = await connect(net)
    transport = writer.transport
    payload = pattern(1 << 20, seed=2)
    most_buffered = 0

    async def send() -> None:
        nonlocal most_buffered
        for start in range(0, len(payload), 256 * 1024):
            writer.write(payload[start : start + 256 * 1024])
            most_buffered = max(most_buffered, transport.get_write_buffer_size())
            await writer.drain()
            assert transport.get_write_buffer_size() <= 16 * 1024
        writer.write_eof()

    async with asyncio.timeout(TIMEOUT), asyncio.TaskGroup() as tg:
        tg.create_task(send())
        received = tg.create_task(reader.read())
    assert received.result() == payload
    # Writes went over the 64 KiB high-water mark: drain() really waited.
    assert most_buffered > 64 * 1024
    await close(writer)


async def test_twenty_concurrent_clients(net: Net, echo_server: Server) -> None:
    async def client(n: int) -> None:
        reader, writer = await connect(net)
        payload = pattern(20_000 + n * 1000, seed=n)
        for start in range(0, len(payload), 4096):
            writer.write(payload[start : start + 4096])
            await writer.drain()
        writer.write_eof()
        assert await reader.read() == payload
        await close(writer)

    async with asyncio.timeout(TIMEOUT), asyncio.TaskGroup() as tg:
        for n in range(20):
            tg.create_task(client(n))
    assert net.b.statistics()["mib"]["TcpPassiveOpens"] == 20


async def test_reset_by_peer_reaches_the_reader(net: Net) -> None:
    accepted: asyncio.Future[asyncio.StreamWriter] = asyncio.get_running_loop().create_future()

    async def keep(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set_result(writer)

    async with await start_server(net.b, keep, "", PORT):
        reader, writer = await connect(net)
        async with asyncio.timeout(TIMEOUT):
            server_writer = await accepted
            server_writer.transport.abort()
            with pytest.raises(ConnectionResetError):
                await reader.read()
        await close(server_writer)
        writer.close()
        with pytest.raises(ConnectionResetError):
            async with asyncio.timeout(TIMEOUT):
                await writer.wait_closed()


async def test_connection_refused(net: Net) -> None:
    with pytest.raises(ConnectionRefusedError):
        await connect(net)


async def test_server_surface_and_wait_closed_waits_for_clients(net: Net) -> None:
    server = await start_server(net.b, echo, None, PORT, backlog=8)
    assert server.is_serving()
    assert server.get_loop() is asyncio.get_running_loop()
    (sock,) = server.sockets
    assert sock.getsockname() == ("0.0.0.0", PORT)
    reader, writer = await connect(net)
    writer.write(b"ping\n")
    async with asyncio.timeout(TIMEOUT):
        assert await reader.readline() == b"ping\n"
    server.close()
    assert not server.is_serving()
    assert server.sockets == ()
    # New connections are refused; the open one still works.
    with pytest.raises(ConnectionRefusedError):
        await connect(net)
    waiting = asyncio.create_task(server.wait_closed())
    writer.write(b"pong\n")
    async with asyncio.timeout(TIMEOUT):
        assert await reader.readline() == b"pong\n"
    assert not waiting.done()
    writer.write_eof()  # the echo handler sees EOF and closes its side
    async with asyncio.timeout(TIMEOUT):
        assert await reader.read() == b""
        await waiting
    await close(writer)


async def test_serve_forever_until_cancelled(net: Net) -> None:
    server = await start_server(net.b, echo, B_IP, PORT, start_serving=False)
    assert not server.is_serving()
    task = asyncio.create_task(server.serve_forever())
    reader, writer = await connect(net)
    writer.write(b"hello\n")
    async with asyncio.timeout(TIMEOUT):
        assert await reader.readline() == b"hello\n"
    with pytest.raises(RuntimeError):
        await server.serve_forever()
    writer.write_eof()
    async with asyncio.timeout(TIMEOUT):
        assert await reader.read() == b""
    await close(writer)
    task.cancel()
    async with asyncio.timeout(TIMEOUT):
        with pytest.raises(asyncio.CancelledError):
            await task
    assert server.sockets == ()
    with pytest.raises(RuntimeError):
        await server.serve_forever()
