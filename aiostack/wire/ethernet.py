"""Ethernet II frames (IEEE 802.3 with an EtherType), 802.1Q tags tolerated.

A received frame is parsed into a small :class:`EthernetHeader` plus a
``memoryview`` of the payload; nothing is copied. One 802.1Q (or 802.1ad)
tag is skipped and its TCI kept, so a tagged frame reaches the same handler
as an untagged one. Frames are built by writing the 14-byte header in front
of a payload already placed in the buffer (:func:`emit_into`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from aiostack.wire.errors import ParseError
from aiostack.wire.types import BytesLike

HEADER_LEN = 14
VLAN_TAG_LEN = 4
BROADCAST = b"\xff\xff\xff\xff\xff\xff"
ZERO_MAC = b"\x00\x00\x00\x00\x00\x00"

_HEADER = struct.Struct("!6s6sH")
_TAG = struct.Struct("!HH")


class EtherType(IntEnum):
    IPV4 = 0x0800
    ARP = 0x0806
    VLAN = 0x8100
    QINQ = 0x88A8
    IPV6 = 0x86DD


# EtherType.VLAN and EtherType.QINQ as plain ints, for the per-frame test.
_TAGGED = (0x8100, 0x88A8)


@dataclass(slots=True)
class EthernetHeader:
    dst: bytes
    src: bytes
    ethertype: int
    vlan_tci: int | None = None

    @property
    def header_len(self) -> int:
        return HEADER_LEN if self.vlan_tci is None else HEADER_LEN + VLAN_TAG_LEN


def parse(frame: BytesLike) -> tuple[EthernetHeader, memoryview]:
    """Split a frame into its header and payload (trailing padding included).

    Ethernet pads short frames to 60 bytes; the payload keeps that padding,
    and the layer above trims by its own length field (IPv4 total length).
    """
    view = frame if type(frame) is memoryview else memoryview(frame)
    if len(view) < HEADER_LEN:
        raise ParseError("truncated", f"{len(view)} bytes < Ethernet header")
    dst, src, ethertype = _HEADER.unpack_from(view, 0)
    if ethertype in _TAGGED:
        if len(view) < HEADER_LEN + VLAN_TAG_LEN:
            raise ParseError("truncated", "802.1Q tag cut short")
        tci, ethertype = _TAG.unpack_from(view, HEADER_LEN)
        return EthernetHeader(dst, src, ethertype, tci), view[HEADER_LEN + VLAN_TAG_LEN :]
    return EthernetHeader(dst, src, ethertype), view[HEADER_LEN:]


def emit_into(
    buf: bytearray | memoryview, offset: int, dst: bytes, src: bytes, ethertype: int
) -> None:
    """Write an untagged Ethernet header at ``offset``."""
    _HEADER.pack_into(buf, offset, dst, src, ethertype)


def mac_to_str(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def mac_from_str(text: str) -> bytes:
    """Parse ``aa:bb:cc:dd:ee:ff`` (or with dashes); ValueError names the bad text."""
    parts = text.replace("-", ":").split(":")
    if len(parts) != 6:
        raise ValueError(f"mac: {text!r} is not six colon-separated octets")
    try:
        octets = bytes(int(p, 16) for p in parts)
    except ValueError:
        raise ValueError(f"mac: {text!r} has a non-hex octet") from None
    return octets


def is_multicast(mac: bytes) -> bool:
    """True for group addresses (broadcast included): the I/G bit of octet 0."""
    return bool(mac[0] & 1)
