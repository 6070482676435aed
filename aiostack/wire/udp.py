"""UDP datagrams (RFC 768) with the IPv4 pseudo-header checksum.

On receive a zero checksum means the sender computed none (RFC 768), so it is
not verified; on send a computed zero is written as 0xFFFF, the other
representation of zero, so that it is not mistaken for "no checksum".
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from aiostack.wire import checksum as _checksum
from aiostack.wire.checksum import checksum_of, wide_sum
from aiostack.wire.errors import ParseError
from aiostack.wire.types import BytesLike

HEADER_LEN = 8
PROTO = 17

_HEADER = struct.Struct("!HHHH")
_from_bytes = int.from_bytes


@dataclass(slots=True)
class UdpHeader:
    src_port: int
    dst_port: int
    length: int
    checksum: int


def parse(
    segment: BytesLike, src: int, dst: int, verify_checksum: bool = True
) -> tuple[UdpHeader, memoryview]:
    """Validate a UDP datagram carried from ``src`` to ``dst`` (int addresses).

    The payload is trimmed to the UDP length field (IP may carry padding).
    """
    view = segment if type(segment) is memoryview else memoryview(segment)
    sport, dport, length, csum, view = _validate(view)
    if verify_checksum and csum and (wide_sum(view) + src + dst + PROTO + length) % 0xFFFF:
        raise ParseError("bad_checksum", f"UDP checksum {csum:#06x}")
    return UdpHeader(sport, dport, length, csum), view[HEADER_LEN:]


def parse_in(
    segment: memoryview, src: int, dst: int, verify_checksum: bool = True
) -> tuple[int, int, memoryview]:
    """:func:`parse` for the receive fast path: ``(src_port, dst_port, payload)``.

    Builds no header object, and folds the pseudo-header in as ``src + dst``:
    only the sum modulo 0xFFFF matters, and 2**16 is 1 modulo 0xFFFF, so a
    32-bit address counts the same as the sum of its two 16-bit halves.
    """
    n = len(segment)
    if n < HEADER_LEN:
        raise ParseError("truncated", f"{n} bytes < UDP header")
    sport, dport, length, csum = _HEADER.unpack_from(segment, 0)
    if length != n:
        if length < HEADER_LEN or length > n:
            raise ParseError("bad_length", f"UDP length {length} with {n} bytes received")
        segment = segment[:length]
    if verify_checksum and csum:
        if length < _checksum.NUMPY_MIN:
            value = _from_bytes(segment, "big")
            if length & 1:
                value <<= 8
        else:
            value = wide_sum(segment, 0, length)
        if (value + src + dst + PROTO + length) % 0xFFFF:
            raise ParseError("bad_checksum", f"UDP checksum {csum:#06x}")
    return sport, dport, segment[HEADER_LEN:]


def _validate(view: memoryview) -> tuple[int, int, int, int, memoryview]:
    n = len(view)
    if n < HEADER_LEN:
        raise ParseError("truncated", f"{n} bytes < UDP header")
    sport, dport, length, csum = _HEADER.unpack_from(view, 0)
    if length < HEADER_LEN or length > n:
        raise ParseError("bad_length", f"UDP length {length} with {n} bytes received")
    return sport, dport, length, csum, view[:length] if length != n else view


def emit_into(
    buf: bytearray | memoryview,
    offset: int,
    *,
    src_port: int,
    dst_port: int,
    payload_len: int,
    src: int,
    dst: int,
    checksum: bool = True,
) -> None:
    """Write the UDP header at ``offset``; the payload must already follow it.

    With ``checksum=False`` the field is left 0 (e.g. when a device fills it).
    """
    length = HEADER_LEN + payload_len
    csum = 0
    if checksum:
        start = offset + HEADER_LEN
        value = wide_sum(buf, start, start + payload_len) if payload_len else 0
        # Header words (the length twice: once more in the pseudo-header) and
        # the pseudo-header's addresses and protocol.
        value += src_port + dst_port + length + length + src + dst + PROTO
        csum = checksum_of(value) or 0xFFFF
    _HEADER.pack_into(buf, offset, src_port, dst_port, length, csum)
