"""Receiving from a queue of whole datagrams: Linux's ``skb_recv_datagram`` path.

Raw and ping sockets receive the same way: a pending error first
(``sock_error``), then the oldest queued datagram (left queued with
MSG_PEEK) truncated to the caller's buffer, then end-of-file once the
receive side is shut down, else EAGAIN or a wait. One function serves both
so the two cannot drift apart.
"""

from __future__ import annotations

import errno
import socket as _socket
from typing import TYPE_CHECKING

from aiostack.core.dgram_queue import DatagramQueue
from aiostack.errors import os_error
from aiostack.socket.address import Address, format_address

if TYPE_CHECKING:
    from aiostack.socket.socket import Socket

MSG_PEEK = int(_socket.MSG_PEEK)
MSG_DONTWAIT = int(_socket.MSG_DONTWAIT)
#: ``sk_shutdown`` bit of a shut-down receive side.
RCV_SHUTDOWN = 1


async def recv_datagram(
    sock: Socket, ep: DatagramQueue, bufsize: int, flags: int
) -> tuple[bytes, Address | None]:
    """One datagram from ``ep`` with its source (port 0), as ``skb_recv_datagram`` gives it."""
    nonblocking = bool(flags & MSG_DONTWAIT) or not sock.blocking
    async with sock.deadline(sock.rcvtimeo):
        while True:
            pending = ep.take_error()
            if pending:
                raise os_error(pending)
            if ep.queue:
                if flags & MSG_PEEK:
                    data, src = ep.queue[0]
                else:
                    item = ep.pop()
                    assert item is not None
                    data, src = item
                return data[:bufsize], format_address(src, 0)
            if sock.shutdown_mask & RCV_SHUTDOWN and not nonblocking:
                return b"", None
            if sock.closed:
                raise os_error(errno.EBADF)
            if nonblocking:
                raise os_error(errno.EAGAIN)
            await sock.readers.wait()


def datagram_readable(sock: Socket, ep: DatagramQueue) -> bool:
    """What poll() reports as readable: a datagram, an error, or a shut-down receive side."""
    return bool(ep.queue or ep.error or sock.shutdown_mask & RCV_SHUTDOWN)
