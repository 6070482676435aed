"""Initial sequence numbers (RFC 6528) and timestamp offsets, keyed per stack.

RFC 6528 section 3 defines ``ISN = M + F(localip, localport, remoteip,
remoteport, secretkey)``: ``M`` a clock ticking every 4 microseconds, ``F`` a
keyed pseudorandom function of the connection's 4-tuple. The clock makes
successive incarnations of one 4-tuple use increasing sequence numbers (so
old duplicates from a previous incarnation fall outside the new window,
RFC 9293 3.4.1); the keyed hash makes the ISN of one connection unpredictable
from another's, which is what stops off-path blind spoofing and injection
(the attack of Morris 1985 and Bellovin's RFC 1948).

Linux (``secure_tcp_seq`` in ``net/core/secure_seq.c``) uses SipHash-2-4 over
``(saddr, daddr, sport << 16 | dport)`` and a clock of 64 ns ticks
(``ktime_get_real_ns() >> 6``), not 4 us. This module follows the RFC's 4 us
by default, as the design asks, and takes ``ticks_per_second=15_625_000``
for Linux's rate. The PRF is keyed BLAKE2s from :mod:`hashlib` rather than
SipHash: both are pseudorandom functions under a 128-bit-or-more secret,
which is all RFC 6528 requires, and BLAKE2s runs in C where a pure-Python
SipHash would cost tens of microseconds per SYN. The outputs cannot match
Linux's anyway, since the key is secret.

The secret is passed in (one per stack, e.g. ``secrets.token_bytes(32)`` from
the shell): pure code draws no randomness, and tests are deterministic.

RFC 7323 section 5.4 asks for a random per-connection offset on TSval too, so
that timestamps do not reveal uptime or link connections; Linux derives it
from ``(saddr, daddr)`` with a second key (``secure_tcp_ts_off``), so every
connection between two hosts shares one timestamp clock (which PAWS across
incarnations relies on). :meth:`IsnGenerator.ts_offset` does the same, and
:func:`tcp_time_stamp` turns ``now`` into a TSval.
"""

from __future__ import annotations

import hashlib
import math
import struct

__all__ = [
    "ISN_TICKS_PER_SECOND",
    "LINUX_ISN_TICKS_PER_SECOND",
    "TCP_TS_HZ",
    "IsnGenerator",
    "tcp_time_stamp",
]

#: RFC 6528's ``M``: one tick every 4 microseconds.
ISN_TICKS_PER_SECOND = 250_000
#: Linux's ``seq_scale``: one tick every 64 ns.
LINUX_ISN_TICKS_PER_SECOND = 15_625_000
#: RFC 7323 timestamp clock rate of Linux (``TCP_TS_HZ``): 1 ms per tick.
TCP_TS_HZ = 1000

_MASK32 = 0xFFFFFFFF
_TUPLE = struct.Struct("!IIHH")
_PAIR = struct.Struct("!II")


def _keyed(secret: bytes, purpose: bytes) -> hashlib.blake2s:
    """A BLAKE2s state keyed with ``secret`` and personalised with ``purpose``.

    Personalisation separates the ISN and timestamp PRFs even when a caller
    uses one secret for both.
    """
    if not 16 <= len(secret) <= 32:
        raise ValueError(f"secret must be 16..32 bytes, got {len(secret)}")
    return hashlib.blake2s(key=secret, digest_size=4, person=purpose)


def tcp_time_stamp(now: float, ts_offset: int = 0) -> int:
    """The TSval to send at ``now``: a 1 ms clock plus the connection's offset, mod 2**32.

    Linux's ``tcp_time_stamp_ts(tp) + tp->tsoffset``. ``now`` is the stack's
    monotonic time in seconds.
    """
    return (math.floor(now * TCP_TS_HZ) + ts_offset) & _MASK32


class IsnGenerator:
    """RFC 6528 ISNs and Linux-style timestamp offsets for one stack.

    ``secret`` keys the ISN function and ``ts_secret`` (default: ``secret``,
    kept apart by personalisation) the timestamp offsets; each must be 16 to
    32 bytes. ``ticks_per_second`` is the rate of the clock term ``M``.
    """

    __slots__ = ("_seq", "_ticks_per_second", "_ts")

    def __init__(
        self,
        secret: bytes,
        ts_secret: bytes | None = None,
        *,
        ticks_per_second: int = ISN_TICKS_PER_SECOND,
    ) -> None:
        if ticks_per_second <= 0:
            raise ValueError(f"ticks_per_second must be positive, got {ticks_per_second}")
        self._seq = _keyed(secret, b"tcp-isn")
        self._ts = _keyed(secret if ts_secret is None else ts_secret, b"tcp-tsof")
        self._ticks_per_second = ticks_per_second

    def clock(self, now: float) -> int:
        """``M`` at ``now`` (seconds): whole ticks, modulo 2**32."""
        return math.floor(now * self._ticks_per_second) & _MASK32

    def hash(self, local_addr: int, local_port: int, remote_addr: int, remote_port: int) -> int:
        """``F``: the keyed 32-bit hash of the 4-tuple (``secure_tcp_seq`` before ``seq_scale``).

        Addresses are IPv4 addresses as ints, ports as ints. The tuple is
        always ours-then-theirs, so the two ends of a connection (two
        stacks with different keys anyway) hash different inputs.
        """
        h = self._seq.copy()
        h.update(_TUPLE.pack(local_addr, remote_addr, local_port, remote_port))
        return int.from_bytes(h.digest(), "big")

    def isn(
        self, now: float, local_addr: int, local_port: int, remote_addr: int, remote_port: int
    ) -> int:
        """The initial send sequence number for this 4-tuple at ``now`` (RFC 6528 section 3)."""
        f = self.hash(local_addr, local_port, remote_addr, remote_port)
        return (f + self.clock(now)) & _MASK32

    def ts_offset(self, local_addr: int, remote_addr: int) -> int:
        """The TSval offset for connections between two hosts (``secure_tcp_ts_off``).

        Keyed on the addresses only, like Linux: all connections from us to
        one peer share a timestamp clock, which keeps PAWS working across
        successive connections and lets SYN cookies recover the offset from
        an ACK alone. The caller uses 0 when ``net.ipv4.tcp_timestamps`` is
        not 1 (Linux: random offsets only in mode 1).
        """
        h = self._ts.copy()
        h.update(_PAIR.pack(local_addr, remote_addr))
        return int.from_bytes(h.digest(), "big")
