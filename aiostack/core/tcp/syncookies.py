"""SYN cookies (RFC 4987 section 3.6), bit for bit in Linux's layout.

When a listener's SYN queue is full, Linux answers a SYN without keeping any
state: the SYN-ACK's sequence number *is* the state, a cookie from which the
final ACK of the handshake lets the listener rebuild the connection
(``net/ipv4/syncookies.c``). The cookie is (``__cookie_v4_init_sequence``,
``secure_tcp_syn_cookie``)::

    cookie = H0(4-tuple) + peer_isn + (count << 24)
             + ((H1(4-tuple, count) + mss_index) mod 2**24)       (mod 2**32)

``count`` is the current minute (``tcp_cookie_time``: ``jiffies / (60*HZ)``),
``H0``/``H1`` are keyed hashes under two secrets, and ``mss_index`` selects
one of four MSS values (``msstab``). The ACK completing the handshake carries
``cookie + 1``; :meth:`SynCookies.check` (``__cookie_v4_check``) subtracts
``H0`` and the peer's ISN, reads the minute from the top 8 bits, accepts it
if less than ``MAX_SYNCOOKIE_AGE`` = 2 minutes old (so a cookie lives between
60 and 120 s, depending on when in its minute it was made), and recovers
``mss_index`` by subtracting ``H1`` for that minute. A forged or altered ACK
yields an index outside 0..3, except with probability about 4 in 2**24.

A cookie has no room for the other SYN options, so Linux hides them in the
low 6 bits of the SYN-ACK's TSval when timestamps are on
(``cookie_init_timestamp``): window scale in bits 0-3 (15 = none), SACK-
permitted in bit 4, ECN in bit 5. The peer echoes TSval in the ACK's TSecr,
and :func:`cookie_timestamp_decode` reads them back. Without timestamps, a
connection built from a cookie has no window scaling and no SACK: the cost
Linux accepts under a SYN flood.

Deviations from Linux: the keyed hash is BLAKE2s from :mod:`hashlib`, not
SipHash (both PRFs under a secret key; see :mod:`aiostack.core.tcp.isn`), and
the two secrets are passed in rather than drawn at boot, so tests are
deterministic. Everything else (bit layout, MSS table and rounding, the age
check, option encoding) is Linux's. The listener's gate, accepting cookies
only if the SYN queue overflowed within the last two minutes
(``tcp_synq_no_recent_overflow``), is :func:`recent_overflow`.
"""

from __future__ import annotations

import hashlib
import math
import struct
from dataclasses import dataclass

__all__ = [
    "COOKIE_MSS_TABLE",
    "MAX_SYNCOOKIE_AGE",
    "TCP_SYNCOOKIE_PERIOD",
    "TCP_SYNCOOKIE_VALID",
    "CookieOptions",
    "SynCookies",
    "cookie_init_timestamp",
    "cookie_timestamp_decode",
    "recent_overflow",
]

#: ``msstab``: the MSS values a cookie can carry, sorted (IPv4). 1460 is the
#: most common MSS on the Internet, 1440/1452 PPPoE, 1300 tunnels, 536 the
#: RFC 9293 default.
COOKIE_MSS_TABLE: tuple[int, ...] = (536, 1300, 1440, 1460)
#: ``TCP_SYNCOOKIE_PERIOD``: seconds per ``count`` step.
TCP_SYNCOOKIE_PERIOD = 60
#: ``MAX_SYNCOOKIE_AGE``: a cookie is valid for counts ``c`` and ``c + 1``.
MAX_SYNCOOKIE_AGE = 2
#: ``TCP_SYNCOOKIE_VALID``: seconds cookies are honoured after the last overflow.
TCP_SYNCOOKIE_VALID = MAX_SYNCOOKIE_AGE * TCP_SYNCOOKIE_PERIOD

COOKIEBITS = 24
COOKIEMASK = (1 << COOKIEBITS) - 1
#: TSval bits of ``cookie_init_timestamp``.
TS_OPT_WSCALE_MASK = 0xF
TS_OPT_SACK = 1 << 4
TS_OPT_ECN = 1 << 5
TSBITS = 6

