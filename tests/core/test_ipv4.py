"""IPv4 layer: input validation and its MIB counters, ICMP handling, output and fragmentation."""

from __future__ import annotations

import errno
import struct
from collections.abc import Callable

import pytest

from aiostack.core.icmp import TransportError
from aiostack.core.udp import UdpEndpoint
from aiostack.wire import icmpv4
from aiostack.wire.checksum import internet_checksum
from aiostack.wire.icmpv4 import IcmpType, TimeExceededCode, UnreachCode
from aiostack.wire.ipv4 import IpProto, addr

from .builders import (
    FAR,
    HEADROOM,
    LIMITED_BROADCAST,
    NEIGHBOR,
    PEER,
    SUBNET_BROADCAST,
    US,
    Host,
    Sent,
    as_datagram,
    echo_request,
    fragments,
    icmp_error_about,
    icmp_message,
    icmp_packet,
    ip_packet,
    make_host,
    make_ip_only,
    udp_packet,
    udp_segment,
)

BCAST_IDS = ["subnet", "limited"]
T0 = 1000.0
UNKNOWN_PROTO = 253  # RFC 3692 experimentation


def rechecksum(packet: bytearray) -> bytearray:
    hlen = (packet[0] & 0xF) << 2
    packet[10:12] = b"\0\0"
    struct.pack_into("!H", packet, 10, internet_checksum(packet[:hlen]))
    return packet


def only(sent: list[Sent]) -> Sent:
    assert len(sent) == 1, sent
    return sent[0]


def send(
    host: Host,
    payload: bytes,
    dst: int,
    *,
    df: bool | None = None,
    ttl: int | None = None,
    tos: int = 0,
) -> int:
    ip = host.ip
    buf = ip.alloc(len(payload))
    buf[ip.transport_offset :] = payload
    return ip.output(T0, buf, src=US, dst=dst, proto=UNKNOWN_PROTO, df=df, ttl=ttl, tos=tos)


def payloads(sent: list[Sent]) -> list[tuple[int, int, bool, bool]]:
    """(payload length, byte offset, MF, DF) of each packet."""
    return [
        (len(s.payload), s.header.frag_offset, s.header.more_fragments, s.header.dont_fragment)
        for s in sent
    ]


# -- input: header validation -------------------------------------------------


def test_valid_datagram_is_delivered() -> None:
    host = make_host()
    packet = udp_packet(b"hello")
    dgram = as_datagram(host.receive(T0, packet))
    assert (dgram.header.src, dgram.header.dst, dgram.header.proto) == (PEER, US, IpProto.UDP)
    assert bytes(dgram.payload) == udp_segment(b"hello")
    assert bytes(dgram.raw) == bytes(packet)
    assert not dgram.broadcast and not dgram.csum_ok
    c = host.counters
    assert (c.IpInReceives, c.IpInDelivers, c.IpInHdrErrors, c.IpInAddrErrors) == (1, 1, 0, 0)
    assert c.drops == {}


def test_link_padding_is_trimmed() -> None:
    host = make_host()
    packet = udp_packet(b"hi") + bytes(20)  # Ethernet pads to 60 bytes
    dgram = as_datagram(host.receive(T0, packet))
    assert bytes(dgram.payload) == udp_segment(b"hi")
    assert len(dgram.raw) == 30


def _bad_version() -> bytearray:
    p = udp_packet(b"x")
    p[0] = 0x65
    return rechecksum(p)


def _bad_ihl() -> bytearray:
    p = udp_packet(b"x" * 20)
    p[0] = 0x44
    return p


def _bad_checksum() -> bytearray:
    p = udp_packet(b"x")
    p[10] ^= 0xFF
    return p


def _total_below_ihl() -> bytearray:
    p = udp_packet(b"x")
    struct.pack_into("!H", p, 2, 19)
    return rechecksum(p)


def _total_beyond_data() -> bytearray:
    return udp_packet(b"x" * 100)[:-10]


def _shorter_than_header() -> bytearray:
    return udp_packet(b"x")[:19]


