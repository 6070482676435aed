"""The Internet checksum against a plain per-word RFC 1071 reference."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiostack.wire.checksum import (
    internet_checksum,
    ones_sum,
    pseudo_header_sum,
    transport_checksum,
    verify_transport,
)

FAST = settings(max_examples=200, deadline=None)
u32 = st.integers(0, 0xFFFFFFFF)


def ref_sum(data: bytes) -> int:
    """RFC 1071 literally: add 16-bit words with end-around carry, pad odd length."""
    if len(data) % 2:
        data += b"\x00"
    total = 0
    for (word,) in struct.iter_unpack("!H", data):
        total += word
        total = (total & 0xFFFF) + (total >> 16)
    return total


def ref_checksum(data: bytes) -> int:
    return ~ref_sum(data) & 0xFFFF


def test_rfc1071_example() -> None:
    # RFC 1071 section 3: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert ones_sum(data) == ref_sum(data) == 0xDDF2
    assert internet_checksum(data) == 0x220D


def test_known_ipv4_header() -> None:
    header = bytearray.fromhex("450000730000400040110000c0a80001c0a800c7")
    assert internet_checksum(header) == 0xB861
    header[10:12] = b"\xb8\x61"
    assert ones_sum(header) == 0xFFFF and internet_checksum(header) == 0


@pytest.mark.parametrize(
    ("data", "total"),
    [
        (b"", 0),
        (b"\x00" * 7, 0),  # all zeros: "positive zero"
        (b"\xff\xff", 0xFFFF),  # "negative zero" must not collapse to 0
        (b"\xff\xff" * 5, 0xFFFF),
        (b"\x00\x01\xff\xfe", 0xFFFF),  # a non-zero input whose sum is all ones
        (b"\x80\x00\x80\x00", 0x0001),  # carry wraps around
        (b"\x01", 0x0100),  # odd length pads on the right
        (b"\x12\x34\x56", 0x6834),
    ],
)
def test_edge_cases(data: bytes, total: int) -> None:
    assert ones_sum(data) == ref_sum(data) == total
    assert internet_checksum(data) == (~total & 0xFFFF)


def test_checksum_of_zeros_is_ffff_and_of_ones_is_zero() -> None:
    assert internet_checksum(bytes(20)) == 0xFFFF
    assert internet_checksum(b"\xff" * 20) == 0


def test_accepts_all_bytes_like() -> None:
    data = bytes(range(1, 50))
    assert ones_sum(data) == ones_sum(bytearray(data)) == ones_sum(memoryview(data))
    assert ones_sum(memoryview(b"xx" + data)[2:]) == ones_sum(data)


@FAST
@given(st.binary(max_size=300))
def test_matches_reference(data: bytes) -> None:
    assert ones_sum(data) == ref_sum(data)
    assert internet_checksum(data) == ref_checksum(data)


@FAST
@given(st.binary(max_size=100).map(lambda b: b[: len(b) & ~1]), st.binary(max_size=100))
def test_partial_sums_combine(first: bytes, second: bytes) -> None:
    # ``initial`` carries a folded sum across an even-length boundary.
    assert ones_sum(second, ones_sum(first)) == ref_sum(first + second)


@FAST
@given(st.binary(min_size=2, max_size=200).map(lambda b: b[: len(b) & ~1]))
def test_inserting_checksum_verifies(data: bytes) -> None:
    # Append the checksum as a trailing word: the whole then sums to all ones.
    framed = data + struct.pack("!H", internet_checksum(data))
    assert ones_sum(framed) == 0xFFFF


@FAST
@given(src=u32, dst=u32, proto=st.integers(0, 255), length=st.integers(0, 0xFFFF))
def test_pseudo_header_matches_reference(src: int, dst: int, proto: int, length: int) -> None:
    pseudo = struct.pack("!IIBBH", src, dst, 0, proto, length)
    assert pseudo_header_sum(src, dst, proto, length) == ref_sum(pseudo)


@FAST
@given(src=u32, dst=u32, segment=st.binary(min_size=8, max_size=120), flip=st.integers(0, 7))
def test_transport_checksum_and_verify(src: int, dst: int, segment: bytes, flip: int) -> None:
    seg = bytearray(segment)
    seg[6:8] = b"\x00\x00"  # UDP-style checksum field
    pseudo = struct.pack("!IIBBH", src, dst, 0, 17, len(seg))
    csum = transport_checksum(src, dst, 17, seg)
    assert csum == ref_checksum(pseudo + bytes(seg))
    seg[6:8] = struct.pack("!H", csum)
    assert verify_transport(src, dst, 17, seg)
    # Any single-bit error is detected.
    seg[0] ^= 1 << flip
    assert not verify_transport(src, dst, 17, seg)
