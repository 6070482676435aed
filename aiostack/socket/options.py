"""Socket option and ioctl numbers Linux uses that the stdlib does not name, and value rules."""

from __future__ import annotations

import errno
import struct
from socket import AF_UNSPEC

from aiostack.errors import os_error

IP_RECVERR = 11
#: ioctl numbers (``linux/sockios.h``): bytes readable / bytes not yet sent or acknowledged.
SIOCINQ = 0x541B
SIOCOUTQ = 0x5411
#: ioctl number (``asm-generic/sockios.h``): is the next byte the urgent mark?
SIOCATMARK = 0x8905
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


#: ``struct timeval`` as the stdlib passes it on 64-bit Linux (two C longs).
_TIMEVAL = struct.Struct("@ll")
USEC_PER_SEC = 1_000_000


def parse_timeval(value: int | bytes) -> float | None:
    """SO_RCVTIMEO/SO_SNDTIMEO value -> seconds (None: no timeout), as ``sock_set_timeout``.

    Shorter than a timeval: EINVAL (an int, being 4 bytes, is too short);
    tv_usec outside 0..999999: EDOM; {0, 0}: no timeout; a negative tv_sec:
    a zero timeout, so the blocking call fails at once (a Linux quirk, kept).
    """
    if isinstance(value, int) or len(value) < _TIMEVAL.size:
        raise os_error(errno.EINVAL)
    sec, usec = (int(v) for v in _TIMEVAL.unpack_from(value))
    if not 0 <= usec < USEC_PER_SEC:
        raise os_error(errno.EDOM)
    if sec < 0:
        return 0.0
    if sec == 0 and usec == 0:
        return None
    return sec + usec / USEC_PER_SEC


def pack_timeval(seconds: float | None) -> bytes:
    """The timeval ``getsockopt`` reports: {0, 0} for none (and for a zero timeout)."""
    if not seconds:
        return _TIMEVAL.pack(0, 0)
    sec = int(seconds)
    return _TIMEVAL.pack(sec, round((seconds - sec) * USEC_PER_SEC))


def is_unspec(address: object) -> bool:
    """Whether a ``connect`` address is AF_UNSPEC (the disconnect request; see Socket.connect)."""
    return type(address) is not bool and isinstance(address, int) and address == AF_UNSPEC


def buffer_size(requested: int, maximum: int, minimum: int) -> int:
    """SO_RCVBUF/SO_SNDBUF: clamp to the sysctl maximum, then double (socket(7)).

    The kernel compares the value as an unsigned 32-bit number
    (``min_t(u32, val, sysctl_rmem_max)``), so a negative one clamps to the maximum.
    """
    return max(min(requested & 0xFFFFFFFF, maximum) * 2, minimum)


def ip_ttl(number: int) -> int | None:
    """IP_TTL as ``ip_setsockopt`` takes it: 1..255, or -1 for the route's default (None).

    Anything else is EINVAL. Shared by every socket type that sets its own TTL.
    """
    if not (number == -1 or 1 <= number <= 255):
        raise os_error(errno.EINVAL)
    return None if number == -1 else number
