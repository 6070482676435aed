"""IPv4 headers: golden bytes, options kept, validation order, scapy cross-checks."""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, IPOption_Router_Alert
from scapy.packet import Raw

from aiostack.wire import ipv4
from aiostack.wire.checksum import ones_sum
from aiostack.wire.errors import ParseError
from aiostack.wire.ipv4 import IpProto, addr, addr_str

FAST = settings(max_examples=200, deadline=None)
u32 = st.integers(0, 0xFFFFFFFF)

# The classic example header: 192.168.0.1 -> 192.168.0.199, UDP, DF, TTL 64,
# total length 115, checksum b861.
GOLDEN = bytes.fromhex("4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7")
GOLDEN_PACKET = GOLDEN + bytes(range(95))
# With a Router Alert option (94 04 0000): IHL 6, total length 28.
ROUTER_ALERT = b"\x94\x04\x00\x00"


def with_options(options: bytes, payload: bytes = b"data", **kw: int) -> bytes:
    hlen = 20 + len(options)
    buf = bytearray(hlen + len(payload))
    buf[hlen:] = payload
    got = ipv4.emit_into(
        buf,
        0,
        src=addr("198.18.0.2"),
        dst=addr("198.18.0.1"),
        proto=IpProto.UDP,
        payload_len=len(payload),
        options=options,
        **kw,
    )
    assert got == hlen
    return bytes(buf)


def test_parse_golden() -> None:
    hdr, payload = ipv4.parse(GOLDEN_PACKET)
    assert (hdr.tos, hdr.total_length, hdr.ident, hdr.ttl, hdr.proto) == (0, 115, 0, 64, 17)
    assert hdr.dont_fragment and not hdr.more_fragments and not hdr.is_fragment
    assert hdr.frag_offset == 0 and hdr.checksum == 0xB861
    assert (addr_str(hdr.src), addr_str(hdr.dst)) == ("192.168.0.1", "192.168.0.199")
    assert hdr.options == b"" and hdr.header_len == 20
    assert bytes(payload) == bytes(range(95))


def test_emit_golden() -> None:
    buf = bytearray(115)
    ipv4.emit_into(
        buf,
        0,
        src=addr("192.168.0.1"),
        dst=addr("192.168.0.199"),
        proto=17,
        payload_len=95,
        frag=ipv4.FLAG_DF,
    )
    assert bytes(buf[:20]) == GOLDEN


def test_options_kept() -> None:
    packet = with_options(ROUTER_ALERT, ttl=1)
    assert packet[0] == 0x46
    hdr, payload = ipv4.parse(packet)
    assert hdr.options == ROUTER_ALERT and hdr.header_len == 24
    assert bytes(payload) == b"data"
    scapy = IP(packet)
    assert scapy.ihl == 6 and isinstance(scapy.options[0], IPOption_Router_Alert)


def test_link_padding_trimmed_by_total_length() -> None:
    hdr, payload = ipv4.parse(GOLDEN_PACKET + bytes(10))
    assert hdr.total_length == 115 and len(payload) == 95


def test_fragment_fields() -> None:
    packet = with_options(b"", frag=ipv4.FLAG_MF | (1480 >> 3), ident=0x1234)
    hdr, _ = ipv4.parse(packet)
    assert hdr.more_fragments and not hdr.dont_fragment and hdr.is_fragment
    assert hdr.frag_offset == 1480 and hdr.ident == 0x1234


def test_ecn_and_tos() -> None:
    hdr, _ = ipv4.parse(with_options(b"", tos=0xB8 | 0x3))
    assert hdr.tos == 0xBB and hdr.ecn == 3


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda b: b.__setitem__(0, 0x65), "bad_version"),
        (lambda b: b.__setitem__(0, 0x44), "bad_header_length"),
        (lambda b: b.__setitem__(8, 63), "bad_checksum"),
    ],
)
def test_reasons(mutate: Callable[[bytearray], None], reason: str) -> None:
    data = bytearray(GOLDEN_PACKET)
    mutate(data)
    with pytest.raises(ParseError) as info:
        ipv4.parse(data)
    assert info.value.reason == reason


def _refresh_checksum(data: bytearray) -> None:
    hlen = (data[0] & 0xF) * 4
    data[10:12] = b"\x00\x00"
    data[10:12] = struct.pack("!H", ~ones_sum(data[:hlen]) & 0xFFFF)


def test_total_length_below_header_is_bad_total_length() -> None:
    data = bytearray(GOLDEN_PACKET)
    data[2:4] = struct.pack("!H", 19)
    _refresh_checksum(data)
    with pytest.raises(ParseError) as info:
        ipv4.parse(data)
    assert info.value.reason == "bad_total_length"


def test_total_length_beyond_data_is_truncated() -> None:
    data = bytearray(GOLDEN_PACKET)
    data[2:4] = struct.pack("!H", 200)
    _refresh_checksum(data)
    with pytest.raises(ParseError) as info:
        ipv4.parse(data)
    assert info.value.reason == "truncated"


def test_ihl_beyond_data_is_truncated() -> None:
    with pytest.raises(ParseError) as info:
        ipv4.parse(b"\x4f" + GOLDEN[1:] + bytes(20))
    assert info.value.reason == "truncated"


def test_checksum_checked_only_when_asked() -> None:
    data = bytearray(GOLDEN_PACKET)
    data[8] = 1  # TTL changed, checksum stale
    hdr, _ = ipv4.parse(data, verify_checksum=False)
    assert hdr.ttl == 1