_MASK32 = 0xFFFFFFFF
_TS_HZ = 1000
_INPUT = struct.Struct("!IIII")


class SynCookies:
    """Make and check SYN cookies for one stack.

    ``secret0`` keys the per-connection hash ``H0`` and ``secret1`` the
    per-minute hash ``H1`` (Linux's ``syncookie_secret[0..1]``); each 16 to
    32 bytes. Addresses and ports are always those *of the received
    segment*: ``src`` is the peer, ``dst`` is us, for the SYN and for the
    ACK alike, exactly as Linux reads them from ``iph``/``th``.
    """

    __slots__ = ("_h0", "_h1")

    def __init__(self, secret0: bytes, secret1: bytes) -> None:
        for secret in (secret0, secret1):
            if not 16 <= len(secret) <= 32:
                raise ValueError(f"secrets must be 16..32 bytes, got {len(secret)}")
        self._h0 = hashlib.blake2s(key=secret0, digest_size=4, person=b"syncook0")
        self._h1 = hashlib.blake2s(key=secret1, digest_size=4, person=b"syncook1")

    def _hash(self, h: hashlib.blake2s, src: int, dst: int, ports: int, count: int) -> int:
        """``cookie_hash``: the keyed hash of ``(saddr, daddr, sport << 16 | dport, count)``."""
        h = h.copy()
        h.update(_INPUT.pack(src, dst, ports, count & _MASK32))
        return int.from_bytes(h.digest(), "big")

    @staticmethod
    def count(now: float) -> int:
        """``tcp_cookie_time``: the minute number at ``now``."""
        return math.floor(now / TCP_SYNCOOKIE_PERIOD) & _MASK32

    @staticmethod
    def mss_index(mss: int) -> int:
        """The largest table entry not above ``mss`` (index 0 for anything smaller)."""
        for index in range(len(COOKIE_MSS_TABLE) - 1, 0, -1):
            if mss >= COOKIE_MSS_TABLE[index]:
                return index
        return 0

    def init_sequence(
        self,
        now: float,
        src_addr: int,
        dst_addr: int,
        src_port: int,
        dst_port: int,
        seq: int,
        mss: int,
    ) -> tuple[int, int]:
        """Our ISN for a SYN answered with a cookie (``__cookie_v4_init_sequence``).

        ``seq`` is the SYN's sequence number and ``mss`` the MSS we would use
        for this peer (its advertised MSS clamped by ours). Returns
        ``(cookie, mss)``: the SYN-ACK's sequence number and the MSS rounded
        down to the table, which is what the connection will use.
        """
        index = self.mss_index(mss)
        count = self.count(now)
        ports = (src_port << 16) | dst_port
        cookie = (
            self._hash(self._h0, src_addr, dst_addr, ports, 0)
            + seq
            + (count << COOKIEBITS)
            + ((self._hash(self._h1, src_addr, dst_addr, ports, count) + index) & COOKIEMASK)
        )
        return cookie & _MASK32, COOKIE_MSS_TABLE[index]

    def check(
        self,
        now: float,
        src_addr: int,
        dst_addr: int,
        src_port: int,
        dst_port: int,
        seq: int,
        ack: int,
    ) -> int:
        """Validate the ACK completing a cookie handshake (``__cookie_v4_check``).

        ``seq`` and ``ack`` are the ACK segment's own fields (the peer's ISN
        + 1 and our cookie + 1). Returns the MSS the cookie encoded, or 0 if
        the cookie is forged, altered, or older than two minutes.
        """
        cookie = (ack - 1) & _MASK32
        sseq = (seq - 1) & _MASK32
        ports = (src_port << 16) | dst_port
        count = self.count(now)
        cookie = (cookie - self._hash(self._h0, src_addr, dst_addr, ports, 0) - sseq) & _MASK32
        diff = (count - (cookie >> COOKIEBITS)) & (_MASK32 >> COOKIEBITS)
        if diff >= MAX_SYNCOOKIE_AGE:
            return 0
        h1 = self._hash(self._h1, src_addr, dst_addr, ports, count - diff)
        index = (cookie - h1) & COOKIEMASK
        return COOKIE_MSS_TABLE[index] if index < len(COOKIE_MSS_TABLE) else 0


