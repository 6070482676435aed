"""ICMPv4: echo, error messages about our traffic, and errors we send.

Errors we send follow RFC 1122 3.2.2 and RFC 1812 4.3.2.7 as Linux applies
them in ``icmp_send``: never about an ICMP error, a datagram sent to a
broadcast or multicast address (link or IP), a fragment other than the
first, or a datagram from an address that is not a unicast host. The quote
is the original IP header and as much of its payload as keeps the whole
error within 576 bytes. Sending is rate-limited twice, as in Linux:

- per peer, for the types in ``icmp_ratemask`` (unreachable, source quench,
  time exceeded, parameter problem): a token bucket that refills one token
  per ``icmp_ratelimit`` ms and holds at most 6 (``inet_peer_xrlim_allow``,
  ``XRLIM_BURST_FACTOR``), counted as ``IcmpOutRateLimitHost``;
- globally: ``icmp_msgs_per_sec`` with a burst of ``icmp_msgs_burst``
  (``icmp_global_allow``), counted as ``IcmpOutRateLimitGlobal``.

Errors we receive are decoded down to the 4-tuple of the datagram they
quote and handed to the transport as a :class:`TransportError` with the errno
Linux's ``icmp_err_convert`` gives.
"""

from __future__ import annotations

import errno
from collections import OrderedDict
from dataclasses import dataclass

from aiostack.core.counters import Counters
from aiostack.errors import ICMP_UNREACH_ERRNO
from aiostack.settings import Settings
from aiostack.wire import icmpv4
from aiostack.wire.errors import ParseError
from aiostack.wire.icmpv4 import IcmpHeader, IcmpType
from aiostack.wire.ipv4 import Ipv4Header

#: Largest ICMP error datagram (RFC 1812 4.3.2.3).
MAX_ERROR_DATAGRAM = 576
#: Per-peer burst, in units of ``icmp_ratelimit`` (Linux XRLIM_BURST_FACTOR).
BURST_FACTOR = 6
#: Peers remembered by the per-peer limiter; the least recently seen go first.
MAX_PEERS = 4096
#: Informational types: an ICMP datagram of any other type is never answered with an error.
INFO_TYPES = frozenset(
    {IcmpType.ECHO_REPLY, IcmpType.ECHO_REQUEST, IcmpType.TIMESTAMP, IcmpType.TIMESTAMP_REPLY}
)
#: Precedence "internetwork control" that Linux sets on the errors it sends.
TOS_INTERNET_CONTROL = 0xC0


@dataclass(slots=True)
class TransportError:
    """An ICMP error about a datagram we sent, for the transport to report.

    Addresses and ports are those of the quoted (our own) datagram: ``src``
    and ``sport`` are ours, ``dst`` and ``dport`` the peer's.
    """

    proto: int
    src: int
    dst: int
    sport: int
    dport: int
    errno: int
    #: Linux's "hard" errors: ones that abort a connection attempt.
    fatal: bool
    icmp_type: int
    icmp_code: int
    #: Next-hop MTU of a fragmentation-needed error, else 0.
    mtu: int = 0


@dataclass(slots=True)
class ErrorToSend:
    """An ICMP error the IP layer should send: type/code/rest and the body to quote."""

    dst: int
    src: int
    type: int
    code: int
    rest: int
    body: bytes


