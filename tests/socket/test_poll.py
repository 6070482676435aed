"""Socket.poll / Socket.wait / Socket.on_urgent between two stacks.

The masks themselves are checked against the kernel by the differential
suite (``poll_*`` scenarios); these tests cover what only aiostack has: the
awaitable wait, its timeout and argument checks, and the SIGURG stand-in.
"""

from __future__ import annotations

import asyncio
import select
import socket as stdlib

import pytest

from aiostack.socket import AF_INET, SOCK_DGRAM, SOCK_STREAM, Socket
from aiostack.stack.stack import Stack
from tests.helpers import B_IP, TIMEOUT
from tests.socket.conftest import tcp_pair

PORT = 8082


async def _pair(a: Stack, b: Stack) -> tuple[Socket, Socket, Socket]:
    return await tcp_pair(a, b, PORT)


async def test_wait_wakes_when_the_urgent_byte_arrives(stacks: tuple[Stack, Stack]) -> None:
    client, accepted, _server = await _pair(*stacks)
    waiter = asyncio.ensure_future(accepted.wait(select.POLLPRI))
    await asyncio.sleep(0)
    assert not waiter.done()  # nothing urgent yet: still waiting
    await client.send(b"ab", stdlib.MSG_OOB)
    async with asyncio.timeout(TIMEOUT):
        assert await waiter == select.POLLPRI  # only the bits asked for
    assert await accepted.recv(1, stdlib.MSG_OOB) == b"b"
    assert not accepted.poll() & select.POLLPRI


async def test_on_urgent_is_called_once_per_new_pointer(stacks: tuple[Stack, Stack]) -> None:
    client, accepted, _server = await _pair(*stacks)
    signals: list[int] = []
    accepted.on_urgent = lambda: signals.append(accepted.poll())
    await client.send(b"plain")
    await client.send(b"x", stdlib.MSG_OOB)
    async with asyncio.timeout(TIMEOUT):
        await accepted.wait(select.POLLPRI)
        assert await accepted.recv(1, stdlib.MSG_OOB) == b"x"
        await client.send(b"y", stdlib.MSG_OOB)
        await accepted.wait(select.POLLPRI)
    assert len(signals) == 2  # one SIGURG per urgent pointer, none for plain data


async def test_wait_returns_readiness_at_once_and_0_on_timeout(
    stacks: tuple[Stack, Stack],
) -> None:
    client, accepted, server = await _pair(*stacks)
    assert await client.wait(select.POLLOUT) == select.POLLOUT
    assert await accepted.wait(select.POLLIN, timeout=0) == 0
    assert await accepted.wait(select.POLLIN, timeout=0.01) == 0
    assert await server.wait(select.POLLIN, timeout=0) == 0  # nothing to accept


async def test_wait_on_a_listener_wakes_for_a_connection(stacks: tuple[Stack, Stack]) -> None:
    a, b = stacks
    server = b.socket(AF_INET, SOCK_STREAM)
    server.bind(("", PORT))
    server.listen(4)
    waiter = asyncio.ensure_future(server.wait())
    client = a.socket(AF_INET, SOCK_STREAM)
    async with asyncio.timeout(TIMEOUT):
        await client.connect((B_IP, PORT))
        assert await waiter == select.POLLIN


async def test_hangup_ends_a_wait_that_did_not_ask_for_it(stacks: tuple[Stack, Stack]) -> None:
    client, accepted, _server = await _pair(*stacks)
    waiter = asyncio.ensure_future(accepted.wait(select.POLLPRI))
    await asyncio.sleep(0)
    client.setsockopt(stdlib.SOL_SOCKET, stdlib.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    client.close()  # RST
    async with asyncio.timeout(TIMEOUT):
        assert await waiter == select.POLLERR | select.POLLHUP


async def test_closed_socket_is_pollnval(stacks: tuple[Stack, Stack]) -> None:
    a, _b = stacks
    for kind in (SOCK_STREAM, SOCK_DGRAM):
        sock = a.socket(AF_INET, kind)
        sock.close()
        assert sock.poll() == select.POLLNVAL
        assert await sock.wait(select.POLLIN) == select.POLLNVAL


@pytest.mark.parametrize(
    ("events", "timeout", "name"),
    [(-1, None, "events"), (1 << 20, None, "events"), (select.POLLIN, -1.0, "timeout")],
)
async def test_bad_arguments_name_themselves(
    stacks: tuple[Stack, Stack], events: int, timeout: float | None, name: str
) -> None:
    a, _b = stacks
    sock = a.socket(AF_INET, SOCK_STREAM)
    with pytest.raises(ValueError, match=name):
        await sock.wait(events, timeout)
