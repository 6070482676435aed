"""Fixtures for socket tests between two stacks on an in-memory wire."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from aiostack.socket import AF_INET, SOCK_STREAM, Socket
from aiostack.stack.stack import Stack
from tests.helpers import B_IP, TIMEOUT, fast_arp, wired_stacks


@pytest.fixture
async def stacks() -> AsyncIterator[tuple[Stack, Stack]]:
    """Two unprivileged stacks (A_IP, B_IP) on a MemoryWire, with fast ARP."""
    async with wired_stacks(settings=(fast_arp(), fast_arp()), privileged=False) as (a, b):
        yield a, b


async def tcp_pair(a: Stack, b: Stack, port: int) -> tuple[Socket, Socket, Socket]:
    """(client on ``a``, the connection ``b`` accepted, ``b``'s listener), connected."""
    server = b.socket(AF_INET, SOCK_STREAM)
    server.bind(("", port))
    server.listen(4)
    client = a.socket(AF_INET, SOCK_STREAM)
    async with asyncio.timeout(TIMEOUT):
        await client.connect((B_IP, port))
        accepted, _ = await server.accept()
    return client, accepted, server
