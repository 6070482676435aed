"""Ethernet II framing, 802.1Q/802.1ad tags, MAC helpers, scapy cross-checks."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.l2 import Dot1AD, Dot1Q, Ether
from scapy.packet import Raw

from aiostack.wire import ethernet
from aiostack.wire.errors import ParseError
from aiostack.wire.ethernet import EtherType

FAST = settings(max_examples=200, deadline=None)
macs = st.binary(min_size=6, max_size=6)

MAC_A = bytes.fromhex("020000000002")
UNTAGGED = bytes.fromhex("ffffffffffff 020000000002 0806") + b"payload"
# 802.1Q tag: PCP 3, DEI 0, VID 100 -> TCI 0x6064; inner EtherType IPv4.
TAGGED = bytes.fromhex("020000000001 020000000002 8100 6064 0800") + b"ip here"


def test_parse_untagged_golden() -> None:
    hdr, payload = ethernet.parse(UNTAGGED)
    assert hdr == ethernet.EthernetHeader(ethernet.BROADCAST, MAC_A, EtherType.ARP, None)
    assert hdr.header_len == 14
    assert bytes(payload) == b"payload"


def test_parse_8021q_tagged() -> None:
    hdr, payload = ethernet.parse(TAGGED)
    assert hdr.ethertype == EtherType.IPV4
    assert hdr.vlan_tci == 0x6064 and hdr.vlan_tci & 0xFFF == 100 and hdr.vlan_tci >> 13 == 3
    assert hdr.header_len == 18
    assert bytes(payload) == b"ip here"


def test_parse_8021ad_outer_tag() -> None:
    frame = bytes.fromhex("020000000001 020000000002 88a8 000a 0806") + b"arp"
    hdr, payload = ethernet.parse(frame)
    assert (hdr.ethertype, hdr.vlan_tci, bytes(payload)) == (EtherType.ARP, 10, b"arp")


def test_padding_is_kept_in_payload() -> None:
    frame = UNTAGGED + bytes(60 - len(UNTAGGED))
    _, payload = ethernet.parse(frame)
    assert len(payload) == 46  # the layer above trims by its own length


def test_emit_golden() -> None:
    buf = bytearray(14 + 7)
    buf[14:] = b"payload"
    ethernet.emit_into(buf, 0, ethernet.BROADCAST, MAC_A, EtherType.ARP)
    assert bytes(buf) == UNTAGGED


def test_payload_is_a_view() -> None:
    frame = bytearray(UNTAGGED)
    _, payload = ethernet.parse(frame)
    frame[14] = ord("P")
    assert bytes(payload[:1]) == b"P"


@pytest.mark.parametrize("frame", [UNTAGGED, TAGGED], ids=["untagged", "tagged"])
def test_every_header_truncation_raises(frame: bytes) -> None:
    header_len = 18 if frame is TAGGED else 14
    for cut in range(header_len):
        with pytest.raises(ParseError) as info:
            ethernet.parse(frame[:cut])
        assert info.value.reason == "truncated"


@FAST
@given(st.binary(max_size=40))
def test_random_bytes_only_parse_error(data: bytes) -> None:
    try:
        hdr, payload = ethernet.parse(data)
    except ParseError:
        return
    assert len(payload) == len(data) - hdr.header_len


@FAST
@given(
    dst=macs,
    src=macs,
    ethertype=st.sampled_from([0x0800, 0x0806, 0x86DD, 0x88CC, 0x0600]),
    payload=st.binary(max_size=64),
)
def test_parse_after_emit(dst: bytes, src: bytes, ethertype: int, payload: bytes) -> None:
    buf = bytearray(14) + payload
    ethernet.emit_into(buf, 0, dst, src, ethertype)
    hdr, got = ethernet.parse(buf)
    assert (hdr.dst, hdr.src, hdr.ethertype, hdr.vlan_tci) == (dst, src, ethertype, None)
    assert bytes(got) == payload
    # scapy reads the same frame the same way.
    pkt = Ether(bytes(buf))
    assert (pkt.dst, pkt.src, pkt.type) == (
        ethernet.mac_to_str(dst),
        ethernet.mac_to_str(src),
        ethertype,
    )


@FAST
@given(
    dst=macs,
    src=macs,
    vlan=st.integers(0, 4095),
    prio=st.integers(0, 7),
    payload=st.binary(min_size=1, max_size=64),
    qinq=st.booleans(),
)
def test_parse_scapy_tagged(
    dst: bytes, src: bytes, vlan: int, prio: int, payload: bytes, qinq: bool
) -> None:
    tag = Dot1AD if qinq else Dot1Q
    frame = bytes(
        Ether(dst=ethernet.mac_to_str(dst), src=ethernet.mac_to_str(src))
        / tag(vlan=vlan, prio=prio, type=0x0800)
        / Raw(payload)
    )
    hdr, got = ethernet.parse(frame)
    assert (hdr.dst, hdr.src, hdr.ethertype) == (dst, src, 0x0800)
    assert hdr.vlan_tci == (prio << 13) | vlan
    assert bytes(got) == payload


def test_mac_helpers() -> None:
    assert ethernet.mac_to_str(MAC_A) == "02:00:00:00:00:02"
    assert ethernet.mac_from_str("02:00:00:00:00:02") == MAC_A
    assert ethernet.mac_from_str("AA-BB-CC-DD-EE-FF") == bytes.fromhex("aabbccddeeff")
    with pytest.raises(ValueError, match="six"):
        ethernet.mac_from_str("02:00:00:00:00")
    with pytest.raises(ValueError, match="non-hex"):
        ethernet.mac_from_str("02:00:00:00:00:zz")
    assert ethernet.is_multicast(ethernet.BROADCAST)
    assert ethernet.is_multicast(bytes.fromhex("01005e000001"))
    assert not ethernet.is_multicast(MAC_A)


@FAST
@given(macs)
def test_mac_text_round_trip(mac: bytes) -> None:
    assert ethernet.mac_from_str(ethernet.mac_to_str(mac)) == mac