def _shorter_than_ihl() -> bytearray:
    p = ip_packet(b"x" * 30, options=b"\x94\x04\x00\x00" + b"\x01" * 4)
    return p[:24]


@pytest.mark.parametrize(
    ("make", "reason", "hdr", "csum", "trunc"),
    [
        (_bad_version, "bad_version", 1, 0, 0),
        (_bad_ihl, "bad_header_length", 1, 0, 0),
        (_bad_checksum, "bad_checksum", 1, 1, 0),
        (_total_below_ihl, "bad_total_length", 1, 0, 0),
        # Linux ip_rcv_core: a frame shorter than its total length is the
        # only "truncated" packet; one too short for the header is a header error.
        (_total_beyond_data, "truncated", 0, 0, 1),
        (_shorter_than_header, "truncated", 1, 0, 0),
        (_shorter_than_ihl, "truncated", 1, 0, 0),
        (bytearray, "truncated", 1, 0, 0),
    ],
)
def test_header_errors_counted_like_ip_rcv_core(
    make: Callable[[], bytearray], reason: str, hdr: int, csum: int, trunc: int
) -> None:
    host = make_host()
    assert host.receive(T0, make()) is None
    c = host.counters
    assert (c.IpInHdrErrors, c.IpInCsumErrors, c.IpInTruncatedPkts) == (hdr, csum, trunc)
    assert c.IpInReceives == 1 and c.IpInDelivers == 0
    assert c.drops == {f"ipv4.{reason}": 1}
    assert host.sent() == []


# -- input: addresses ---------------------------------------------------------


def test_not_for_us_is_an_address_error_without_icmp() -> None:
    host = make_host()
    assert host.receive(T0, udp_packet(b"x", dst=NEIGHBOR)) is None
    assert host.receive(T0, udp_packet(b"x", dst=FAR)) is None
    assert host.counters.IpInAddrErrors == 2
    assert host.counters.drops == {"ipv4.not_for_us": 2}
    assert host.sent() == []


def test_multicast_we_did_not_join_is_dropped() -> None:
    host = make_host()
    assert host.receive(T0, udp_packet(b"x", dst=addr("224.0.0.251"))) is None
    assert host.counters.IpInAddrErrors == 1
    assert host.counters.drops == {"ipv4.multicast": 1}


@pytest.mark.parametrize("dst", [SUBNET_BROADCAST, LIMITED_BROADCAST], ids=BCAST_IDS)
def test_broadcast_is_accepted_and_marked(dst: int) -> None:
    host = make_host()
    dgram = as_datagram(host.receive(T0, udp_packet(b"x", dst=dst)))
    assert dgram.broadcast
    assert host.counters.IpInBcastPkts == 1 and host.counters.IpInDelivers == 1


@pytest.mark.parametrize(
    "src",
    [
        "127.0.0.1",
        "224.0.0.5",
        "198.18.0.255",
        "255.255.255.255",
        "0.0.0.0",
        "0.0.0.7",
        "198.18.0.2",  # our own address: spoofed (fib_validate_source)
    ],
)
def test_martian_source_is_dropped_without_icmp(src: str) -> None:
    host = make_ip_only()
    # An unknown protocol would otherwise earn a protocol unreachable.
    assert host.receive(T0, udp_packet(b"x", src=addr(src))) is None
    c = host.counters
    assert c.IpInAddrErrors == 1 and c.drops == {"ipv4.martian_source": 1}
    assert c.IpInUnknownProtos == 0 and host.sent() == []


def test_zero_source_to_limited_broadcast_is_accepted() -> None:
    # Linux accepts 0.0.0.0 -> 255.255.255.255 (DHCP clients): brd_input.
    host = make_host()
    dgram = as_datagram(host.receive(T0, udp_packet(b"x", src=0, dst=LIMITED_BROADCAST)))
    assert dgram.broadcast and dgram.header.src == 0
    assert host.receive(T0, udp_packet(b"x", src=0, dst=SUBNET_BROADCAST)) is None
    assert host.counters.drops == {"ipv4.martian_source": 1}


# -- input: options -----------------------------------------------------------

