"""The AF_INET family: the protocol switch, Linux's ``inetsw`` and ``inet_create``.

``PROTOSW`` maps a socket type to the protocols that serve it, each with its
ops; protocol 0 picks the type's default. The errors are ``inet_create``'s:
a type nobody serves is ESOCKTNOSUPPORT, a protocol that does not serve the
type is EPROTONOSUPPORT; SOCK_RAW's entry is the wildcard, as in Linux.
"""

from __future__ import annotations

import errno
import socket as _socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiostack.errors import os_error
from aiostack.socket.ops import ProtoOps
from aiostack.socket.ping import PingOps
from aiostack.socket.raw import RawOps
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


#: ``IPPROTO_MAX`` (Linux 5.6+, with IPPROTO_MPTCP): protocols at or above it are EINVAL.
IPPROTO_MAX = 263

PROTOSW: dict[int, list[Protosw]] = {
    _socket.SOCK_STREAM: [Protosw(_socket.SOCK_STREAM, _socket.IPPROTO_TCP, TcpOps)],
    _socket.SOCK_DGRAM: [
        Protosw(_socket.SOCK_DGRAM, _socket.IPPROTO_UDP, UdpOps),
        Protosw(_socket.SOCK_DGRAM, _socket.IPPROTO_ICMP, PingOps),
    ],
    # The wildcard entry (protocol IPPROTO_IP): any protocol but 0 itself.
    _socket.SOCK_RAW: [Protosw(_socket.SOCK_RAW, _socket.IPPROTO_IP, RawOps)],
}


def _lookup(entries: list[Protosw], protocol: int) -> tuple[Protosw, int] | None:
    """``inet_create``'s lookup_protocol loop: an exact match, or one of the two wildcards.

    Protocol 0 takes the entry's protocol; an entry whose protocol is 0 (raw)
    takes any protocol except 0 itself.
    """
    for entry in entries:
        if protocol == entry.protocol:
            if protocol != _socket.IPPROTO_IP:
                return entry, protocol
        elif protocol == _socket.IPPROTO_IP:
            return entry, entry.protocol
        elif entry.protocol == _socket.IPPROTO_IP:
            return entry, protocol
    return None


def inet_create(stack: Stack, sock_type: int, protocol: int, *, nonblocking: bool) -> Socket:
    """Find the (type, protocol) entry and build the socket, as ``inet_create``.

    The order is the kernel's: a protocol out of range is EINVAL; a type
    nobody serves ESOCKTNOSUPPORT; a protocol the type does not take
    EPROTONOSUPPORT (SOCK_RAW with protocol 0 among them); and only then
    SOCK_RAW without the raw capability (the stack's ``privileged``) EPERM,
    and a ping socket outside ``ping_group_range`` EACCES (``ping_init_sock``).
    """
    if not 0 <= protocol < IPPROTO_MAX:
        raise os_error(errno.EINVAL)
    entries = PROTOSW.get(sock_type)
    if not entries:
        raise os_error(errno.ESOCKTNOSUPPORT)
    found = _lookup(entries, protocol)
    if found is None:
        raise os_error(errno.EPROTONOSUPPORT)
    entry, protocol = found
    if sock_type == _socket.SOCK_RAW and not stack.privileged:
        raise os_error(errno.EPERM)
    ops = entry.ops()
    ops.permit(stack)  # ping sockets: ping_group_range (EACCES)
    sock = Socket(stack, _socket.AF_INET, sock_type, protocol, ops, blocking=not nonblocking)
    ops.create(sock)
    return sock
