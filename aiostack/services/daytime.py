"""Daytime (RFC 867) on TCP and UDP, port 13: one human-readable line with the time.

RFC 867 leaves the format open and suggests ``Weekday, Month Day, Year
HH:MM:SS-Zone``; this server sends exactly that, in UTC, ending in CRLF:
``Sunday, November 22, 2026 02:17:12-UTC``. TCP: the line is sent on
accept and the server closes at once, ignoring anything the client sends.
UDP: any datagram is answered with the line. The clock is a parameter
(seconds since the epoch) so that the service is testable.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from aiostack.services.base import Service, serve_both
from aiostack.socket.address import Address

if TYPE_CHECKING:
    from aiostack.stack.stack import Stack

NAME = "daytime"
PORT = 13

Clock = Callable[[], float]


def daytime_line(when: float) -> bytes:
    """The line for ``when`` (seconds since the epoch), CRLF included."""
    return time.strftime("%A, %B %d, %Y %H:%M:%S-UTC\r\n", time.gmtime(when)).encode("ascii")


async def handle(clock: Clock, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(daytime_line(clock()))
    await writer.drain()


def respond(clock: Clock, data: bytes, peer: Address) -> bytes:
    return daytime_line(clock())


async def serve(
    stack: Stack,
    port: int = PORT,
    *,
    host: str = "",
    tcp: bool = True,
    udp: bool = True,
    clock: Clock = time.time,
) -> Service:
    """Start daytime on ``port``; ``clock`` gives the time to report."""
    return await serve_both(
        stack,
        NAME,
        port,
        host,
        handler=partial(handle, clock) if tcp else None,
        respond=partial(respond, clock) if udp else None,
    )