LSRR = bytes([0x83, 7, 4, 0, 0, 0, 0, 0])
SSRR = bytes([0x89, 7, 4, 0, 0, 0, 0, 0])
RECORD_ROUTE = bytes([0x07, 7, 4, 0, 0, 0, 0, 0])
ROUTER_ALERT = bytes([0x94, 4, 0, 0])


@pytest.mark.parametrize("options", [LSRR, SSRR, b"\x01\x01\x01\x01" + LSRR, ROUTER_ALERT + SSRR])
def test_source_route_options_are_refused(options: bytes) -> None:
    host = make_host()
    packet = ip_packet(udp_segment(b"x"), options=options)
    assert host.receive(T0, packet) is None
    c = host.counters
    assert c.IpInDiscards == 1 and c.drops == {"ipv4.source_route": 1}
    assert c.IpInDelivers == 0 and host.sent() == []


@pytest.mark.parametrize(
    "options",
    [RECORD_ROUTE, ROUTER_ALERT, b"\x01\x01\x01\x00", b"\x00" + LSRR[:7], ROUTER_ALERT + b"\0" * 4],
)
def test_harmless_options_are_accepted(options: bytes) -> None:
    host = make_host()
    dgram = as_datagram(host.receive(T0, ip_packet(udp_segment(b"x"), options=options)))
    assert dgram.header.options == options


@pytest.mark.parametrize(
    "options",
    [
        bytes([0x44, 1, 0, 0]),  # option length below 2
        bytes([0x07, 12, 4, 0]),  # runs past the header
        bytes([0x01, 0x01, 0x01, 0x07]),  # length byte missing
    ],
)
def test_malformed_options_are_header_errors(options: bytes) -> None:
    host = make_host()
    assert host.receive(T0, ip_packet(udp_segment(b"x"), options=options)) is None
    assert host.counters.IpInHdrErrors == 1
    assert host.counters.drops == {"ipv4.bad_options": 1}


# -- input: protocols ---------------------------------------------------------


def test_unknown_protocol_gets_protocol_unreachable() -> None:
    host = make_ip_only()
    packet = ip_packet(b"payload!" * 4, proto=UNKNOWN_PROTO, tos=0x10)
    assert host.receive(T0, packet) is None
    c = host.counters
    assert c.IpInUnknownProtos == 1 and c.IpInDelivers == 0
    out = only(host.sent())
    assert out.next_hop == PEER
    assert (out.header.src, out.header.dst, out.header.proto) == (US, PEER, IpProto.ICMP)
    assert out.header.ttl == 64
    # Linux: RT_TOS(original) | IPTOS_PREC_INTERNETCONTROL.
    assert out.header.tos == 0xC0 | 0x10
    icmp_header, body = out.icmp()
    assert (icmp_header.type, icmp_header.code) == (IcmpType.DEST_UNREACH, UnreachCode.PROTOCOL)
    assert body == bytes(packet)
    assert (c.IcmpOutMsgs, c.IcmpOutDestUnreachs, c.IpOutRequests) == (1, 1, 1)


def test_protocol_unreachable_to_far_sender_goes_via_gateway() -> None:
    host = make_ip_only()
    host.receive(T0, ip_packet(b"x", src=FAR, proto=UNKNOWN_PROTO))
    out = only(host.sent())
    assert out.next_hop == PEER and out.header.dst == FAR


def test_protocol_unreachable_quote_is_capped() -> None:
    host = make_ip_only()
    packet = ip_packet(b"z" * 1400, proto=UNKNOWN_PROTO)
    host.receive(T0, packet)
    out = only(host.sent())
    _, body = out.icmp()
    assert body == bytes(packet[:548])
    assert out.header.total_length == 576


def test_no_protocol_unreachable_about_broadcasts() -> None:
    host = make_ip_only()
    host.receive(T0, ip_packet(b"x", dst=SUBNET_BROADCAST, proto=UNKNOWN_PROTO))
    host.receive(T0, ip_packet(b"x", proto=UNKNOWN_PROTO), link_broadcast=True)
    assert host.counters.IpInUnknownProtos == 2
    assert host.sent() == []


