"""AF_INET socket addresses: Python's ``(host, port)`` tuples <-> integers.

The errors are the stdlib ``socket`` module's, so code moving from
``socket.socket`` to aiostack sees the same exceptions for the same mistakes.
aiostack has no resolver: a host is a dotted quad, ``""`` (INADDR_ANY) or
``"<broadcast>"``; a name raises ``socket.gaierror`` (EAI_NONAME) as a
failed lookup would.
"""

from __future__ import annotations

import operator
import socket as _socket
from typing import Any

from aiostack.wire.ipv4 import ANY, LIMITED_BROADCAST, addr, addr_str

Address = tuple[str, int]


#: Special host strings the stdlib accepts, then a cache of parsed dotted quads:
#: a sender names the same few peers over and over.
_SPECIAL_HOSTS = {"": ANY, "<broadcast>": LIMITED_BROADCAST}
_HOST_INT: dict[str, int] = dict(_SPECIAL_HOSTS)
_CACHE_MAX = 4096


def parse_address(address: Any, call: str) -> tuple[int, int]:
    """``(host, port)`` -> ``(address int, port)``, raising as the stdlib does.

    The checks run in CPython's order (``getsockaddrarg``): the tuple, the
    host's type, the port's type, the host lookup, then the port's range.
    A host may be ``str``, ``bytes`` or ``bytearray``; a port anything with
    ``__index__`` (``True`` is port 1, as with the stdlib).
    """
    if not isinstance(address, tuple):
        raise TypeError(f"{call}(): AF_INET address must be tuple, not {type(address).__name__}")
    if len(address) != 2:
        raise TypeError("AF_INET address must be a pair (host, port)")
    host, port = address
    if isinstance(host, bytes | bytearray):
        host = bytes(host).decode("latin-1")
    elif not isinstance(host, str):
        raise TypeError(f"str, bytes or bytearray expected, not {type(host).__name__}")
    if "\0" in host:
        raise TypeError("host name must not contain null character")
    port = operator.index(port)
    if not -(2**31) <= port < 2**31:  # does not fit a C int
        raise OverflowError(f"{call}(): port must be 0-65535.")
    value = _HOST_INT.get(host)
    if value is None:
        try:
            value = addr(host)
        except ValueError:
            raise _socket.gaierror(_socket.EAI_NONAME, "Name or service not known") from None
        if len(_HOST_INT) >= _CACHE_MAX:
            _HOST_INT.clear()
            _HOST_INT.update(_SPECIAL_HOSTS)
        _HOST_INT[host] = value
    if not 0 <= port <= 65535:
        raise OverflowError(f"{call}(): port must be 0-65535.")
    return value, port


#: Dotted-quad strings of recently seen addresses, for the same reason.
_ADDR_STR: dict[int, str] = {}


def format_address(address: int, port: int) -> Address:
    text = _ADDR_STR.get(address)
    if text is None:
        if len(_ADDR_STR) >= _CACHE_MAX:
            _ADDR_STR.clear()
        text = _ADDR_STR[address] = addr_str(address)
    return text, port
