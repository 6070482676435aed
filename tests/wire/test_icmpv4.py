"""ICMPv4: echo, frag-needed next-hop MTU, quoted originals, scapy cross-checks."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, UDP, IPerror, UDPerror
from scapy.packet import Raw

from aiostack.wire import icmpv4, ipv4, udp
from aiostack.wire.errors import ParseError
from aiostack.wire.icmpv4 import IcmpType, UnreachCode
from aiostack.wire.ipv4 import addr

FAST = settings(max_examples=200, deadline=None)
u16 = st.integers(0, 0xFFFF)

# Echo request id 0x1234 seq 1 with 8 bytes "abcdefgh"; checksum by hand:
# 0800 + 1234 + 0001 + 6162 + 6364 + 6566 + 6768 = 0x1abc9 -> abca -> ~ = 5435.
ECHO = bytes.fromhex("0800 5435 1234 0001") + b"abcdefgh"

SRC = addr("198.18.0.2")
DST = addr("198.18.0.1")


def build(type_: int, code: int, rest: int, body: bytes) -> bytes:
    buf = bytearray(8) + body
    icmpv4.emit_into(buf, 0, type=type_, code=code, rest=rest, body_len=len(body))
    return bytes(buf)


def original_udp(payload: bytes = b"0123456789", options: bytes = b"") -> bytes:
    """A UDP datagram 198.18.0.2:5353 -> 198.18.0.1:53 as the error's subject."""
    ulen = 8 + len(payload)
    hlen = 20 + len(options)
    buf = bytearray(hlen + ulen)
    buf[hlen + 8 :] = payload
    udp.emit_into(buf, hlen, src_port=5353, dst_port=53, payload_len=len(payload), src=SRC, dst=DST)
    ipv4.emit_into(
        buf, 0, src=SRC, dst=DST, proto=17, payload_len=ulen, options=options, frag=ipv4.FLAG_DF
    )
    return bytes(buf)


def test_parse_golden_echo() -> None:
    hdr, body = icmpv4.parse(ECHO)
    assert (hdr.type, hdr.code, hdr.checksum) == (IcmpType.ECHO_REQUEST, 0, 0x5435)
    assert (hdr.ident, hdr.sequence) == (0x1234, 1)
    assert not hdr.is_error
    assert bytes(body) == b"abcdefgh"


def test_emit_golden_echo() -> None:
    assert build(IcmpType.ECHO_REQUEST, 0, icmpv4.echo_rest(0x1234, 1), b"abcdefgh") == ECHO


def test_odd_length_body_checksum() -> None:
    msg = build(IcmpType.ECHO_REPLY, 0, icmpv4.echo_rest(1, 2), b"odd")
    icmpv4.parse(msg)
    assert ICMP(msg).chksum == ICMP(bytes(ICMP(type=0, id=1, seq=2) / Raw(b"odd"))).chksum


def test_bad_checksum_and_skip() -> None:
    bad = bytearray(ECHO)
    bad[-1] ^= 0xFF
    with pytest.raises(ParseError) as info:
        icmpv4.parse(bad)
    assert info.value.reason == "bad_checksum"
    assert icmpv4.parse(bad, verify_checksum=False)[0].ident == 0x1234


def test_every_truncation_raises() -> None:
    for cut in range(len(ECHO)):
        with pytest.raises(ParseError):
            icmpv4.parse(ECHO[:cut])
        if cut < 8:
            with pytest.raises(ParseError) as info:
                icmpv4.parse(ECHO[:cut], verify_checksum=False)
            assert info.value.reason == "truncated"


