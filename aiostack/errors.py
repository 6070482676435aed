"""One place that turns an errno into the exception a stdlib user expects.

``OSError(errno, strerror)`` already returns the right subclass
(``ConnectionRefusedError`` for ECONNREFUSED, ``BlockingIOError`` for EAGAIN,
...), so raising through :func:`os_error` gives aiostack's sockets exactly the
exception types and ``.errno`` values of the ``socket`` module.
"""

from __future__ import annotations

import errno as _errno
import os

#: errno reported to a socket for an ICMP destination-unreachable code
#: (Linux ``icmp_err_convert``), with whether Linux treats it as fatal.
ICMP_UNREACH_ERRNO: dict[int, tuple[int, bool]] = {
    0: (_errno.ENETUNREACH, False),  # net unreachable
    1: (_errno.EHOSTUNREACH, False),  # host unreachable
    2: (_errno.ENOPROTOOPT, True),  # protocol unreachable
    3: (_errno.ECONNREFUSED, True),  # port unreachable
    4: (_errno.EMSGSIZE, False),  # fragmentation needed
    5: (_errno.EOPNOTSUPP, False),  # source route failed
    6: (_errno.ENETUNREACH, True),  # net unknown
    7: (_errno.EHOSTDOWN, True),  # host unknown
    8: (_errno.ENONET, True),  # source host isolated
    9: (_errno.ENETUNREACH, True),  # net administratively prohibited
    10: (_errno.EHOSTUNREACH, True),  # host administratively prohibited
    11: (_errno.ENETUNREACH, False),  # net unreachable for TOS
    12: (_errno.EHOSTUNREACH, False),  # host unreachable for TOS
    13: (_errno.EHOSTUNREACH, True),  # communication administratively prohibited
    14: (_errno.EHOSTUNREACH, True),  # host precedence violation
    15: (_errno.EHOSTUNREACH, True),  # precedence cutoff
}


def os_error(code: int, detail: str | None = None) -> OSError:
    """The stdlib exception for ``code`` (an OSError subclass where one exists)."""
    message = os.strerror(code)
    if detail:
        message = f"{message}: {detail}"
    return OSError(code, message)
