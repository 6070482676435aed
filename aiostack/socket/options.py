"""Socket option and ioctl numbers Linux uses that the stdlib does not name, and value rules."""

from __future__ import annotations

import errno
import struct

from aiostack.errors import os_error

IP_RECVERR = 11
#: ioctl numbers (``linux/sockios.h``): bytes readable / bytes not yet sent or acknowledged.
SIOCINQ = 0x541B
SIOCOUTQ = 0x5411
#: The floors Linux puts under SO_RCVBUF and SO_SNDBUF (``SOCK_MIN_RCVBUF``/``SNDBUF``).
MIN_RCVBUF = 2304
MIN_SNDBUF = 4608


def as_int(value: int | bytes) -> int:
    """An option value given as an int, or as the C int bytes ``setsockopt`` takes."""
    if isinstance(value, int):
        return value
    if len(value) < 4:
        raise os_error(errno.EINVAL)
    return int(struct.unpack_from("i", value)[0])


def buffer_size(requested: int, maximum: int, minimum: int) -> int:
    """SO_RCVBUF/SO_SNDBUF: clamp to the sysctl maximum, then double (socket(7)).

    The kernel compares the value as an unsigned 32-bit number
    (``min_t(u32, val, sysctl_rmem_max)``), so a negative one clamps to the maximum.
    """
    return max(min(requested & 0xFFFFFFFF, maximum) * 2, minimum)