def test_protocol_unreachable_is_rate_limited_per_peer() -> None:
    host = make_ip_only()
    for _ in range(10):
        host.receive(T0, ip_packet(b"x", proto=UNKNOWN_PROTO))
    assert len(host.sent()) == 6
    assert host.counters.IcmpOutRateLimitHost == 4
    assert host.counters.IpInUnknownProtos == 10


def test_protocol_unreachable_about_reassembled_datagram_quotes_whole_header() -> None:
    host = make_ip_only()
    packet = ip_packet(bytes(3000), proto=UNKNOWN_PROTO, ident=77)
    for piece in fragments(packet, 1480):
        host.receive(T0, piece)
    out = only(host.sent())
    _, body = out.icmp()
    vihl, _, total, ident, frag = struct.unpack_from("!BBHHH", body)
    assert (vihl, total, ident, frag) == (0x45, 3020, 77, 0)
    assert host.counters.IpReasmOKs == 1


# -- ICMP echo ----------------------------------------------------------------


def test_echo_request_gets_identical_reply() -> None:
    host = make_ip_only()
    data = bytes(range(56))
    host.receive(T0, ip_packet(echo_request(0x4242, 9, data), proto=IpProto.ICMP, tos=0x10))
    out = only(host.sent())
    assert (out.header.src, out.header.dst, out.next_hop) == (US, PEER, PEER)
    assert out.header.tos == 0x10 and out.header.ttl == 64
    header, body = out.icmp()
    assert (header.type, header.code) == (IcmpType.ECHO_REPLY, 0)
    assert (header.ident, header.sequence) == (0x4242, 9)
    assert body == data
    c = host.counters
    assert (c.IcmpInMsgs, c.IcmpInEchos, c.IcmpOutEchoReps, c.IcmpOutMsgs) == (1, 1, 1, 1)
    assert c.IpInDelivers == 1


def test_no_route_back_means_nothing_sent_or_counted_as_sent() -> None:
    host = make_host(gateway=None)
    host.ip.protocols.discard(IpProto.UDP)
    host.receive(T0, icmp_packet(echo_request(1, 1, b"x"), src=FAR))
    host.receive(T0, ip_packet(b"x", src=FAR, proto=UNKNOWN_PROTO))
    assert host.sent() == []
    c = host.counters
    assert (c.IcmpInEchos, c.IpInUnknownProtos, c.IpOutNoRoutes) == (1, 1, 2)
    assert (c.IcmpOutEchoReps, c.IcmpOutDestUnreachs, c.IcmpOutMsgs) == (0, 0, 0)


def test_echo_with_ttl_zero_to_us_is_answered() -> None:
    # RFC 1122 3.2.1.7: TTL only matters when forwarding.
    host = make_ip_only()
    host.receive(T0, icmp_packet(echo_request(1, 1, b"ttl0"), ttl=0))
    header, body = only(host.sent()).icmp()
    assert header.type == IcmpType.ECHO_REPLY and body == b"ttl0"


def test_large_echo_fragmented_both_ways_round_trip() -> None:
    host = make_ip_only()
    data = bytes((i * 7) & 0xFF for i in range(8000))
    request = icmp_packet(echo_request(0x77, 3, data))
    pieces = fragments(request, 1480)
    assert len(pieces) == 6
    for piece in pieces[:-1]:
        assert host.receive(T0, piece) is None
        assert host.sent() == []
    assert host.receive(T0, pieces[-1]) is None
    reply = host.sent()
    # 8008 ICMP bytes in 1480-byte pieces: five full ones and 608.
    assert payloads(reply) == [
        (1480, 0, True, False),
        (1480, 1480, True, False),
        (1480, 2960, True, False),
        (1480, 4440, True, False),
        (1480, 5920, True, False),
        (608, 7400, False, False),
    ]
    assert len({s.header.ident for s in reply}) == 1
    assert all(s.header.total_length <= 1500 for s in reply)
    # The peer reassembles it to the same echo data.
    peer = make_host(PEER, gateway=None)
    results = [peer.receive(T0, s.packet) for s in reversed(reply)]
    dgram = as_datagram(results[-1])
    assert results[:-1] == [None] * 5
    header, body = icmpv4.parse(dgram.payload)
    assert (header.type, header.ident, header.sequence) == (IcmpType.ECHO_REPLY, 0x77, 3)
    assert bytes(body) == data
    assert host.counters.IpReasmOKs == 1 and host.counters.IpFragCreates == 6


