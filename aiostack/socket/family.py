"""The address family registry, Linux's ``net_families`` and ``__sock_create``.

``socket(family, type, proto)`` strips the SOCK_NONBLOCK / SOCK_CLOEXEC
flags from ``type``, rejects a type number out of range (EINVAL), and asks
the family's creator; an unregistered family is EAFNOSUPPORT.
"""

from __future__ import annotations

import errno
import socket as _socket
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiostack.errors import os_error
from aiostack.socket.inet import inet_create

if TYPE_CHECKING:
    from aiostack.socket.socket import Socket
    from aiostack.stack.stack import Stack

#: ``SOCK_MAX`` in Linux: type numbers at or above it are invalid.
SOCK_MAX = 11
_TYPE_FLAGS = _socket.SOCK_NONBLOCK | _socket.SOCK_CLOEXEC


FAMILIES: dict[int, Callable[..., Socket]] = {
    _socket.AF_INET: inet_create,
}


def create_socket(stack: Stack, family: int, type: int, proto: int) -> Socket:
    sock_type = int(type) & ~_TYPE_FLAGS
    if not 0 <= sock_type < SOCK_MAX:
        raise os_error(errno.EINVAL)
    create = FAMILIES.get(int(family))
    if create is None:
        raise os_error(errno.EAFNOSUPPORT)
    return create(stack, sock_type, int(proto), nonblocking=bool(type & _socket.SOCK_NONBLOCK))
