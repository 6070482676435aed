"""Urgent data between two stacks: send(MSG_OOB), recv(MSG_OOB), SIOCATMARK, SO_OOBINLINE."""

from __future__ import annotations

import asyncio
import errno
import socket as stdlib

import pytest

from aiostack.core.tcp.urgent import URG_VALID
from aiostack.socket import (
    MSG_DONTWAIT,
    MSG_PEEK,
    SIOCINQ,
    SOL_SOCKET,
    Socket,
)
from aiostack.socket.options import SIOCATMARK
from aiostack.socket.tcp import TcpSock
from aiostack.stack.stack import Stack
from tests.helpers import TIMEOUT, eventually
from tests.socket.conftest import tcp_pair

PORT = 8081
MSG_OOB = stdlib.MSG_OOB
SO_OOBINLINE = stdlib.SO_OOBINLINE


async def _pair(a: Stack, b: Stack) -> tuple[Socket, Socket, Socket]:
    return await tcp_pair(a, b, PORT)


def _queued(sock: Socket, size: int) -> bool:
    """The urgent byte has arrived and ``size`` bytes (it included) are queued."""
    st = sock.protocol_state
    assert isinstance(st, TcpSock) and st.conn is not None
    return bool(st.conn.urg_data & URG_VALID) and len(st.conn.rcvbuf) == size


async def test_oob_byte_is_delivered_apart_from_the_stream(stacks: tuple[Stack, Stack]) -> None:
    client, accepted, server = await _pair(*stacks)
    with pytest.raises(OSError) as exc:
        await accepted.recv(1, MSG_OOB)
    assert exc.value.errno == errno.EINVAL  # no urgent data yet
    async with asyncio.timeout(TIMEOUT):
        await client.send(b"hello")
        await client.send(b"!", MSG_OOB)
        await client.send(b"world")
        await eventually(lambda: _queued(accepted, 11))
        assert accepted.ioctl(SIOCINQ) == 5  # up to the mark
        assert accepted.ioctl(SIOCATMARK) == 0
        assert await accepted.recv(100) == b"hello"  # stops at the mark
        assert accepted.ioctl(SIOCATMARK) == 1
        assert await accepted.recv(1, MSG_OOB | MSG_PEEK) == b"!"
        assert await accepted.recv(1, MSG_OOB) == b"!"
        with pytest.raises(OSError) as exc:
            await accepted.recv(1, MSG_OOB)
        assert exc.value.errno == errno.EINVAL  # already read
        assert accepted.ioctl(SIOCINQ) == 0  # tcp_inq: still at the mark
        assert await accepted.recv(100) == b"world"
        assert accepted.ioctl(SIOCATMARK) == 0
        with pytest.raises(BlockingIOError):
            await accepted.recv(100, MSG_DONTWAIT)
    for sock in (client, accepted, server):
        sock.close()


async def test_oobinline_keeps_the_byte_in_line(stacks: tuple[Stack, Stack]) -> None:
    client, accepted, server = await _pair(*stacks)
    accepted.setsockopt(SOL_SOCKET, SO_OOBINLINE, 1)
    assert accepted.getsockopt(SOL_SOCKET, SO_OOBINLINE) == 1
    async with asyncio.timeout(TIMEOUT):
        await client.send(b"ab")
        await client.send(b"U", MSG_OOB)
        await eventually(lambda: _queued(accepted, 3))
        assert accepted.ioctl(SIOCINQ) == 3
        with pytest.raises(OSError) as exc:
            await accepted.recv(1, MSG_OOB)
        assert exc.value.errno == errno.EINVAL
        assert await accepted.recv(100) == b"ab"
        assert accepted.ioctl(SIOCATMARK) == 1
        assert await accepted.recv(100) == b"U"
    for sock in (client, accepted, server):
        sock.close()
