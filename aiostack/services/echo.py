"""Echo (RFC 862) on TCP and UDP, port 7.

TCP: every byte received is sent back, in order, until the peer's FIN; then
the server finishes sending and closes (its own FIN), as inetd's echo does.
Reading waits for ``drain`` before reading on, so a peer that sends
without reading is slowed down by TCP flow control, not buffered without
bound. UDP: each datagram goes back to its sender unchanged.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from aiostack.services.base import Service, serve_both
from aiostack.socket.address import Address

if TYPE_CHECKING:
    from aiostack.stack.stack import Stack

NAME = "echo"
PORT = 7
_CHUNK = 65536


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Send back everything until EOF (the caller closes the writer)."""
    while data := await reader.read(_CHUNK):
        writer.write(data)
        await writer.drain()


def respond(data: bytes, peer: Address) -> bytes:
    return data


async def serve(
    stack: Stack, port: int = PORT, *, host: str = "", tcp: bool = True, udp: bool = True
) -> Service:
    """Start echo on ``port`` (TCP and UDP unless one is switched off)."""
    return await serve_both(
        stack,
        NAME,
        port,
        host,
        handler=handle if tcp else None,
        respond=respond if udp else None,
    )
