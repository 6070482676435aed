"""Discard (RFC 863) on TCP and UDP, port 9: read everything, answer nothing.

TCP reads until the peer's FIN and then closes; UDP drops each datagram.
The point of the service is a sink for throughput tests, so reads are
large and nothing is kept.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from aiostack.services.base import Service, serve_both
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
    return await serve_both(
        stack,
        NAME,
        port,
        host,
        handler=handle if tcp else None,
        respond=respond if udp else None,
    )