class RateLimiter:
    """Linux's two ICMP limits; see the module docstring. Pure."""

    def __init__(self, settings: Settings, counters: Counters) -> None:
        self.settings = settings
        self.counters = counters
        self._peers: OrderedDict[int, tuple[float, float]] = OrderedDict()
        self._global_credit = float(settings.icmp_msgs_burst)
        self._global_stamp: float | None = None

    def allow(self, now: float, icmp_type: int, peer: int) -> bool:
        settings = self.settings
        if not (settings.icmp_ratemask >> icmp_type) & 1:
            return True
        if not self._global_allow(now):
            self.counters.IcmpOutRateLimitGlobal += 1
            return False
        period = settings.icmp_ratelimit / 1000
        if period <= 0:
            return True
        # A new peer starts with a full bucket, like Linux's rate_last set 60 s back.
        tokens, last = self._peers.pop(peer, (BURST_FACTOR * period, now))
        tokens = min(tokens + (now - last), BURST_FACTOR * period)
        allowed = tokens >= period
        if allowed:
            tokens -= period
        self._peers[peer] = (tokens, now)
        if len(self._peers) > MAX_PEERS:
            self._peers.popitem(last=False)
        if not allowed:
            self.counters.IcmpOutRateLimitHost += 1
        return allowed

    def _global_allow(self, now: float) -> bool:
        settings = self.settings
        if self._global_stamp is not None:
            elapsed = now - self._global_stamp
            self._global_credit = min(
                float(settings.icmp_msgs_burst),
                self._global_credit + elapsed * settings.icmp_msgs_per_sec,
            )
        self._global_stamp = now
        if self._global_credit >= 1:
            self._global_credit -= 1
            return True
        return False


def error_errno(header: IcmpHeader) -> tuple[int, bool] | None:
    """errno and fatality for an ICMP error, as ``icmp_err_convert`` and ``icmp_unreach``."""
    if header.type == IcmpType.DEST_UNREACH:
        return ICMP_UNREACH_ERRNO.get(header.code, (errno.EHOSTUNREACH, False))
    if header.type == IcmpType.TIME_EXCEEDED:
        return errno.EHOSTUNREACH, False
    if header.type == IcmpType.PARAM_PROBLEM:
        return errno.EPROTO, True
    return None


def decode_error(header: IcmpHeader, body: memoryview) -> TransportError | None:
    """The transport-level meaning of an ICMP error, or None if it names nothing we sent."""
    meaning = error_errno(header)
    if meaning is None:
        return None
    proto, src, dst, sport, dport, _ihl, rest = icmpv4.quoted_original(body)
    if proto == icmpv4.PROTO:
        sport, dport = echo_id_seq(rest)
    mtu = header.next_hop_mtu if header.type == IcmpType.DEST_UNREACH and header.code == 4 else 0
    return TransportError(
        proto, src, dst, sport, dport, meaning[0], meaning[1], header.type, header.code, mtu
    )


def echo_id_seq(message: memoryview) -> tuple[int, int]:
    """Identifier and sequence of a quoted echo message: its "ports" for matching.

    An ICMP error about our echo request is routed to the pinger by these, the
    way a UDP error is routed by ports; (0, 0) when the quote is too short.
    """
    if len(message) < icmpv4.HEADER_LEN:
        return 0, 0
    if message[0] != IcmpType.ECHO_REQUEST or message[1] != 0:
        # ping_err: only an echo request of ours names a pinger (ping_supported).
        return 0, 0
    return (message[4] << 8) | message[5], (message[6] << 8) | message[7]


def may_send_error(
    header: Ipv4Header, raw: memoryview, *, broadcast: bool, martian_source: bool
) -> bool:
    """RFC 1122 3.2.2: whether an error may be sent about this datagram at all."""
    if broadcast or martian_source or header.src == 0:
        return False
    if header.frag_offset:
        return False
    if header.proto == icmpv4.PROTO:
        hlen = header.header_len
        if len(raw) <= hlen:
            return False
        if raw[hlen] not in INFO_TYPES:
            return False
    return True


def error_body(raw: memoryview) -> bytes:
    """What an ICMP error quotes: as much of the datagram as fits in 576 bytes."""
    room = MAX_ERROR_DATAGRAM - 20 - icmpv4.HEADER_LEN
    return bytes(raw[:room])


def parse_or_none(message: memoryview, verify: bool) -> tuple[IcmpHeader, memoryview] | None:
    try:
        return icmpv4.parse(message, verify)
    except ParseError:
        return None