def test_frag_needed_next_hop_mtu_and_quote() -> None:
    original = original_udp()
    quote = original[:28]  # IP header + 8 bytes, as RFC 792 routers quote
    msg = build(
        IcmpType.DEST_UNREACH, UnreachCode.FRAG_NEEDED, icmpv4.frag_needed_rest(1400), quote
    )
    assert msg[4:8] == bytes.fromhex("0000 0578")  # unused, then the MTU
    hdr, body = icmpv4.parse(msg)
    assert hdr.is_error and hdr.code == UnreachCode.FRAG_NEEDED and hdr.next_hop_mtu == 1400
    proto, src, dst, sport, dport, ihl, rest = icmpv4.quoted_original(body)
    assert (proto, src, dst, sport, dport, ihl) == (17, SRC, DST, 5353, 53, 20)
    assert bytes(rest) == original[20:28]
    # scapy agrees on the layout.
    s = ICMP(msg)
    assert (s.type, s.code, s.nexthopmtu) == (3, 4, 1400)
    assert s[IPerror].dst == "198.18.0.1" and s[UDPerror].sport == 5353


def test_quoted_original_with_ip_options() -> None:
    original = original_udp(options=b"\x94\x04\x00\x00")
    proto, _, _, sport, dport, ihl, rest = icmpv4.quoted_original(original[:32])
    assert (proto, sport, dport, ihl) == (17, 5353, 53, 24)
    assert bytes(rest) == original[24:32]


def test_quoted_original_short_transport_gives_zero_ports() -> None:
    original = original_udp()
    *_, sport, dport, ihl, rest = icmpv4.quoted_original(original[:23])
    assert (sport, dport, ihl, len(rest)) == (0, 0, 20, 3)


@pytest.mark.parametrize(
    ("quote", "reason"),
    [
        (bytes(19), "truncated"),
        (b"\x65" + bytes(19), "bad_version"),
        (b"\x44" + bytes(19), "bad_header_length"),
        (b"\x46" + bytes(21), "bad_header_length"),  # IHL 24 but only 22 bytes quoted
    ],
)
def test_quoted_original_reasons(quote: bytes, reason: str) -> None:
    with pytest.raises(ParseError) as info:
        icmpv4.quoted_original(quote)
    assert info.value.reason == reason


def test_param_problem_pointer_and_time_exceeded() -> None:
    hdr, _ = icmpv4.parse(
        build(IcmpType.PARAM_PROBLEM, 0, icmpv4.param_problem_rest(9), original_udp()[:28])
    )
    assert hdr.pointer == 9 and hdr.is_error
    assert ICMP(build(IcmpType.PARAM_PROBLEM, 0, icmpv4.param_problem_rest(9), b"")).ptr == 9
    hdr, _ = icmpv4.parse(build(IcmpType.TIME_EXCEEDED, 0, 0, original_udp()[:28]))
    assert hdr.is_error


def test_parse_scapy_port_unreachable() -> None:
    original = IP(src="198.18.0.2", dst="198.18.0.1") / UDP(sport=4000, dport=9) / b"x"
    wire = bytes(IP(src="198.18.0.1", dst="198.18.0.2") / ICMP(type=3, code=3) / bytes(original))
    _, payload = ipv4.parse(wire)
    hdr, body = icmpv4.parse(payload)
    assert (hdr.type, hdr.code) == (3, 3)
    proto, src, dst, sport, dport, _, _ = icmpv4.quoted_original(body)
    assert (proto, src, dst, sport, dport) == (17, SRC, DST, 4000, 9)


@FAST
@given(st.binary(max_size=64), st.booleans())
def test_random_bytes_only_parse_error(data: bytes, verify: bool) -> None:
    try:
        _, body = icmpv4.parse(data, verify_checksum=verify)
        icmpv4.quoted_original(body)
    except ParseError:
        pass


@FAST
@given(ident=u16, seq=u16, body=st.binary(max_size=64), reply=st.booleans())
def test_echo_round_trip_and_scapy(ident: int, seq: int, body: bytes, reply: bool) -> None:
    type_ = IcmpType.ECHO_REPLY if reply else IcmpType.ECHO_REQUEST
    msg = build(type_, 0, icmpv4.echo_rest(ident, seq), body)
    hdr, got = icmpv4.parse(msg)
    assert (hdr.type, hdr.ident, hdr.sequence, bytes(got)) == (type_, ident, seq, body)
    theirs = bytes(ICMP(type=int(type_), id=ident, seq=seq) / Raw(body))
    assert theirs == msg
