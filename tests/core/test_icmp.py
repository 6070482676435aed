"""ICMP: Linux's two rate limits, error decoding, and when an error may be sent at all."""

from __future__ import annotations

import errno

import pytest

from aiostack.core import icmp
from aiostack.core.counters import Counters
from aiostack.core.icmp import BURST_FACTOR, RateLimiter
from aiostack.settings import Settings
from aiostack.wire import icmpv4, ipv4
from aiostack.wire.errors import ParseError
from aiostack.wire.icmpv4 import IcmpType, UnreachCode
from aiostack.wire.ipv4 import IpProto, addr

from .builders import (
    FAR,
    PEER,
    US,
    echo_request,
    fragment_at,
    icmp_error_about,
    icmp_message,
    icmp_packet,
    ip_packet,
    udp_packet,
)

UNREACH = IcmpType.DEST_UNREACH
T0 = 500.0


def limiter(**overrides: int) -> tuple[RateLimiter, Counters]:
    settings = Settings()
    for name, value in overrides.items():
        settings.set(name, value)
    counters = Counters()
    return RateLimiter(settings, counters), counters


def allowed(lim: RateLimiter, now: float, count: int, peer: int = PEER, kind: int = UNREACH) -> int:
    return sum(lim.allow(now, kind, peer) for _ in range(count))


# -- per-peer limit -----------------------------------------------------------


def test_per_peer_burst_of_six_then_one_per_ratelimit() -> None:
    lim, counters = limiter()
    assert BURST_FACTOR == 6
    assert allowed(lim, T0, 10) == 6
    assert counters.IcmpOutRateLimitHost == 4
    assert counters.IcmpOutRateLimitGlobal == 0
    # Times are binary fractions so that the token arithmetic is exact.
    assert allowed(lim, T0 + 0.875, 1) == 0
    assert allowed(lim, T0 + 1.0, 3) == 1
    assert allowed(lim, T0 + 2.0, 1) == 1
    assert allowed(lim, T0 + 2.5, 1) == 0


def test_per_peer_bucket_refills_to_six_at_most() -> None:
    lim, _ = limiter()
    assert allowed(lim, T0, 6) == 6
    assert allowed(lim, T0 + 3600, 10) == 6
    assert allowed(lim, T0 + 3600 + 2, 10) == 2


def test_peers_are_limited_separately() -> None:
    lim, _ = limiter()
    assert allowed(lim, T0, 10, peer=PEER) == 6
    assert allowed(lim, T0, 10, peer=FAR) == 6


def test_icmp_ratelimit_setting() -> None:
    lim, _ = limiter(icmp_ratelimit=250)
    assert allowed(lim, T0, 10) == 6
    assert allowed(lim, T0 + 0.25, 10) == 1
    assert allowed(lim, T0 + 1.25, 10) == 4
    unlimited, counters = limiter(icmp_ratelimit=0)
    assert allowed(unlimited, T0, 40) == 40
    assert counters.IcmpOutRateLimitHost == 0


def test_least_recently_seen_peers_are_forgotten() -> None:
    lim, _ = limiter(icmp_msgs_burst=1_000_000)
    assert allowed(lim, T0, 6) == 6
    assert allowed(lim, T0, 1) == 0
    for i in range(icmp.MAX_PEERS):
        lim.allow(T0, UNREACH, addr("10.0.0.0") + i)
    # PEER fell out of the table: it starts over with a full bucket.
    assert allowed(lim, T0, 7) == 6


@pytest.mark.parametrize(
    "kind",
    [IcmpType.ECHO_REPLY, IcmpType.ECHO_REQUEST, IcmpType.REDIRECT, IcmpType.TIMESTAMP_REPLY],
)
def test_types_outside_ratemask_are_never_limited(kind: int) -> None:
    lim, counters = limiter(icmp_msgs_burst=5)
    assert allowed(lim, T0, 500, kind=kind) == 500
    assert counters.IcmpOutRateLimitHost == 0 and counters.IcmpOutRateLimitGlobal == 0
    # ... and they use none of the global credit.
    assert allowed(lim, T0, 5, peer=FAR) == 5


