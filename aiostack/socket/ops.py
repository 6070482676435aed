"""``ProtoOps``: the per-type socket operations, Linux's ``struct proto_ops``.

A :class:`~aiostack.socket.socket.Socket` is the BSD-facing object; it
checks nothing protocol-specific and delegates every call to its ops, as
``sys_bind`` calls ``sock->ops->bind``. The defaults here are Linux's
``sock_no_*`` functions: an operation a type does not have fails with
EOPNOTSUPP (listen on a datagram socket, accept on one, ...).
"""

from __future__ import annotations

import errno
import struct
from typing import TYPE_CHECKING, Any

from aiostack.errors import os_error
from aiostack.socket.address import Address

if TYPE_CHECKING:
    from aiostack.socket.socket import Socket
    from aiostack.stack.stack import Stack


class ProtoOps:
    """Operations of one socket type; every method gets the socket it acts on."""

    def permit(self, stack: Stack) -> None:
        """Refuse a new socket this process may not have (``sk->sk_prot->init``'s checks)."""

    def create(self, sock: Socket) -> None:
        """Set up the protocol state of a new socket (``sk->sk_prot->init``)."""

    def bind(self, sock: Socket, address: Any) -> None:
        raise os_error(errno.EOPNOTSUPP)

    def listen(self, sock: Socket, backlog: int) -> None:
        raise os_error(errno.EOPNOTSUPP)

    async def connect(self, sock: Socket, address: Any) -> None:
        raise os_error(errno.EOPNOTSUPP)

    async def accept(self, sock: Socket) -> tuple[Socket, Address]:
        raise os_error(errno.EOPNOTSUPP)

    def getname(self, sock: Socket, peer: bool) -> Address:
        raise os_error(errno.EOPNOTSUPP)

    def shutdown(self, sock: Socket, how: int) -> None:
        raise os_error(errno.EOPNOTSUPP)

    async def sendmsg(
        self, sock: Socket, data: bytes | memoryview, address: Any, flags: int
    ) -> int:
        raise os_error(errno.EOPNOTSUPP)

    async def recvmsg(self, sock: Socket, bufsize: int, flags: int) -> tuple[bytes, Address | None]:
        raise os_error(errno.EOPNOTSUPP)

    def ioctl(self, sock: Socket, request: int) -> int:
        raise os_error(errno.ENOTTY)

    def setsockopt(self, sock: Socket, level: int, option: int, value: int | bytes) -> None:
        raise os_error(errno.ENOPROTOOPT)

    def getsockopt(self, sock: Socket, level: int, option: int) -> int:
        raise os_error(errno.ENOPROTOOPT)

    def getsockopt_bytes(self, sock: Socket, level: int, option: int, buflen: int) -> bytes:
        """``getsockopt(level, option, buflen)``: the C int, unless the option is a struct."""
        return struct.pack("i", self.getsockopt(sock, level, option))[:buflen]

    def readable(self, sock: Socket) -> bool:
        """Whether a receive would complete now (data, EOF or a pending error)."""
        return False

    def poll(self, sock: Socket) -> int:
        """The poll(2) mask (``select.POLLIN`` ...), as the protocol's Linux ``poll`` gives it."""
        return 0

    def release(self, sock: Socket) -> None:
        """Free the protocol state when the socket is closed."""

    async def linger(self, sock: Socket) -> None:
        """After :meth:`release`: wait as SO_LINGER asks (only TCP lingers)."""
