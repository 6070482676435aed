"""Character generator (RFC 864), port 19: the classic rotating 72-character lines.

The 95 printable ASCII characters (space to ``~``) form a ring; line ``n``
is the 72 characters of the ring starting at ``n mod 95``, followed by
CRLF, so the pattern repeats every 95 lines (7030 bytes). This is the
pattern RFC 864 gives as its example and what inetd's chargen sends.

TCP: lines stream from the accept on, in large writes with ``drain`` (the
peer's window paces them), until the peer closes: its FIN (reader EOF) or
a reset ending the writes. Data the client sends is read and thrown away,
as the RFC says. UDP: each datagram is answered with the next lines of the
ring that fit in 512 bytes (RFC 864: "between 0 and 512 characters"), the
rotation carrying on from one reply to the next.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from aiostack.services.base import Service, serve_both
from aiostack.socket.address import Address

if TYPE_CHECKING:
    from aiostack.stack.stack import Stack

NAME = "chargen"
PORT = 19
LINE_CHARS = 72
RING = bytes(range(32, 127))
#: UDP replies carry at most this many characters (RFC 864).
MAX_DATAGRAM = 512


def line(n: int) -> bytes:
    """Line ``n`` of the stream (0-based), CRLF included."""
    start = n % len(RING)
    return (RING + RING)[start : start + LINE_CHARS] + b"\r\n"


#: One full period of the stream: 95 lines.
CYCLE = b"".join(line(n) for n in range(len(RING)))
#: What one TCP write sends: whole periods, so every write starts at line 0.
_WRITE = CYCLE * 9
_LINES_PER_DATAGRAM = MAX_DATAGRAM // (LINE_CHARS + 2)


def stream_prefix(size: int) -> bytes:
    """The first ``size`` bytes of the TCP stream (what a test compares against)."""
    return (CYCLE * (size // len(CYCLE) + 1))[:size]


async def _discard_until_eof(reader: asyncio.StreamReader) -> None:
    while await reader.read(65536):
        pass


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Stream the pattern until the peer closes (the caller closes the writer)."""
    eof = asyncio.ensure_future(_discard_until_eof(reader))
    try:
        while not eof.done():
            writer.write(_WRITE)
            drain = asyncio.ensure_future(writer.drain())
            await asyncio.wait({drain, eof}, return_when=asyncio.FIRST_COMPLETED)
            if not drain.done():
                drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drain  # re-raises a reset as ConnectionError: the peer is gone
    finally:
        eof.cancel()
        await asyncio.gather(eof, return_exceptions=True)


class DatagramRing:
    """The UDP side's state: where the rotation is."""

    def __init__(self) -> None:
        self.next_line = 0

    def respond(self, data: bytes, peer: Address) -> bytes:
        first = self.next_line
        self.next_line = (first + _LINES_PER_DATAGRAM) % len(RING)
        return b"".join(line(first + i) for i in range(_LINES_PER_DATAGRAM))


async def serve(
    stack: Stack, port: int = PORT, *, host: str = "", tcp: bool = True, udp: bool = True
) -> Service:
    """Start chargen on ``port`` (TCP and UDP unless one is switched off)."""
    return await serve_both(
        stack,
        NAME,
        port,
        host,
        handler=handle if tcp else None,
        respond=DatagramRing().respond if udp else None,
    )