@pytest.mark.parametrize(
    "kind",
    [
        IcmpType.DEST_UNREACH,
        IcmpType.SOURCE_QUENCH,
        IcmpType.TIME_EXCEEDED,
        IcmpType.PARAM_PROBLEM,
    ],
)
def test_default_ratemask_types_are_limited(kind: int) -> None:
    lim, _ = limiter()
    assert allowed(lim, T0, 8, kind=kind) == 6


def test_ratemask_setting() -> None:
    lim, _ = limiter(icmp_ratemask=1 << IcmpType.ECHO_REPLY)
    assert allowed(lim, T0, 8, kind=IcmpType.ECHO_REPLY) == 6
    assert allowed(lim, T0, 8, kind=UNREACH) == 8


# -- global limit -------------------------------------------------------------


def test_global_burst_then_refill_at_msgs_per_sec() -> None:
    lim, counters = limiter()
    peers = [addr("10.0.0.0") + i for i in range(200)]
    # 50 (icmp_msgs_burst) at once, to as many peers: the per-peer limit is not involved.
    assert sum(lim.allow(T0, UNREACH, p) for p in peers[:60]) == 50
    assert counters.IcmpOutRateLimitGlobal == 10 and counters.IcmpOutRateLimitHost == 0
    # 1000 per second: 10 more after 10.5 ms.
    assert sum(lim.allow(T0 + 0.0105, UNREACH, p) for p in peers[60:80]) == 10
    # The credit never grows past the burst.
    assert sum(lim.allow(T0 + 60, UNREACH, p) for p in peers[80:200]) == 50


def test_global_settings() -> None:
    lim, counters = limiter(icmp_msgs_per_sec=2, icmp_msgs_burst=3)
    peers = [addr("10.0.0.0") + i for i in range(20)]
    assert sum(lim.allow(T0, UNREACH, p) for p in peers[:5]) == 3
    assert sum(lim.allow(T0 + 0.49, UNREACH, p) for p in peers[5:8]) == 0
    assert sum(lim.allow(T0 + 1.2, UNREACH, p) for p in peers[8:12]) == 2
    assert counters.IcmpOutRateLimitGlobal == 2 + 3 + 2


# -- errors we receive --------------------------------------------------------


def decode(
    icmp_type: int, code: int, rest: int = 0, original: bytes | None = None
) -> icmp.TransportError | None:
    if original is None:
        original = bytes(udp_packet(b"hello", src=US, dst=FAR, sport=40000, dport=53))
    message = icmp_error_about(original, icmp_type, code, rest)
    header, body = icmpv4.parse(message)
    return icmp.decode_error(header, body)


@pytest.mark.parametrize(
    ("icmp_type", "code", "expected", "fatal"),
    [
        (UNREACH, UnreachCode.NET, errno.ENETUNREACH, False),
        (UNREACH, UnreachCode.HOST, errno.EHOSTUNREACH, False),
        (UNREACH, UnreachCode.PROTOCOL, errno.ENOPROTOOPT, True),
        (UNREACH, UnreachCode.PORT, errno.ECONNREFUSED, True),
        (UNREACH, UnreachCode.FRAG_NEEDED, errno.EMSGSIZE, False),
        (UNREACH, UnreachCode.SOURCE_ROUTE_FAILED, errno.EOPNOTSUPP, False),
        (UNREACH, UnreachCode.ADMIN_PROHIBITED, errno.EHOSTUNREACH, True),
        (IcmpType.TIME_EXCEEDED, 0, errno.EHOSTUNREACH, False),
        (IcmpType.PARAM_PROBLEM, 0, errno.EPROTO, True),
    ],
)
def test_error_errno_like_icmp_err_convert(
    icmp_type: int, code: int, expected: int, fatal: bool
) -> None:
    err = decode(icmp_type, code)
    assert err is not None
    assert (err.errno, err.fatal) == (expected, fatal)
    assert (err.proto, err.src, err.dst, err.sport, err.dport) == (IpProto.UDP, US, FAR, 40000, 53)
    assert (err.icmp_type, err.icmp_code) == (icmp_type, code)
    assert err.mtu == 0 or code == UnreachCode.FRAG_NEEDED


