"""ARP for Ethernet/IPv4: golden request, reasons, scapy cross-checks."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.l2 import ARP

from aiostack.wire import arp, ethernet
from aiostack.wire.arp import ArpOp, ArpPacket
from aiostack.wire.errors import ParseError
from aiostack.wire.ipv4 import addr

FAST = settings(max_examples=200, deadline=None)
macs = st.binary(min_size=6, max_size=6)
u32 = st.integers(0, 0xFFFFFFFF)

MAC_A = bytes.fromhex("020000000002")
# "who-has 198.18.0.1 tell 198.18.0.2"
REQUEST = bytes.fromhex("0001 0800 06 04 0001 020000000002 c6120002 000000000000 c6120001")


def test_parse_golden_request() -> None:
    pkt = arp.parse(REQUEST)
    assert pkt == ArpPacket(
        ArpOp.REQUEST, MAC_A, addr("198.18.0.2"), ethernet.ZERO_MAC, addr("198.18.0.1")
    )


def test_emit_golden_request() -> None:
    buf = bytearray(28)
    arp.emit_into(
        buf,
        0,
        ArpPacket(ArpOp.REQUEST, MAC_A, addr("198.18.0.2"), ethernet.ZERO_MAC, addr("198.18.0.1")),
    )
    assert bytes(buf) == REQUEST


def test_trailing_padding_ignored() -> None:
    assert arp.parse(REQUEST + bytes(18)) == arp.parse(REQUEST)


@pytest.mark.parametrize(
    ("offset", "value", "reason"),
    [
        (1, 6, "unsupported_hardware"),  # htype 6 (IEEE 802)
        (4, 8, "unsupported_hardware"),  # hlen 8
        (2, 0x86, "unsupported_protocol"),  # ptype 0x86dd-ish
        (5, 16, "unsupported_protocol"),  # plen 16
        (7, 3, "bad_op"),  # RARP request
        (7, 0, "bad_op"),
    ],
)
def test_reasons(offset: int, value: int, reason: str) -> None:
    data = bytearray(REQUEST)
    data[offset] = value
    with pytest.raises(ParseError) as info:
        arp.parse(data)
    assert info.value.reason == reason


def test_every_truncation_raises() -> None:
    for cut in range(len(REQUEST)):
        with pytest.raises(ParseError) as info:
            arp.parse(REQUEST[:cut])
        assert info.value.reason == "truncated"


@FAST
@given(st.binary(max_size=40))
def test_random_bytes_only_parse_error(data: bytes) -> None:
    with contextlib.suppress(ParseError):
        arp.parse(data)


@FAST
@given(op=st.sampled_from([1, 2]), sha=macs, spa=u32, tha=macs, tpa=u32)
def test_round_trip_and_scapy(op: int, sha: bytes, spa: int, tha: bytes, tpa: int) -> None:
    packet = ArpPacket(op, sha, spa, tha, tpa)
    buf = bytearray(arp.PACKET_LEN)
    arp.emit_into(buf, 0, packet)
    assert arp.parse(buf) == packet
    s = ARP(bytes(buf))
    assert (s.hwtype, s.ptype, s.hwlen, s.plen, s.op) == (1, 0x0800, 6, 4, op)
    assert s.hwsrc == ethernet.mac_to_str(sha) and s.hwdst == ethernet.mac_to_str(tha)
    assert addr(s.psrc) == spa and addr(s.pdst) == tpa


def test_parse_scapy_reply() -> None:
    wire = bytes(
        ARP(
            op=2,
            hwsrc="02:00:00:00:00:01",
            psrc="198.18.0.1",
            hwdst="02:00:00:00:00:02",
            pdst="198.18.0.2",
        )
    )
    pkt = arp.parse(wire)
    assert pkt.op == ArpOp.REPLY
    assert pkt.sender_mac == bytes.fromhex("020000000001") and pkt.target_mac == MAC_A
    assert (pkt.sender_ip, pkt.target_ip) == (addr("198.18.0.1"), addr("198.18.0.2"))
