"""Per-call costs the stack keeps flat: untimed socket calls, descriptor numbers."""

from __future__ import annotations

import asyncio
import errno
import socket as _socket
import struct

import pytest

from aiostack.socket import AF_INET, SOCK_DGRAM, SOCK_STREAM
from aiostack.socket import socket as socket_module
from aiostack.socket.socket import NO_DEADLINE
from tests.helpers import A_IP, B_IP, TIMEOUT, wired_stacks

PORT = 7400


async def test_untimed_calls_share_the_do_nothing_deadline() -> None:
    async with wired_stacks() as (a, _b):
        sock = a.socket(AF_INET, SOCK_DGRAM)
        assert sock.deadline() is NO_DEADLINE  # blocking, no timeout
        assert sock.deadline(None, errno.EINPROGRESS) is NO_DEADLINE
        sock.setblocking(False)
        assert sock.deadline(5.0) is NO_DEADLINE  # non-blocking calls never wait
        sock.settimeout(0.5)
        assert sock.deadline() is not NO_DEADLINE
        sock.close()


async def test_a_deadline_free_recv_enters_no_timeout_scope(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_scope(*args: object) -> None:
        raise AssertionError("an untimed call built a timeout scope")

    async with wired_stacks() as (a, b):
        server = b.socket(AF_INET, SOCK_STREAM)
        server.bind((B_IP, PORT))
        server.listen(1)
        client = a.socket(AF_INET, SOCK_STREAM)
        await asyncio.wait_for(client.connect((B_IP, PORT)), TIMEOUT)
        conn, _ = await asyncio.wait_for(server.accept(), TIMEOUT)
        monkeypatch.setattr(socket_module, "_expiring", no_scope)
        await client.sendall(b"ping")
        assert await asyncio.wait_for(conn.recv(4), TIMEOUT) == b"ping"
        monkeypatch.undo()
        for s in (client, conn, server):
            s.close()


async def test_timeouts_still_expire_with_their_errors() -> None:
    async with wired_stacks() as (a, _b):
        sock = a.socket(AF_INET, SOCK_DGRAM)
        sock.bind((A_IP, PORT))
        sock.settimeout(0.01)
        with pytest.raises(TimeoutError, match="timed out"):
            await sock.recv(1)
        sock.settimeout(None)
        sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_RCVTIMEO, struct.pack("ll", 0, 10_000))
        with pytest.raises(OSError) as info:
            await sock.recv(1)
        assert info.value.errno == errno.EAGAIN
        sock.close()


async def test_descriptors_are_the_lowest_free_number() -> None:
    async with wired_stacks() as (a, _b):
        socks = [a.socket(AF_INET, SOCK_DGRAM) for _ in range(6)]
        assert [s.fileno() for s in socks] == [3, 4, 5, 6, 7, 8]
        socks[4].close()
        socks[1].close()
        socks[2].close()
        again = [a.socket(AF_INET, SOCK_DGRAM) for _ in range(4)]
        assert [s.fileno() for s in again] == [4, 5, 7, 9]  # as Linux's open() would
        for s in socks + again:
            s.close()
        assert a.sockets == {}
        assert a.socket(AF_INET, SOCK_DGRAM).fileno() == 3
