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
from typing import TYPE_CHECKING, Protocol

from aiostack.core.dgram_queue import DatagramQueue
from aiostack.errors import os_error
from aiostack.socket import options
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


class DatagramSockState(Protocol):
    """What raw and ping sockets keep alike: their endpoint and IP-level options."""

    @property
    def ep(self) -> DatagramQueue: ...

    broadcast: bool
    ttl: int | None
    tos: int


def set_shared_option(
    sock: Socket, st: DatagramSockState, level: int, option: int, number: int
) -> bool:
    """Set an option raw and ping sockets treat alike; False if ``option`` is not one.

    SO_BROADCAST, SO_RCVBUF/SO_SNDBUF (clamped as ``sock_setsockopt`` does),
    IP_TTL (validated once, ``options.ip_ttl``), IP_TOS, IP_RECVERR.
    """
    settings = sock.stack.settings
    if level == _socket.SOL_SOCKET:
        if option == _socket.SO_BROADCAST:
            st.broadcast = bool(number)
        elif option == _socket.SO_RCVBUF:
            st.ep.rcvbuf = options.buffer_size(number, settings.rmem_max, options.MIN_RCVBUF)
        elif option == _socket.SO_SNDBUF:
            sock.sndbuf = options.buffer_size(number, settings.wmem_max, options.MIN_SNDBUF)
        else:
            return False
    elif level == _socket.IPPROTO_IP:
        if option == _socket.IP_TTL:
            st.ttl = options.ip_ttl(number)
        elif option == _socket.IP_TOS:
            st.tos = number & 0xFF
        elif option == options.IP_RECVERR:
            st.ep.recverr = bool(number)
        else:
            return False
    else:
        return False
    return True


def get_shared_option(sock: Socket, st: DatagramSockState, level: int, option: int) -> int | None:
    """Read an option raw and ping sockets treat alike; None if ``option`` is not one.

    SO_ERROR reads and clears the pending error, as ``sock_getsockopt`` does.
    """
    if level == _socket.SOL_SOCKET:
        if option == _socket.SO_ERROR:
            return st.ep.take_error()
        values = {
            _socket.SO_BROADCAST: int(st.broadcast),
            _socket.SO_RCVBUF: st.ep.rcvbuf,
            _socket.SO_SNDBUF: sock.sndbuf,
            _socket.SO_TYPE: sock.type,
            _socket.SO_PROTOCOL: sock.proto,
            _socket.SO_DOMAIN: sock.family,
        }
        return values.get(option)
    if level == _socket.IPPROTO_IP:
        if option == _socket.IP_TTL:
            return st.ttl if st.ttl is not None else sock.stack.settings.ip_default_ttl
        if option == _socket.IP_TOS:
            return st.tos
        if option == options.IP_RECVERR:
            return int(st.ep.recverr)
    return None


def datagram_readable(sock: Socket, ep: DatagramQueue) -> bool:
    """What poll() reports as readable: a datagram, an error, or a shut-down receive side."""
    return bool(ep.queue or ep.error or sock.shutdown_mask & RCV_SHUTDOWN)
