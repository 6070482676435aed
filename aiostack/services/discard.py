"""Discard (RFC 863) on TCP and UDP, port 9: read everything, answer nothing.

TCP reads until the peer's FIN and then closes; UDP drops each datagram.
The point of the service is a sink for throughput tests, so reads are
large and nothing is kept.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from aiostack.services.base import Service, check_port, tcp_server, udp_service
from aiostack.socket.address import Address

if TYPE_CHECKING:
    from aiostack.stack.stack import Stack

NAME = "discard"
PORT = 9
_CHUNK = 262144


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Read and drop until EOF (the caller closes the writer)."""
    while await reader.read(_CHUNK):
        pass


def respond(data: bytes, peer: Address) -> None:
    return None


async def serve(
    stack: Stack, port: int = PORT, *, host: str = "", tcp: bool = True, udp: bool = True
) -> Service:
    """Start discard on ``port`` (TCP and UDP unless one is switched off)."""
    check_port(port)
    handlers: set[asyncio.Task[None]] = set()
    server = await tcp_server(stack, NAME, handle, host, port, handlers) if tcp else None
    try:
        task = await udp_service(stack, NAME, respond, host, port) if udp else None
    except BaseException:
        if server is not None:
            server.close()
        raise
    return Service(NAME, port, tcp=server, udp=task, handlers=handlers)