@pytest.mark.parametrize("dst", [SUBNET_BROADCAST, LIMITED_BROADCAST], ids=BCAST_IDS)
def test_broadcast_echo_ignored_by_default(dst: int) -> None:
    host = make_ip_only()
    host.receive(T0, icmp_packet(echo_request(1, 1, b"smurf"), dst=dst), link_broadcast=True)
    assert host.sent() == []
    c = host.counters
    assert c.IcmpInEchos == 1 and c.IcmpOutEchoReps == 0
    assert c.drops == {"icmp.echo_ignored": 1}
    # Linux icmp_rcv counts the ignored broadcast echo as an input error.
    assert c.IcmpInErrors == 1


@pytest.mark.parametrize("dst", [SUBNET_BROADCAST, LIMITED_BROADCAST], ids=BCAST_IDS)
def test_broadcast_echo_answered_when_allowed(dst: int) -> None:
    host = make_ip_only()
    host.settings.set("net.ipv4.icmp_echo_ignore_broadcasts", 0)
    host.receive(T0, icmp_packet(echo_request(1, 2, b"hi"), dst=dst), link_broadcast=True)
    out = only(host.sent())
    assert (out.header.src, out.header.dst) == (US, PEER)
    assert out.icmp()[1] == b"hi"


def test_unicast_echo_in_link_broadcast_frame_is_answered() -> None:
    # Linux decides by the IP destination (rt_flags), not the link's.
    host = make_ip_only()
    host.receive(T0, icmp_packet(echo_request(1, 2, b"hi")), link_broadcast=True)
    out = only(host.sent())
    assert (out.header.src, out.header.dst) == (US, PEER)


def test_echo_ignore_all() -> None:
    host = make_ip_only()
    host.settings.set("icmp_echo_ignore_all", 1)
    host.receive(T0, icmp_packet(echo_request(1, 1, b"x")))
    assert host.sent() == []
    assert host.counters.drops == {"icmp.echo_ignored": 1}


def test_icmp_bad_checksum_and_truncation() -> None:
    host = make_ip_only()
    message = bytearray(echo_request(1, 1, b"abc"))
    message[2] ^= 0x01
    host.receive(T0, icmp_packet(bytes(message)))
    host.receive(T0, icmp_packet(b"\x08\x00\x00"))
    c = host.counters
    assert c.IcmpInMsgs == 2 and c.IcmpInErrors == 2 and c.IcmpInCsumErrors == 1
    assert c.drops == {"icmp.bad_checksum": 1, "icmp.truncated": 1}
    assert host.sent() == []


def test_echo_reply_is_delivered_for_the_pinger() -> None:
    host = make_ip_only()
    message = icmp_message(IcmpType.ECHO_REPLY, 0, icmpv4.echo_rest(5, 6), b"pong")
    dgram = as_datagram(host.receive(T0, icmp_packet(message)))
    assert bytes(dgram.payload) == message
    assert host.counters.IcmpInEchoReps == 1


def test_unhandled_icmp_type_is_dropped() -> None:
    host = make_ip_only()
    assert host.receive(T0, icmp_packet(icmp_message(IcmpType.TIMESTAMP, 0, 0, bytes(12)))) is None
    assert host.counters.drops == {"icmp.unhandled_type": 1}
    assert host.sent() == []


# -- ICMP errors about our traffic ----------------------------------------------


def our_udp(dport: int = 53) -> bytes:
    return bytes(udp_packet(b"query", src=US, dst=FAR, sport=40000, dport=dport))


