"""ARP for Ethernet and IPv4 (RFC 826), the only pairing aiostack speaks.

Addresses are kept as 6-byte ``bytes`` (MAC) and ``int`` (IPv4) so the
neighbour table and route lookups never convert.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from aiostack.wire.errors import ParseError
from aiostack.wire.types import BytesLike

PACKET_LEN = 28
HTYPE_ETHERNET = 1
PTYPE_IPV4 = 0x0800

_PACKET = struct.Struct("!HHBBH6sI6sI")


class ArpOp(IntEnum):
    REQUEST = 1
    REPLY = 2


@dataclass(slots=True)
class ArpPacket:
    op: int
    sender_mac: bytes
    sender_ip: int
    target_mac: bytes
    target_ip: int


def parse(data: BytesLike) -> ArpPacket:
    view = memoryview(data)
    if len(view) < PACKET_LEN:
        raise ParseError("truncated", f"{len(view)} bytes < ARP packet")
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _PACKET.unpack_from(view, 0)
    if htype != HTYPE_ETHERNET or hlen != 6:
        raise ParseError("unsupported_hardware", f"htype={htype} hlen={hlen}")
    if ptype != PTYPE_IPV4 or plen != 4:
        raise ParseError("unsupported_protocol", f"ptype={ptype:#x} plen={plen}")
    if op not in (ArpOp.REQUEST, ArpOp.REPLY):
        raise ParseError("bad_op", f"op={op}")
    return ArpPacket(op, sha, spa, tha, tpa)


def emit_into(buf: bytearray | memoryview, offset: int, packet: ArpPacket) -> None:
    _PACKET.pack_into(
        buf,
        offset,
        HTYPE_ETHERNET,
        PTYPE_IPV4,
        6,
        4,
        packet.op,
        packet.sender_mac,
        packet.sender_ip,
        packet.target_mac,
        packet.target_ip,
    )
