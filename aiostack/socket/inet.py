"""The AF_INET family: the protocol switch, Linux's ``inetsw`` and ``inet_create``.

``PROTOSW`` maps a socket type to the protocols that serve it, each with its
ops; protocol 0 picks the type's default. The errors are ``inet_create``'s:
a type nobody serves is ESOCKTNOSUPPORT, a protocol that does not serve the
type is EPROTONOSUPPORT. New transports (TCP, raw IP) register here.
"""

from __future__ import annotations

import errno
import socket as _socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiostack.errors import os_error
from aiostack.socket.ops import ProtoOps
from aiostack.socket.socket import Socket
from aiostack.socket.tcp import TcpOps
from aiostack.socket.udp import UdpOps

if TYPE_CHECKING:
    from aiostack.stack.stack import Stack


@dataclass(frozen=True, slots=True)
class Protosw:
    type: int
    protocol: int
    ops: Callable[[], ProtoOps]


PROTOSW: dict[int, list[Protosw]] = {
    _socket.SOCK_STREAM: [Protosw(_socket.SOCK_STREAM, _socket.IPPROTO_TCP, TcpOps)],
    _socket.SOCK_DGRAM: [Protosw(_socket.SOCK_DGRAM, _socket.IPPROTO_UDP, UdpOps)],
}


def inet_create(stack: Stack, sock_type: int, protocol: int, *, nonblocking: bool) -> Socket:
    """Find the (type, protocol) entry and build the socket, as ``inet_create``."""
    entries = PROTOSW.get(sock_type)
    if not entries:
        raise os_error(errno.ESOCKTNOSUPPORT)
    for entry in entries:
        if protocol in (0, entry.protocol):
            ops = entry.ops()
            sock = Socket(
                stack, _socket.AF_INET, sock_type, entry.protocol, ops, blocking=not nonblocking
            )
            ops.create(sock)
            return sock
    raise os_error(errno.EPROTONOSUPPORT)