@pytest.mark.parametrize(
    ("icmp_type", "code", "counter"),
    [
        (IcmpType.DEST_UNREACH, UnreachCode.PORT, "IcmpInDestUnreachs"),
        (IcmpType.TIME_EXCEEDED, TimeExceededCode.TTL, "IcmpInTimeExcds"),
        (IcmpType.PARAM_PROBLEM, 0, "IcmpInParmProbs"),
    ],
)
def test_icmp_error_becomes_transport_error(icmp_type: int, code: int, counter: str) -> None:
    host = make_ip_only()
    router = addr("203.0.113.1")
    result = host.receive(T0, icmp_packet(icmp_error_about(our_udp(), icmp_type, code), src=router))
    assert isinstance(result, TransportError)
    assert (result.src, result.dst, result.sport, result.dport) == (US, FAR, 40000, 53)
    assert (result.icmp_type, result.icmp_code) == (icmp_type, code)
    assert getattr(host.counters, counter) == 1
    assert host.sent() == []  # never an error about an error


def test_icmp_error_with_bad_quote_is_dropped() -> None:
    host = make_ip_only()
    bad = icmp_message(IcmpType.DEST_UNREACH, UnreachCode.PORT, 0, b"\x45\x00\x00")
    assert host.receive(T0, icmp_packet(bad)) is None
    assert host.counters.IcmpInErrors == 1
    assert host.counters.drops == {"icmp.quote_truncated": 1}


@pytest.mark.parametrize("dst", [SUBNET_BROADCAST, LIMITED_BROADCAST], ids=BCAST_IDS)
def test_icmp_error_sent_to_broadcast_is_dropped(dst: int) -> None:
    # Linux icmp_rcv: to a broadcast, only echo/timestamp/address requests.
    host = make_ip_only()
    message = icmp_error_about(our_udp(), IcmpType.DEST_UNREACH, UnreachCode.PORT)
    assert host.receive(T0, icmp_packet(message, dst=dst)) is None
    # Counted by type first (ICMPMSGIN), then as an input error.
    assert host.counters.IcmpInDestUnreachs == 1
    assert host.counters.IcmpInErrors == 1
    assert host.counters.drops == {"icmp.broadcast": 1}


# -- path MTU -----------------------------------------------------------------


def frag_needed(host: Host, now: float, mtu: int, dst: int = FAR) -> object:
    original = bytes(udp_packet(b"q" * 100, src=US, dst=dst, sport=40000, dport=53))
    message = icmp_error_about(
        original, IcmpType.DEST_UNREACH, UnreachCode.FRAG_NEEDED, icmpv4.frag_needed_rest(mtu)
    )
    return host.receive(now, icmp_packet(message, src=addr("203.0.113.1")))


def test_frag_needed_lowers_path_mtu() -> None:
    host = make_host()
    err = frag_needed(host, T0, 1000)
    assert isinstance(err, TransportError) and err.mtu == 1000 and err.errno == errno.EMSGSIZE
    assert host.ip.route_mtu(T0, FAR) == 1000
    assert host.ip.route_mtu(T0, PEER) == 1500
    # A datagram that fit the device no longer fits the path: fragmented at 1000.
    assert send(host, bytes(1400), FAR) == 0
    assert payloads(host.sent()) == [(976, 0, True, False), (424, 976, False, False)]
    assert send(host, bytes(1400), FAR, df=True) == errno.EMSGSIZE
    assert send(host, bytes(900), FAR, df=True) == 0
    assert payloads(host.sent()) == [(900, 0, False, True)]


def test_path_mtu_never_raised_by_icmp() -> None:
    # RFC 1191: a host MUST NOT increase its PMTU estimate because of a
    # Datagram Too Big message; Linux ignores larger values likewise.
    host = make_host()
    frag_needed(host, T0, 1000)
    frag_needed(host, T0 + 1, 1400)
    assert host.ip.route_mtu(T0 + 2, FAR) == 1000
    frag_needed(host, T0 + 3, 800)
    assert host.ip.route_mtu(T0 + 4, FAR) == 800