@pytest.mark.parametrize(
    "packet", [GOLDEN_PACKET, with_options(ROUTER_ALERT)], ids=["plain", "options"]
)
def test_every_truncation_raises(packet: bytes) -> None:
    for cut in range(len(packet)):
        with pytest.raises(ParseError):
            ipv4.parse(packet[:cut])
        with pytest.raises(ParseError):
            ipv4.parse(packet[:cut], verify_checksum=False)


def test_emit_rejects_bad_arguments() -> None:
    buf = bytearray(100)
    with pytest.raises(ValueError, match="multiple of 4"):
        ipv4.emit_into(buf, 0, src=1, dst=2, proto=17, payload_len=0, options=b"\x01")
    with pytest.raises(ValueError, match="multiple of 4"):
        ipv4.emit_into(buf, 0, src=1, dst=2, proto=17, payload_len=0, options=bytes(44))
    with pytest.raises(ValueError, match="65535"):
        ipv4.emit_into(buf, 0, src=1, dst=2, proto=17, payload_len=65516)


@FAST
@given(st.binary(max_size=80), st.booleans())
def test_random_bytes_only_parse_error(data: bytes, verify: bool) -> None:
    with contextlib.suppress(ParseError):
        ipv4.parse(data, verify_checksum=verify)


@FAST
@given(
    src=u32,
    dst=u32,
    proto=st.integers(0, 255),
    ttl=st.integers(0, 255),
    tos=st.integers(0, 255),
    ident=st.integers(0, 0xFFFF),
    frag=st.integers(0, 0xFFFF),
    options=st.integers(0, 10).flatmap(lambda n: st.binary(min_size=4 * n, max_size=4 * n)),
    payload=st.binary(max_size=64),
)
def test_parse_after_emit_and_scapy(
    src: int,
    dst: int,
    proto: int,
    ttl: int,
    tos: int,
    ident: int,
    frag: int,
    options: bytes,
    payload: bytes,
) -> None:
    hlen = 20 + len(options)
    buf = bytearray(hlen) + payload
    ipv4.emit_into(
        buf,
        0,
        src=src,
        dst=dst,
        proto=proto,
        payload_len=len(payload),
        ttl=ttl,
        tos=tos,
        ident=ident,
        frag=frag,
        options=options,
    )
    hdr, got = ipv4.parse(buf)
    assert (hdr.src, hdr.dst, hdr.proto, hdr.ttl, hdr.tos) == (src, dst, proto, ttl, tos)
    assert (hdr.ident, hdr.frag, hdr.options, hdr.total_length) == (
        ident,
        frag,
        options,
        hlen + len(payload),
    )
    assert bytes(got) == payload
    # scapy reads the same fields and computes the same checksum.
    s = IP(bytes(buf[:20]) + bytes(options) + payload)
    assert (addr(s.src), addr(s.dst), s.proto, s.ttl, s.tos, s.id) == (
        src,
        dst,
        proto,
        ttl,
        tos,
        ident,
    )
    assert (int(s.flags) << 13) | s.frag == frag
    assert s.ihl == hlen // 4 and s.len == hlen + len(payload)
    assert s.chksum == hdr.checksum


@FAST
@given(src=u32, dst=u32, ttl=st.integers(1, 255), payload=st.binary(max_size=64), df=st.booleans())
def test_parse_what_scapy_builds(src: int, dst: int, ttl: int, payload: bytes, df: bool) -> None:
    wire = bytes(
        IP(src=addr_str(src), dst=addr_str(dst), ttl=ttl, proto=6, flags="DF" if df else 0, id=7)
        / Raw(payload)
    )
    hdr, got = ipv4.parse(wire)
    assert (hdr.src, hdr.dst, hdr.ttl, hdr.proto, hdr.ident) == (src, dst, ttl, 6, 7)
    assert hdr.dont_fragment == df
    assert hdr.checksum == IP(wire).chksum
    assert bytes(got) == payload


def test_parse_scapy_options_packet() -> None:
    wire = bytes(IP(src="10.0.0.1", dst="10.0.0.2", options=[IPOption_Router_Alert()]) / Raw(b"x"))
    hdr, payload = ipv4.parse(wire)
    assert hdr.options == ROUTER_ALERT and bytes(payload) == b"x"


def test_addr_conversions() -> None:
    assert addr("198.18.0.1") == 0xC6120001
    assert addr_str(0xC6120001) == "198.18.0.1"
    assert addr("0.0.0.0") == ipv4.ANY and addr("255.255.255.255") == ipv4.LIMITED_BROADCAST
    for bad in [
        "1.2.3",
        "1.2.3.4.5",
        "256.0.0.1",
        "1.2.3.-4",
        "a.b.c.d",
        "1.2.3.0004",
        "\u0661\u0662\u0667.0.0.1",
        "\u00b2.0.0.1",
        "",
    ]:
        with pytest.raises(ValueError, match="dotted-quad"):
            addr(bad)
    assert ipv4.is_multicast(addr("224.0.0.1")) and not ipv4.is_multicast(addr("198.18.0.1"))
    assert ipv4.is_loopback(addr("127.0.0.1")) and not ipv4.is_loopback(addr("128.0.0.1"))


@FAST
@given(u32)
def test_addr_round_trip(value: int) -> None:
    assert addr(addr_str(value)) == value
