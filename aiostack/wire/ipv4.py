"""IPv4 headers (RFC 791): options kept, DF/MF/offset, header checksum.

Addresses are ``int`` throughout the stack (cheap to hash, compare, mask and
checksum); :func:`addr` and :func:`addr_str` convert at the edges.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from aiostack.wire.errors import ParseError
from aiostack.wire.types import BytesLike

MIN_HEADER_LEN = 20
MAX_HEADER_LEN = 60
MAX_PACKET_LEN = 65535

FLAG_DF = 0x4000
FLAG_MF = 0x2000
OFFSET_MASK = 0x1FFF

_HEADER = struct.Struct("!BBHHHBBHII")
_from_bytes = int.from_bytes


class IpProto(IntEnum):
    ICMP = 1
    TCP = 6
    UDP = 17


@dataclass(slots=True)
class Ipv4Header:
    tos: int
    total_length: int
    ident: int
    frag: int  # flags and fragment offset as on the wire (FLAG_DF | FLAG_MF | offset/8)
    ttl: int
    proto: int
    checksum: int
    src: int
    dst: int
    options: bytes = b""

    @property
    def header_len(self) -> int:
        return MIN_HEADER_LEN + len(self.options)

    @property
    def dont_fragment(self) -> bool:
        return bool(self.frag & FLAG_DF)

    @property
    def more_fragments(self) -> bool:
        return bool(self.frag & FLAG_MF)

    @property
    def frag_offset(self) -> int:
        """Offset of this fragment's payload in the original datagram, in bytes."""
        return (self.frag & OFFSET_MASK) << 3

    @property
    def is_fragment(self) -> bool:
        return bool(self.frag & (FLAG_MF | OFFSET_MASK))

    @property
    def ecn(self) -> int:
        return self.tos & 0x3


def parse(packet: BytesLike, verify_checksum: bool = True) -> tuple[Ipv4Header, memoryview]:
    """Validate an IPv4 header and return it with the payload, trimmed to total length.

    Checks, in the order of Linux's ``ip_rcv_core``: length, version and IHL,
    header checksum, then total length against what arrived (link-layer
    padding beyond total length is cut off).
    """
    view = packet if type(packet) is memoryview else memoryview(packet)
    n = len(view)
    if n < MIN_HEADER_LEN:
        raise ParseError("truncated", f"{n} bytes < IPv4 header")
    vihl, tos, total, ident, frag, ttl, proto, csum, src, dst = _HEADER.unpack_from(view, 0)
    if vihl >> 4 != 4:
        raise ParseError("bad_version", f"version {vihl >> 4}")
    hlen = (vihl & 0xF) << 2
    if hlen < MIN_HEADER_LEN:
        raise ParseError("bad_header_length", f"IHL {hlen} bytes")
    if n < hlen:
        raise ParseError("truncated", f"{n} bytes < IHL {hlen}")
    options = bytes(view[MIN_HEADER_LEN:hlen]) if hlen > MIN_HEADER_LEN else b""
    if verify_checksum:
        # The header's words summed from the fields just unpacked (a 32-bit
        # address counts as itself: 2**16 is 1 modulo 0xFFFF) instead of
        # reading the bytes again; the version nibble makes the sum non-zero,
        # so "all ones" is "0 modulo 0xFFFF".
        value = (vihl << 8) + tos + total + ident + frag + (ttl << 8) + proto + csum + src + dst
        if options:
            value += _from_bytes(options, "big")
        if value % 0xFFFF:
            raise ParseError("bad_checksum", f"header checksum {csum:#06x}")
    if total < hlen:
        raise ParseError("bad_total_length", f"total length {total} < IHL {hlen}")
    if total > n:
        raise ParseError("truncated", f"total length {total} > {n} bytes received")
    header = Ipv4Header(tos, total, ident, frag, ttl, proto, csum, src, dst, options)
    return header, view[hlen:total]


def emit_into(
    buf: bytearray | memoryview,
    offset: int,
    *,
    src: int,
    dst: int,
    proto: int,
    payload_len: int,
    ttl: int = 64,
    tos: int = 0,
    ident: int = 0,
    frag: int = 0,
    options: bytes = b"",
) -> int:
    """Write an IPv4 header with a correct checksum at ``offset``; return its length.

    ``options`` must already be padded to a multiple of 4 bytes (at most 40).
    Per-packet callers should prefer :func:`write_header` (positional
    arguments: CPython 3.11 does not inline a call with keywords).
    """
    return write_header(buf, offset, src, dst, proto, payload_len, ttl, tos, ident, frag, options)


def write_header(
    buf: bytearray | memoryview,
    offset: int,
    src: int,
    dst: int,
    proto: int,
    payload_len: int,
    ttl: int,
    tos: int,
    ident: int,
    frag: int,
    options: bytes,
    /,
) -> int:
    """:func:`emit_into` with positional arguments, for the per-packet path.

    The checksum is computed from the field values (no second pass over the
    written bytes): the header's 16-bit words, a 32-bit address counting as
    itself since 2**16 is 1 modulo 0xFFFF.
    """
    olen = len(options)
    if olen & 3 or olen > MAX_HEADER_LEN - MIN_HEADER_LEN:
        raise ValueError(f"options: {olen} bytes is not a multiple of 4 up to 40")
    hlen = MIN_HEADER_LEN + olen
    total = hlen + payload_len
    if total > MAX_PACKET_LEN:
        raise ValueError(f"payload_len: {total} bytes exceeds the IPv4 maximum of 65535")
    vihl = 0x40 | (hlen >> 2)
    value = (vihl << 8) + tos + total + ident + frag + (ttl << 8) + proto + src + dst
    if olen:
        buf[offset + MIN_HEADER_LEN : offset + hlen] = options
        value += _from_bytes(options, "big")
    rest = value % 0xFFFF  # the version nibble makes value non-zero: 0 is all ones
    csum = 0xFFFF - rest if rest else 0
    _HEADER.pack_into(buf, offset, vihl, tos, total, ident, frag, ttl, proto, csum, src, dst)
    return hlen


def addr(text: str) -> int:
    """Dotted quad to int; ValueError names the bad text."""
    parts = text.split(".")
    if len(parts) != 4:
        raise ValueError(f"address: {text!r} is not a dotted-quad IPv4 address")
    value = 0
    for part in parts:
        # isascii: str.isdigit() also accepts "²" and Arabic-Indic digits.
        if not (part.isascii() and part.isdigit()) or len(part) > 3 or int(part) > 255:
            raise ValueError(f"address: {text!r} is not a dotted-quad IPv4 address")
        value = (value << 8) | int(part)
    return value


def addr_str(value: int) -> str:
    return f"{value >> 24}.{(value >> 16) & 255}.{(value >> 8) & 255}.{value & 255}"


LIMITED_BROADCAST = 0xFFFFFFFF
ANY = 0


def is_multicast(value: int) -> bool:
    return value >> 28 == 0xE


def is_loopback(value: int) -> bool:
    return value >> 24 == 127