def test_path_mtu_expires() -> None:
    host = make_host()
    frag_needed(host, T0, 1000)
    assert host.ip.route_mtu(T0 + 599, FAR) == 1000
    assert host.ip.route_mtu(T0 + 600, FAR) == 1500


@pytest.mark.parametrize(("reported", "learned"), [(300, 552), (67, 1500), (0, 1500), (9000, 1500)])
def test_path_mtu_bounds(reported: int, learned: int) -> None:
    host = make_host()
    frag_needed(host, T0, reported)
    assert host.ip.route_mtu(T0, FAR) == learned


# -- reassembly timeout -------------------------------------------------------


def test_reassembly_timeout_sends_time_exceeded_about_first_fragment() -> None:
    host = make_host()
    packet = udp_packet(b"u" * 3000, ident=99)
    first = fragments(packet, 1480)[0]
    host.receive(T0, first)
    assert host.ip.poll_at() == T0 + 30
    host.ip.poll(T0 + 29)
    assert host.sent() == []
    host.ip.poll(T0 + 30)
    out = only(host.sent())
    assert out.header.dst == PEER and out.header.src == US
    header, body = out.icmp()
    assert (header.type, header.code) == (IcmpType.TIME_EXCEEDED, TimeExceededCode.REASSEMBLY)
    assert body == bytes(first[:28])
    assert host.counters.IcmpOutTimeExcds == 1 and host.counters.IpReasmTimeout == 1
    assert host.ip.poll_at() is None


def test_reassembly_timeout_without_first_fragment_is_silent() -> None:
    host = make_host()
    host.receive(T0, fragments(udp_packet(b"u" * 3000), 1480)[1])
    host.ip.poll(T0 + 30)
    assert host.sent() == []
    assert host.counters.IpReasmTimeout == 1


def test_reassembly_timeout_of_broadcast_is_silent() -> None:
    host = make_host()
    host.receive(T0, fragments(udp_packet(b"u" * 3000, dst=SUBNET_BROADCAST), 1480)[0])
    host.ip.poll(T0 + 30)
    assert host.sent() == []


# -- output -------------------------------------------------------------------


def test_output_sets_df_when_it_fits() -> None:
    host = make_host()
    assert send(host, b"abc", PEER) == 0
    out = only(host.sent())
    assert out.next_hop == PEER
    h = out.header
    assert h.dont_fragment and not h.more_fragments and h.frag_offset == 0
    assert (h.src, h.dst, h.proto, h.ttl, h.tos) == (US, PEER, UNKNOWN_PROTO, 64, 0)
    assert out.payload == b"abc"
    assert host.counters.IpOutRequests == 1


def test_output_next_hop() -> None:
    host = make_host()
    send(host, b"x", FAR)
    send(host, b"x", NEIGHBOR)
    send(host, b"x", SUBNET_BROADCAST)
    send(host, b"x", LIMITED_BROADCAST)
    hops = [(s.next_hop, s.header.dst) for s in host.sent()]
    assert hops == [
        (PEER, FAR),
        (NEIGHBOR, NEIGHBOR),
        (LIMITED_BROADCAST, SUBNET_BROADCAST),
        (LIMITED_BROADCAST, LIMITED_BROADCAST),
    ]


def test_broadcast_is_sent_without_df() -> None:
    host = make_host()
    send(host, b"x", SUBNET_BROADCAST)
    assert not only(host.sent()).header.dont_fragment


def test_output_options_ttl_tos_and_df_false() -> None:
    host = make_host()
    send(host, b"x", PEER, ttl=3, tos=0x28, df=False)
    send(host, b"y", PEER, df=False)
    first, second = host.sent()
    assert (first.header.ttl, first.header.tos, first.header.dont_fragment) == (3, 0x28, False)
    assert second.header.ident == (first.header.ident + 1) & 0xFFFF


def test_exactly_mtu_is_not_fragmented() -> None:
    host = make_host()
    send(host, bytes(1480), PEER)
    assert payloads(host.sent()) == [(1480, 0, False, True)]
    assert host.counters.IpFragOKs == 0


