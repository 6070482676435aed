"""The ``virtio_net_hdr`` that prefixes every frame on a TAP opened with IFF_VNET_HDR.

With ``IFF_VNET_HDR`` (and offloads enabled with ``TUNSETOFFLOAD``) each read
from and write to the TAP starts with this 10-byte header. It is how the
kernel and aiostack hand each other checksum and segmentation work, which is
what lets a Python stack move 64 KB per system call instead of 1500 bytes
(``ref/performance-facts.md``: 378 MB/s without it, 1.77 GB/s with it).

Layout (``struct virtio_net_hdr``, legacy format)::

    u8  flags        NEEDS_CSUM=1, DATA_VALID=2
    u8  gso_type     GSO_NONE=0, TCPV4=1, UDP=3, TCPV6=4, UDP_L4=5, | ECN=0x80
    u16 hdr_len      bytes of headers (Ethernet + IP + TCP) in a GSO frame
    u16 gso_size     payload bytes per segment (the MSS) in a GSO frame
    u16 csum_start   offset from the start of the Ethernet frame where summing starts
    u16 csum_offset  offset from csum_start of the 16-bit checksum field

The 16-bit fields are in the device's "virtio endianness": for a TAP that
is the host's byte order unless ``TUNSETVNETBE`` is set, i.e. little-endian
on x86 and arm64, which is what this module encodes. The header can be
configured longer (``TUNSETVNETHDRSZ``, e.g. 12 bytes with ``num_buffers``);
:func:`parse` takes the configured size and ignores the extra bytes.

Receive (kernel -> aiostack):

- ``NEEDS_CSUM``: the frame came from a local socket and its transport
  checksum was never computed; the field holds only the pseudo-header seed.
  The data cannot have been corrupted on a wire, so treat the checksum as
  valid (parse with ``verify_checksum=False``). If aiostack forwards or
  captures such a frame, :func:`complete_checksum` finishes it.
- ``DATA_VALID``: the kernel (or a real NIC) already verified the checksum;
  skip verification.
- ``gso_type`` other than ``GSO_NONE``: one "frame" carries a large TCP or
  UDP payload that would be ``gso_size``-byte segments on a real wire.
  A stack may simply accept it as one big segment.

Transmit (aiostack -> kernel):

- ``NEEDS_CSUM`` with ``csum_start`` (the transport header's offset in the
  frame) and ``csum_offset`` (16 for TCP, 6 for UDP): the kernel sums from
  ``csum_start`` to the end of the frame and stores the complement at
  ``csum_start + csum_offset``. The field must hold the pseudo-header seed
  (``tcp.emit_into(..., checksum=False)`` writes it).
- ``gso_type``/``gso_size``/``hdr_len``: ask the kernel to cut one large
  frame into ``gso_size``-byte segments (TSO); requires ``NEEDS_CSUM``.
- :data:`NO_OFFLOAD` (all zeros): a complete frame, nothing to do.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from aiostack.wire.checksum import ones_sum
from aiostack.wire.errors import ParseError
from aiostack.wire.types import BytesLike

HEADER_LEN = 10

VIRTIO_NET_HDR_F_NEEDS_CSUM = 1
VIRTIO_NET_HDR_F_DATA_VALID = 2

VIRTIO_NET_HDR_GSO_NONE = 0
VIRTIO_NET_HDR_GSO_TCPV4 = 1
VIRTIO_NET_HDR_GSO_UDP = 3
VIRTIO_NET_HDR_GSO_TCPV6 = 4
VIRTIO_NET_HDR_GSO_UDP_L4 = 5
VIRTIO_NET_HDR_GSO_ECN = 0x80

# Short names, as used by the rest of aiostack.
F_NEEDS_CSUM = VIRTIO_NET_HDR_F_NEEDS_CSUM
F_DATA_VALID = VIRTIO_NET_HDR_F_DATA_VALID
GSO_NONE = VIRTIO_NET_HDR_GSO_NONE
GSO_TCPV4 = VIRTIO_NET_HDR_GSO_TCPV4
GSO_UDP = VIRTIO_NET_HDR_GSO_UDP
GSO_TCPV6 = VIRTIO_NET_HDR_GSO_TCPV6
GSO_UDP_L4 = VIRTIO_NET_HDR_GSO_UDP_L4
GSO_ECN = VIRTIO_NET_HDR_GSO_ECN

#: ``csum_offset`` values: where the checksum field sits in each transport header.
CSUM_OFFSET_TCP = 16
CSUM_OFFSET_UDP = 6

_HEADER = struct.Struct("<BBHHHH")
#: The header layout, for hot paths that pack it in place (TCP output).
HEADER_STRUCT = _HEADER
_CHECKSUM = struct.Struct("!H")

#: The header of a frame that needs nothing from the kernel (all fields zero).
NO_OFFLOAD = bytes(HEADER_LEN)


@dataclass(slots=True)
class VnetHeader:
    """A decoded ``virtio_net_hdr``; see the module docstring for the meanings."""

    flags: int = 0
    gso_type: int = GSO_NONE
    hdr_len: int = 0
    gso_size: int = 0
    csum_start: int = 0
    csum_offset: int = 0

    @property
    def needs_csum(self) -> bool:
        """The transport checksum is partial (pseudo-header seed only)."""
        return bool(self.flags & F_NEEDS_CSUM)

    @property
    def data_valid(self) -> bool:
        """The transport checksum was already verified."""
        return bool(self.flags & F_DATA_VALID)

    @property
    def checksum_trusted(self) -> bool:
        """Either flag: the receiver need not verify the transport checksum."""
        return bool(self.flags & (F_NEEDS_CSUM | F_DATA_VALID))

    @property
    def is_gso(self) -> bool:
        """The frame is a large send to be (or that was) cut into ``gso_size`` pieces."""
        return (self.gso_type & ~GSO_ECN) != GSO_NONE

    @property
    def gso_ecn(self) -> bool:
        """The segments carry CWR on the first one only (TCP ECN with TSO)."""
        return bool(self.gso_type & GSO_ECN)


def parse(data: BytesLike, hdr_size: int = HEADER_LEN) -> tuple[VnetHeader, memoryview]:
    """Split a TAP read into its virtio header and the Ethernet frame after it.

    ``hdr_size`` is the size set with ``TUNSETVNETHDRSZ`` (10 by default,
    12 with ``num_buffers``). A ``NEEDS_CSUM`` header whose checksum field
    would lie outside the frame is rejected (``bad_csum_offset``), as the
    kernel's ``skb_partial_csum_set`` rejects it.
    """
    if hdr_size < HEADER_LEN:
        raise ValueError(f"hdr_size: {hdr_size} is smaller than the {HEADER_LEN}-byte header")
    view = data if type(data) is memoryview else memoryview(data)
    n = len(view)
    if n < hdr_size:
        raise ParseError("truncated", f"{n} bytes < virtio-net header of {hdr_size}")
    flags, gso_type, hdr_len, gso_size, csum_start, csum_offset = _HEADER.unpack_from(view, 0)
    if flags & F_NEEDS_CSUM and csum_start + csum_offset + 2 > n - hdr_size:
        raise ParseError(
            "bad_csum_offset",
            f"csum_start {csum_start} + csum_offset {csum_offset} beyond {n - hdr_size}-byte frame",
        )
    return (
        VnetHeader(flags, gso_type, hdr_len, gso_size, csum_start, csum_offset),
        view[hdr_size:],
    )


def emit_into(
    buf: bytearray | memoryview,
    offset: int,
    *,
    flags: int = 0,
    gso_type: int = GSO_NONE,
    hdr_len: int = 0,
    gso_size: int = 0,
    csum_start: int = 0,
    csum_offset: int = 0,
) -> int:
    """Write a 10-byte header at ``offset`` (the frame follows); return its length."""
    _HEADER.pack_into(buf, offset, flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)
    return HEADER_LEN


def complete_checksum(frame: bytearray | memoryview, csum_start: int, csum_offset: int) -> None:
    """Finish a partial checksum in place, as the kernel does for ``NEEDS_CSUM``.

    Sums ``frame[csum_start:]`` (the checksum field, holding the
    pseudo-header seed, included) and stores the complement at
    ``csum_start + csum_offset``. A result of 0 is stored as 0xFFFF, as
    Linux's ``skb_checksum_help`` does, because the device does not know
    whether the protocol is UDP, where 0 would mean "no checksum". Used to
    write offloaded frames to a pcap or to hand them to a peer that expects
    finished checksums. The frame must end where the transport segment ends
    (no link-layer padding), which holds for every frame that carries
    ``NEEDS_CSUM``.
    """
    field = csum_start + csum_offset
    if csum_start < 0 or csum_offset < 0 or field + 2 > len(frame):
        raise ValueError(
            f"csum_start {csum_start} + csum_offset {csum_offset} outside a {len(frame)}-byte frame"
        )
    csum = ~ones_sum(memoryview(frame)[csum_start:]) & 0xFFFF
    _CHECKSUM.pack_into(frame, field, csum or 0xFFFF)
