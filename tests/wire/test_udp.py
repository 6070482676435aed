"""UDP: golden bytes, the two zeros of the checksum, length trimming, scapy."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, UDP
from scapy.packet import Raw

from aiostack.wire import udp
from aiostack.wire.checksum import internet_checksum, ones_sum, pseudo_header_sum
from aiostack.wire.errors import ParseError
from aiostack.wire.ipv4 import addr, addr_str

FAST = settings(max_examples=200, deadline=None)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)

SRC = addr("198.18.0.2")
DST = addr("198.18.0.1")

# 198.18.0.2:5353 -> 198.18.0.1:53 "hi". Checksum by hand: pseudo-header
# c612+0002+c612+0001+0011+000a = 0x18c42, header 14e9+0035+000a = 0x1528,
# data 6869: total 0x209d3 -> 09d5 -> ~ = f62a.
GOLDEN = bytes.fromhex("14e9 0035 000a f62a") + b"hi"


def build(
    payload: bytes,
    *,
    checksum: bool = True,
    sport: int = 5353,
    dport: int = 53,
    src: int = SRC,
    dst: int = DST,
) -> bytes:
    buf = bytearray(8) + payload
    udp.emit_into(
        buf,
        0,
        src_port=sport,
        dst_port=dport,
        payload_len=len(payload),
        src=src,
        dst=dst,
        checksum=checksum,
    )
    return bytes(buf)


def test_golden() -> None:
    assert build(b"hi") == GOLDEN
    hdr, payload = udp.parse(GOLDEN, SRC, DST)
    assert hdr == udp.UdpHeader(5353, 53, 10, 0xF62A)
    assert bytes(payload) == b"hi"


def _payload_with_zero_checksum() -> bytes:
    """A payload whose computed checksum is exactly 0 (sum all ones)."""
    head = b"zero!!"
    probe = bytearray(8 + len(head) + 2)
    struct.pack_into("!HHHH", probe, 0, 5353, 53, len(probe), 0)
    probe[8 : 8 + len(head)] = head
    partial = ones_sum(probe, pseudo_header_sum(SRC, DST, udp.PROTO, len(probe)))
    filler = struct.pack("!H", 0xFFFF - partial)
    probe[-2:] = filler
    assert internet_checksum(probe, pseudo_header_sum(SRC, DST, udp.PROTO, len(probe))) == 0
    return head + filler


def test_computed_zero_is_sent_as_ffff() -> None:
    payload = _payload_with_zero_checksum()
    seg = build(payload)
    assert seg[6:8] == b"\xff\xff"
    hdr, got = udp.parse(seg, SRC, DST)
    assert hdr.checksum == 0xFFFF and bytes(got) == payload
    # scapy applies the same rule.
    s = IP(bytes(IP(src="198.18.0.2", dst="198.18.0.1") / UDP(sport=5353, dport=53) / Raw(payload)))
    assert s[UDP].chksum == 0xFFFF


def test_zero_checksum_on_receive_means_none() -> None:
    seg = bytearray(build(b"payload", checksum=False))
    assert seg[6:8] == b"\x00\x00"
    seg[-1] ^= 0xFF  # corruption cannot be detected without a checksum
    hdr, got = udp.parse(seg, SRC, DST)
    assert hdr.checksum == 0 and bytes(got)[:-1] == b"payloa"


def test_bad_checksum_and_skip() -> None:
    seg = bytearray(GOLDEN)
    seg[-1] ^= 1
    with pytest.raises(ParseError) as info:
        udp.parse(seg, SRC, DST)
    assert info.value.reason == "bad_checksum"
    udp.parse(seg, SRC, DST, verify_checksum=False)
    with pytest.raises(ParseError):  # wrong pseudo-header
        udp.parse(GOLDEN, SRC, DST + 1)


def test_ip_padding_trimmed_by_udp_length() -> None:
    hdr, payload = udp.parse(GOLDEN + b"\x00\x00\x00", SRC, DST)
    assert hdr.length == 10 and bytes(payload) == b"hi"


@pytest.mark.parametrize("length", [0, 7, 11, 0xFFFF])
def test_bad_length(length: int) -> None:
    seg = bytearray(GOLDEN)
    seg[4:6] = struct.pack("!H", length)
    with pytest.raises(ParseError) as info:
        udp.parse(seg, SRC, DST, verify_checksum=False)
    assert info.value.reason == "bad_length"


def test_every_truncation_raises() -> None:
    for cut in range(len(GOLDEN)):
        with pytest.raises(ParseError) as info:
            udp.parse(GOLDEN[:cut], SRC, DST)
        assert info.value.reason == ("truncated" if cut < 8 else "bad_length")


@FAST
@given(st.binary(max_size=40), st.booleans())
def test_random_bytes_only_parse_error(data: bytes, verify: bool) -> None:
    with contextlib.suppress(ParseError):
        udp.parse(data, SRC, DST, verify_checksum=verify)


@FAST
@given(sport=u16, dport=u16, src=u32, dst=u32, payload=st.binary(max_size=64))
def test_round_trip_and_scapy(sport: int, dport: int, src: int, dst: int, payload: bytes) -> None:
    seg = build(payload, sport=sport, dport=dport, src=src, dst=dst)
    hdr, got = udp.parse(seg, src, dst)
    assert (hdr.src_port, hdr.dst_port, hdr.length, bytes(got)) == (
        sport,
        dport,
        8 + len(payload),
        payload,
    )
    assert hdr.checksum != 0
    # scapy computes the same checksum for the same datagram and reads our fields.
    theirs = IP(
        bytes(
            IP(src=addr_str(src), dst=addr_str(dst)) / UDP(sport=sport, dport=dport) / Raw(payload)
        )
    )
    assert bytes(theirs[UDP]) == seg
    # And we parse what scapy builds.
    hdr2, got2 = udp.parse(bytes(theirs)[20:], src, dst)
    assert hdr2 == hdr and bytes(got2) == payload