def test_fragmentation_offsets_flags_and_round_trip() -> None:
    host = make_host()
    data = bytes((i * 13) & 0xFF for i in range(4000))
    segment = udp_segment(data, src=US, dst=PEER, sport=1111, dport=2222)
    ip = host.ip
    buf = ip.alloc(len(segment))
    buf[ip.transport_offset :] = segment
    assert ip.output(T0, buf, src=US, dst=PEER, proto=IpProto.UDP) == 0
    sent = host.sent()
    assert payloads(sent) == [
        (1480, 0, True, False),
        (1480, 1480, True, False),
        (1048, 2960, False, False),
    ]
    assert len({s.header.ident for s in sent}) == 1
    assert all(s.next_hop == PEER and s.header.total_length <= 1500 for s in sent)
    c = host.counters
    assert (c.IpOutRequests, c.IpFragOKs, c.IpFragCreates) == (1, 1, 3)
    for order in (sent, list(reversed(sent)), [sent[1], sent[0], sent[2]]):
        peer = make_host(PEER, gateway=None)
        results = [peer.receive(T0, s.packet) for s in order]
        dgram = as_datagram(results[-1])
        assert bytes(dgram.payload) == segment
        assert peer.udp.receive(T0, dgram) == []  # checksum fine: no port, no error
        assert peer.counters.UdpInCsumErrors == 0 and peer.counters.UdpNoPorts == 1


def test_fragments_are_multiples_of_8_with_odd_mtu() -> None:
    host = make_host(mtu=1006)
    send(host, bytes(2000), PEER)
    assert payloads(host.sent()) == [
        (984, 0, True, False),
        (984, 984, True, False),
        (32, 1968, False, False),
    ]


def test_successive_datagrams_get_distinct_idents() -> None:
    host = make_host()
    send(host, bytes(3000), PEER)
    send(host, bytes(3000), PEER)
    idents = {s.header.ident for s in host.sent()}
    assert len(idents) == 2


def test_df_true_too_big_is_emsgsize() -> None:
    host = make_host()
    assert send(host, bytes(1481), PEER, df=True) == errno.EMSGSIZE
    assert host.sent() == []
    assert host.counters.IpFragFails == 1


def test_no_route_is_enetunreach() -> None:
    host = make_host(gateway=None)
    assert send(host, b"x", FAR) == errno.ENETUNREACH
    assert host.sent() == []
    assert host.counters.IpOutNoRoutes == 1


def test_alloc_layout() -> None:
    host = make_host()
    assert host.ip.transport_offset == HEADROOM + 20
    assert len(host.ip.alloc(100)) == HEADROOM + 20 + 100


# -- link failure -------------------------------------------------------------


def test_link_failure_reports_host_unreachable_to_the_sender() -> None:
    host = make_host()
    ep = UdpEndpoint()
    assert host.udp.send(T0, ep, b"data", NEIGHBOR, 9) == 0
    ((_, frame),) = host.ip.outbox
    err = host.ip.link_failure(frame)
    assert err is not None
    assert (err.errno, err.fatal, err.proto) == (errno.EHOSTUNREACH, False, IpProto.UDP)
    assert (err.src, err.dst, err.sport, err.dport) == (US, NEIGHBOR, ep.port, 9)
    assert ep.port != 0
    assert (err.icmp_type, err.icmp_code) == (IcmpType.DEST_UNREACH, UnreachCode.HOST)


def test_link_failure_of_echo_and_of_later_fragment() -> None:
    host = make_host()
    message = echo_request(0xABCD, 5, b"p" * 3000)
    ip = host.ip
    buf = ip.alloc(len(message))
    buf[ip.transport_offset :] = message
    ip.output(T0, buf, src=US, dst=NEIGHBOR, proto=IpProto.ICMP)
    first, second, *_ = ip.outbox
    err = ip.link_failure(first[1])
    assert err is not None and (err.sport, err.dport) == (0xABCD, 5)
    # Like icmp_send(), nothing is reported about a later fragment: its
    # first bytes are data, not an identifier and sequence.
    assert ip.link_failure(second[1]) is None
    assert ip.link_failure(bytearray(HEADROOM + 5)) is None