@pytest.mark.parametrize("icmp_type", [IcmpType.SOURCE_QUENCH, IcmpType.REDIRECT])
def test_ignored_error_types(icmp_type: int) -> None:
    assert decode(icmp_type, 0) is None


def test_frag_needed_carries_mtu() -> None:
    err = decode(UNREACH, UnreachCode.FRAG_NEEDED, icmpv4.frag_needed_rest(1280))
    assert err is not None and err.mtu == 1280
    # The same rest word on another code is not an MTU.
    other = decode(UNREACH, UnreachCode.HOST, icmpv4.frag_needed_rest(1280))
    assert other is not None and other.mtu == 0


def test_error_about_echo_uses_identifier_and_sequence() -> None:
    ping = bytes(icmp_packet(echo_request(0xBEEF, 7, b"x" * 32), src=US, dst=FAR))
    err = decode(UNREACH, UnreachCode.HOST, original=ping)
    assert err is not None
    assert (err.proto, err.sport, err.dport) == (IpProto.ICMP, 0xBEEF, 7)


def test_error_with_truncated_quote_raises_parse_error() -> None:
    header, body = icmpv4.parse(icmp_message(UNREACH, UnreachCode.PORT, 0, b"\x45" + bytes(10)))
    with pytest.raises(ParseError):
        icmp.decode_error(header, body)


def test_echo_id_seq_of_short_quote() -> None:
    assert icmp.echo_id_seq(memoryview(b"\x08\x00\x00\x00")) == (0, 0)


# -- may_send_error -----------------------------------------------------------


def check(packet: bytes | bytearray, *, broadcast: bool = False, martian: bool = False) -> bool:
    header, _ = ipv4.parse(packet)
    return icmp.may_send_error(
        header, memoryview(packet), broadcast=broadcast, martian_source=martian
    )


def test_may_send_error_about_ordinary_datagram() -> None:
    assert check(udp_packet(b"x"))


def test_no_error_about_broadcast_or_martian_or_zero_source() -> None:
    assert not check(udp_packet(b"x"), broadcast=True)
    assert not check(udp_packet(b"x"), martian=True)
    assert not check(udp_packet(b"x", src=0))


def test_no_error_about_non_first_fragment() -> None:
    assert check(fragment_at(b"y" * 64, 0, more=True))
    assert not check(fragment_at(b"y" * 64, 64, more=True))
    assert not check(fragment_at(b"y" * 64, 64, more=False))


@pytest.mark.parametrize(
    ("inner", "ok"),
    [
        (IcmpType.ECHO_REQUEST, True),
        (IcmpType.ECHO_REPLY, True),
        (IcmpType.TIMESTAMP, True),
        (IcmpType.DEST_UNREACH, False),
        (IcmpType.TIME_EXCEEDED, False),
        (IcmpType.PARAM_PROBLEM, False),
        (IcmpType.REDIRECT, False),
        (IcmpType.SOURCE_QUENCH, False),
        (42, False),  # unknown types are assumed to be errors (Linux)
    ],
)
def test_no_error_about_icmp_error(inner: int, ok: bool) -> None:
    assert check(icmp_packet(icmp_message(inner, 0, 0, b"z" * 28))) is ok


def test_no_error_about_icmp_without_a_type_byte() -> None:
    assert not check(ip_packet(b"", proto=IpProto.ICMP))


def test_error_body_fits_in_576_bytes() -> None:
    big = bytes(udp_packet(b"q" * 2000))
    body = icmp.error_body(memoryview(big))
    assert body == big[: 576 - 20 - 8]
    small = bytes(udp_packet(b"q"))
    assert icmp.error_body(memoryview(small)) == small
