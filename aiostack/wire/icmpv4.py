"""ICMPv4 messages (RFC 792, RFC 1191, RFC 1812).

Every ICMP message is a 4-byte type/code/checksum, a 4-byte "rest of header"
whose meaning depends on the type (echo identifier and sequence, next-hop MTU
of fragmentation-needed, parameter-problem pointer), and a body: the echo
data, or for an error the quoted original IP header plus the start of its
payload. :class:`IcmpHeader` exposes those meanings as properties over the
raw ``rest`` word, so parsing stays one ``unpack_from``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from aiostack.wire.checksum import checksum_of, ones_sum, wide_sum
from aiostack.wire.errors import ParseError
from aiostack.wire.types import BytesLike

HEADER_LEN = 8
PROTO = 1

_HEADER = struct.Struct("!BBHI")


class IcmpType(IntEnum):
    ECHO_REPLY = 0
    DEST_UNREACH = 3
    SOURCE_QUENCH = 4
    REDIRECT = 5
    ECHO_REQUEST = 8
    TIME_EXCEEDED = 11
    PARAM_PROBLEM = 12
    TIMESTAMP = 13
    TIMESTAMP_REPLY = 14


class UnreachCode(IntEnum):
    NET = 0
    HOST = 1
    PROTOCOL = 2
    PORT = 3
    FRAG_NEEDED = 4
    SOURCE_ROUTE_FAILED = 5
    NET_UNKNOWN = 6
    HOST_UNKNOWN = 7
    NET_PROHIBITED = 9
    HOST_PROHIBITED = 10
    ADMIN_PROHIBITED = 13


class TimeExceededCode(IntEnum):
    TTL = 0
    REASSEMBLY = 1


#: Types that report an error about another datagram (RFC 1122 3.2.2): never
#: answered with another ICMP error.
ERROR_TYPES = frozenset(
    {
        IcmpType.DEST_UNREACH,
        IcmpType.SOURCE_QUENCH,
        IcmpType.REDIRECT,
        IcmpType.TIME_EXCEEDED,
        IcmpType.PARAM_PROBLEM,
    }
)


@dataclass(slots=True)
class IcmpHeader:
    type: int
    code: int
    checksum: int
    rest: int

    @property
    def ident(self) -> int:
        """Echo identifier."""
        return self.rest >> 16

    @property
    def sequence(self) -> int:
        """Echo sequence number."""
        return self.rest & 0xFFFF

    @property
    def next_hop_mtu(self) -> int:
        """MTU of fragmentation-needed (RFC 1191), 0 from pre-1191 routers."""
        return self.rest & 0xFFFF

    @property
    def pointer(self) -> int:
        """Offset of the bad octet in a parameter problem."""
        return self.rest >> 24

    @property
    def is_error(self) -> bool:
        return self.type in ERROR_TYPES


def echo_rest(ident: int, sequence: int) -> int:
    return ((ident & 0xFFFF) << 16) | (sequence & 0xFFFF)


def frag_needed_rest(mtu: int) -> int:
    return mtu & 0xFFFF


def param_problem_rest(pointer: int) -> int:
    return (pointer & 0xFF) << 24


def parse(message: BytesLike, verify_checksum: bool = True) -> tuple[IcmpHeader, memoryview]:
    view = message if type(message) is memoryview else memoryview(message)
    if len(view) < HEADER_LEN:
        raise ParseError("truncated", f"{len(view)} bytes < ICMP header")
    icmp_type, code, csum, rest = _HEADER.unpack_from(view, 0)
    if verify_checksum and ones_sum(view) != 0xFFFF:
        raise ParseError("bad_checksum", f"ICMP checksum {csum:#06x}")
    return IcmpHeader(icmp_type, code, csum, rest), view[HEADER_LEN:]


def emit_into(
    buf: bytearray | memoryview, offset: int, *, type: int, code: int, rest: int, body_len: int
) -> None:
    """Write an ICMP header at ``offset``; the body must already follow it."""
    start = offset + HEADER_LEN
    value = wide_sum(buf, start, start + body_len) if body_len else 0
    value += ((type << 8) | code) + rest
    _HEADER.pack_into(buf, offset, type, code, checksum_of(value), rest)


def quoted_original(body: BytesLike) -> tuple[int, int, int, int, int, int, memoryview]:
    """Decode the datagram an ICMP error quotes.

    Returns ``(proto, src, dst, src_port, dst_port, ihl, view)`` where ports
    are the first 4 bytes after the quoted IP header (0 when fewer than 4 were
    quoted) and ``view`` is the quoted transport header and data. Used to
    route an error to the socket that sent the original datagram.
    """
    view = memoryview(body)
    if len(view) < 20:
        raise ParseError("truncated", "quoted IPv4 header cut short")
    vihl = view[0]
    if vihl >> 4 != 4:
        raise ParseError("bad_version", "quoted header is not IPv4")
    ihl = (vihl & 0xF) << 2
    if ihl < 20 or len(view) < ihl:
        raise ParseError("bad_header_length", f"quoted IHL {ihl}")
    proto = view[9]
    src = int.from_bytes(view[12:16], "big")
    dst = int.from_bytes(view[16:20], "big")
    rest = view[ihl:]
    if len(rest) >= 4:
        sport = (rest[0] << 8) | rest[1]
        dport = (rest[2] << 8) | rest[3]
    else:
        sport = dport = 0
    return proto, src, dst, sport, dport, ihl, rest
