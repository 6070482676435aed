"""virtio_net_hdr: layout, flags, and checksum completion as the kernel does it."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from aiostack.wire import ethernet, ipv4, tcp, udp, virtio
from aiostack.wire.checksum import pseudo_header_sum
from aiostack.wire.errors import ParseError

FAST = settings(max_examples=200, deadline=None)
SRC = ipv4.addr("198.18.0.2")
DST = ipv4.addr("198.18.0.1")
MAC_A = bytes.fromhex("020000000002")
MAC_B = bytes.fromhex("020000000001")

# NEEDS_CSUM | TCPv4 GSO, hdr_len 66, gso_size 1448, csum_start 34, csum_offset 16,
# little-endian 16-bit fields.
GSO_TCP_HDR = bytes.fromhex("01 01 4200 a805 2200 1000")


def test_constants() -> None:
    assert virtio.HEADER_LEN == 10
    assert bytes(10) == virtio.NO_OFFLOAD
    assert (virtio.VIRTIO_NET_HDR_F_NEEDS_CSUM, virtio.VIRTIO_NET_HDR_F_DATA_VALID) == (1, 2)
    assert (virtio.GSO_NONE, virtio.GSO_TCPV4, virtio.GSO_UDP, virtio.GSO_TCPV6) == (0, 1, 3, 4)
    assert virtio.GSO_ECN == 0x80
    assert virtio.CSUM_OFFSET_TCP == tcp.CHECKSUM_OFFSET == 16
    assert virtio.CSUM_OFFSET_UDP == 6


def test_parse_golden_little_endian() -> None:
    frame = bytes(80)
    hdr, rest = virtio.parse(GSO_TCP_HDR + frame)
    assert hdr == virtio.VnetHeader(1, 1, 66, 1448, 34, 16)
    assert hdr.needs_csum and not hdr.data_valid and hdr.checksum_trusted
    assert hdr.is_gso and not hdr.gso_ecn
    assert bytes(rest) == frame


def test_emit_golden() -> None:
    buf = bytearray(12)
    n = virtio.emit_into(
        buf,
        2,
        flags=virtio.F_NEEDS_CSUM,
        gso_type=virtio.GSO_TCPV4,
        hdr_len=66,
        gso_size=1448,
        csum_start=34,
        csum_offset=16,
    )
    assert n == 10 and bytes(buf) == b"\x00\x00" + GSO_TCP_HDR


def test_no_offload_parses_to_defaults() -> None:
    hdr, rest = virtio.parse(virtio.NO_OFFLOAD + b"frame")
    assert hdr == virtio.VnetHeader()
    assert not (hdr.needs_csum or hdr.data_valid or hdr.checksum_trusted or hdr.is_gso)
    assert bytes(rest) == b"frame"


def test_flags_properties() -> None:
    valid = virtio.VnetHeader(flags=virtio.F_DATA_VALID)
    assert valid.data_valid and valid.checksum_trusted and not valid.needs_csum
    ecn = virtio.VnetHeader(gso_type=virtio.GSO_TCPV4 | virtio.GSO_ECN)
    assert ecn.is_gso and ecn.gso_ecn
    assert not virtio.VnetHeader(gso_type=virtio.GSO_ECN).is_gso


def test_longer_configured_header() -> None:
    data = GSO_TCP_HDR + b"\x01\x00" + bytes(60)  # num_buffers = 1
    hdr, rest = virtio.parse(data, hdr_size=12)
    assert hdr.gso_size == 1448 and len(rest) == 60
    with pytest.raises(ValueError):
        virtio.parse(data, hdr_size=8)


def test_every_truncation_raises() -> None:
    for cut in range(10):
        with pytest.raises(ParseError) as info:
            virtio.parse(virtio.NO_OFFLOAD[:cut])
        assert info.value.reason == "truncated"


def test_csum_field_outside_frame_rejected() -> None:
    buf = bytearray(10 + 50)
    virtio.emit_into(buf, 0, flags=virtio.F_NEEDS_CSUM, csum_start=34, csum_offset=16)
    with pytest.raises(ParseError) as info:
        virtio.parse(buf)
    assert info.value.reason == "bad_csum_offset"
    # Exactly fitting is fine; without NEEDS_CSUM the offsets are not checked.
    virtio.parse(bytes(buf) + bytes(2))
    virtio.emit_into(buf, 0, csum_start=34, csum_offset=16)
    virtio.parse(buf)


@FAST
@given(
    flags=st.integers(0, 3),
    gso_type=st.integers(0, 255),
    hdr_len=st.integers(0, 0xFFFF),
    gso_size=st.integers(0, 0xFFFF),
    csum_start=st.integers(0, 200),
    csum_offset=st.integers(0, 40),
    frame=st.binary(min_size=242, max_size=300),
)
def test_parse_after_emit(
    flags: int,
    gso_type: int,
    hdr_len: int,
    gso_size: int,
    csum_start: int,
    csum_offset: int,
    frame: bytes,
) -> None:
    buf = bytearray(10) + frame
    virtio.emit_into(
        buf,
        0,
        flags=flags,
        gso_type=gso_type,
        hdr_len=hdr_len,
        gso_size=gso_size,
        csum_start=csum_start,
        csum_offset=csum_offset,
    )
    hdr, rest = virtio.parse(buf)
    assert hdr == virtio.VnetHeader(flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)
    assert bytes(rest) == frame


@FAST
@given(st.binary(max_size=64))
def test_random_bytes_only_parse_error(data: bytes) -> None:
    with contextlib.suppress(ParseError):
        virtio.parse(data)


def _offloaded_tcp_frame(payload: bytes) -> bytearray:
    """Ethernet + IPv4 + TCP with a partial checksum, as aiostack would hand it to a TAP."""
    options = tcp.encode_options(timestamps=(1, 2))
    tcp_len = tcp.HEADER_LEN + len(options) + len(payload)
    frame = bytearray(ethernet.HEADER_LEN + ipv4.MIN_HEADER_LEN + tcp_len)
    l4 = ethernet.HEADER_LEN + ipv4.MIN_HEADER_LEN
    frame[l4 + tcp.HEADER_LEN + len(options) :] = payload
    tcp.emit_into(
        frame,
        l4,
        src_port=5000,
        dst_port=80,
        seq=1,
        ack=2,
        flags=tcp.PSH | tcp.ACK,
        window=100,
        options=options,
        payload_len=len(payload),
        src=SRC,
        dst=DST,
        checksum=False,
    )
    ipv4.emit_into(
        frame, ethernet.HEADER_LEN, src=SRC, dst=DST, proto=tcp.PROTO, payload_len=tcp_len
    )
    ethernet.emit_into(frame, 0, MAC_B, MAC_A, ethernet.EtherType.IPV4)
    return frame


@FAST
@given(st.binary(max_size=100))
def test_complete_checksum_finishes_tcp_like_the_kernel(payload: bytes) -> None:
    frame = _offloaded_tcp_frame(payload)
    l4 = 34
    with pytest.raises(ParseError):  # the seed alone is not a valid checksum
        tcp.parse(frame[l4:], SRC, DST)
    virtio.complete_checksum(frame, l4, virtio.CSUM_OFFSET_TCP)
    tcp.parse(frame[l4:], SRC, DST)
    # scapy, recomputing from scratch, agrees.
    pkt = Ether(bytes(frame))
    got = pkt[TCP].chksum
    del pkt[TCP].chksum
    want = Ether(bytes(pkt))[TCP].chksum
    assert got == want or {got, want} == {0, 0xFFFF}


def test_complete_checksum_udp() -> None:
    payload = b"udp offload"
    frame = bytearray(8 + len(payload))
    frame[8:] = payload
    udp.emit_into(
        frame, 0, src_port=1, dst_port=2, payload_len=len(payload), src=SRC, dst=DST, checksum=False
    )
    # udp.emit_into(checksum=False) leaves 0 ("no checksum"); seed it as the kernel would.
    struct.pack_into("!H", frame, 6, pseudo_header_sum(SRC, DST, udp.PROTO, len(frame)))
    virtio.complete_checksum(frame, 0, virtio.CSUM_OFFSET_UDP)
    hdr, got = udp.parse(frame, SRC, DST)
    assert bytes(got) == payload
    want = UDP(bytes(IP(src="198.18.0.2", dst="198.18.0.1") / UDP(sport=1, dport=2) / payload)[20:])
    assert hdr.checksum == want.chksum


def test_complete_checksum_writes_ffff_for_zero() -> None:
    # A 4-byte "segment" whose sum is all ones: the complement is 0, stored as 0xFFFF.
    frame = bytearray(b"\xff\xff\x00\x00")
    virtio.complete_checksum(frame, 0, 2)
    assert frame == bytearray(b"\xff\xff\xff\xff")


def test_complete_checksum_rejects_out_of_range() -> None:
    with pytest.raises(ValueError):
        virtio.complete_checksum(bytearray(20), 10, 9)
    with pytest.raises(ValueError):
        virtio.complete_checksum(bytearray(20), -1, 2)