@dataclass(frozen=True, slots=True)
class CookieOptions:
    """SYN options recovered from a cookie ACK's timestamp echo.

    ``wscale`` is the peer's window shift (``None``: it offered none, so
    neither side scales); ``timestamps`` says the ACK carried timestamps
    at all (without them the other fields are necessarily off).
    """

    timestamps: bool
    wscale: int | None
    sack: bool
    ecn: bool


def cookie_init_timestamp(now: float, *, wscale: int | None, sack: bool, ecn: bool) -> int:
    """The TSval for a cookie SYN-ACK, options in its low 6 bits (``cookie_init_timestamp``).

    ``wscale`` is the shift the *peer* offered (``None`` if it sent no
    window-scale option), ``sack``/``ecn`` whether it offered them. The
    value is the 1 ms timestamp clock at ``now`` with its low bits replaced,
    stepped back by 64 ticks if that would put it in the future: later
    segments carry the ordinary clock, and TSval must never go backwards
    (PAWS at the peer). Add the connection's timestamp offset (modulo
    2**32) before sending, as Linux adds ``ts_off``.
    """
    options = TS_OPT_WSCALE_MASK if wscale is None else wscale & TS_OPT_WSCALE_MASK
    if sack:
        options |= TS_OPT_SACK
    if ecn:
        options |= TS_OPT_ECN
    ts_now = math.floor(now * _TS_HZ)
    ts = ((ts_now >> TSBITS) << TSBITS) | options
    if ts > ts_now:
        ts -= 1 << TSBITS
    return ts & _MASK32


def cookie_timestamp_decode(
    tsecr: int | None,
    *,
    timestamps_enabled: bool = True,
    sack_enabled: bool = True,
    window_scaling_enabled: bool = True,
) -> CookieOptions | None:
    """Options hidden in a cookie ACK's TSecr (``cookie_timestamp_decode``).

    ``tsecr`` is the echoed value with our timestamp offset already
    subtracted (mod 2**32), or ``None`` if the ACK had no timestamp option.
    The ``*_enabled`` flags are ``net.ipv4.tcp_timestamps``, ``tcp_sack`` and
    ``tcp_window_scaling``: an ACK claiming an option we have disabled
    cannot be a reply to our SYN-ACK, so it returns ``None`` (reject), as
    Linux does. Linux's ``tcp_sack``/``tcp_window_scaling`` checks happen
    after the bits are read, in the same order here.
    """
    if tsecr is None:
        return CookieOptions(timestamps=False, wscale=None, sack=False, ecn=False)
    if not timestamps_enabled:
        return None
    sack = bool(tsecr & TS_OPT_SACK)
    if sack and not sack_enabled:
        return None
    ecn = bool(tsecr & TS_OPT_ECN)
    wscale = tsecr & TS_OPT_WSCALE_MASK
    if wscale == TS_OPT_WSCALE_MASK:
        return CookieOptions(timestamps=True, wscale=None, sack=sack, ecn=ecn)
    if not window_scaling_enabled:
        return None
    return CookieOptions(timestamps=True, wscale=wscale, sack=sack, ecn=ecn)


def recent_overflow(now: float, last_overflow: float | None) -> bool:
    """Whether cookie ACKs are honoured now (the negation of ``tcp_synq_no_recent_overflow``).

    A listener only sends cookies after its SYN queue overflowed, so an ACK
    that looks like a cookie more than :data:`TCP_SYNCOOKIE_VALID` seconds
    after the last overflow is not checked at all: that closes the cookie
    path to brute-force guessing while there is no flood.
    """
    return last_overflow is not None and now - last_overflow <= TCP_SYNCOOKIE_VALID
