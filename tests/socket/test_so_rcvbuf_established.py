"""SO_RCVBUF on a connected TCP socket: ``sk_rcvbuf`` changes at once, as in Linux.

Linux ``__sock_set_rcvbuf`` stores twice the value (at least SOCK_MIN_RCVBUF)
and sets SOCK_RCVBUF_LOCK; TCP reads ``sk_rcvbuf`` for every window it
selects (``tcp_space``, ``tcp_full_space``), so the window follows without
anything else. The wire behaviour against Linux is in
tests/packetdrill/window/so_rcvbuf_*_established.pkt.
"""

from __future__ import annotations

import asyncio

import pytest

from aiostack.core.tcp.rmem import win_from_space
from aiostack.socket import SO_RCVBUF, SOL_SOCKET, Socket
from aiostack.socket.tcp import TcpSock
from aiostack.stack.stack import Stack
from tests.helpers import TIMEOUT
from tests.socket.conftest import tcp_pair

PORT = 8082


async def _accepted(a: Stack, b: Stack) -> tuple[Socket, Socket, Socket]:
    return await tcp_pair(a, b, PORT)


# Both within rmem_max (212992): stored doubled.
@pytest.mark.parametrize("value", [2048, 100_000])
async def test_so_rcvbuf_resizes_the_connections_buffer(
    stacks: tuple[Stack, Stack], value: int
) -> None:
    client, accepted, server = await _accepted(*stacks)
    try:
        st = accepted.protocol_state
        assert isinstance(st, TcpSock)
        conn = st.conn
        assert conn is not None
        assert conn.rcvbuf_auto  # no SO_RCVBUF yet: tcp_rcv_space_adjust may grow it
        accepted.setsockopt(SOL_SOCKET, SO_RCVBUF, value)
        sk_rcvbuf = accepted.getsockopt(SOL_SOCKET, SO_RCVBUF)
        assert sk_rcvbuf == 2 * value
        rb = conn.rcvbuf
        assert rb.rcvbuf == sk_rcvbuf
        assert rb.capacity == win_from_space(sk_rcvbuf, rb.scaling_ratio)
        assert not conn.rcvbuf_auto  # SOCK_RCVBUF_LOCK
        # Data still flows through the resized buffer.
        async with asyncio.timeout(TIMEOUT):
            await client.sendall(b"x" * 3000)
            got = b""
            while len(got) < 3000:
                got += await accepted.recv(65536)
        assert got == b"x" * 3000
    finally:
        for sock in (client, accepted, server):
            sock.close()
