"""The classic libpcap file format: a global header, then one record per frame.

Chosen over pcapng because every tool reads it (``tcpdump -r``, ``tshark
-r``, Wireshark, scapy) and it is 24 + 16 bytes of framing, nothing to get
wrong. Writers here always produce little-endian files; the reader accepts
either byte order and both the microsecond (``0xa1b2c3d4``) and nanosecond
(``0xa1b23c4d``) magic, as libpcap does.

Timestamps are integer nanoseconds since the epoch throughout, so nothing is
lost to float rounding (a float of today's epoch seconds only resolves
about 0.2 us).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from aiostack.wire.errors import ParseError
from aiostack.wire.types import BytesLike

MAGIC_MICROSECONDS = 0xA1B2C3D4
MAGIC_NANOSECONDS = 0xA1B23C4D
VERSION_MAJOR = 2
VERSION_MINOR = 4
LINKTYPE_ETHERNET = 1
#: tcpdump's default snap length; large enough for 64 KiB offload super-frames.
DEFAULT_SNAPLEN = 262144

GLOBAL_HEADER_LEN = 24
RECORD_HEADER_LEN = 16

_GLOBAL_LE = struct.Struct("<IHHiIII")
_GLOBAL_BE = struct.Struct(">IHHiIII")
_RECORD_LE = struct.Struct("<IIII")
_RECORD_BE = struct.Struct(">IIII")
_MAGIC_LE = struct.Struct("<I")


@dataclass(slots=True)
class PcapHeader:
    """A decoded global header."""

    nanosecond: bool
    snaplen: int
    linktype: int
    version: tuple[int, int] = (VERSION_MAJOR, VERSION_MINOR)
    big_endian: bool = False


@dataclass(slots=True)
class PcapRecord:
    """One captured frame: its timestamp, its length on the wire and the bytes kept."""

    timestamp_ns: int
    orig_len: int
    data: bytes

    @property
    def timestamp(self) -> float:
        """Seconds since the epoch, as a float (for display; keep ``timestamp_ns`` for maths)."""
        return self.timestamp_ns / 1e9


def global_header(
    *,
    nanosecond: bool = False,
    snaplen: int = DEFAULT_SNAPLEN,
    linktype: int = LINKTYPE_ETHERNET,
) -> bytes:
    """The 24-byte header that opens every pcap file."""
    if not 0 < snaplen <= 0x7FFFFFFF:
        raise ValueError(f"snaplen: {snaplen} is not a positive 31-bit length")
    magic = MAGIC_NANOSECONDS if nanosecond else MAGIC_MICROSECONDS
    return _GLOBAL_LE.pack(magic, VERSION_MAJOR, VERSION_MINOR, 0, 0, snaplen, linktype)


def record_header(
    timestamp_ns: int, caplen: int, orig_len: int, *, nanosecond: bool = False
) -> bytes:
    """The 16-byte header in front of each captured frame."""
    if timestamp_ns < 0:
        raise ValueError(f"timestamp_ns: {timestamp_ns} is before the epoch")
    seconds, frac = divmod(timestamp_ns, 1_000_000_000)
    if not nanosecond:
        frac //= 1000
    return _RECORD_LE.pack(seconds & 0xFFFFFFFF, frac, caplen, orig_len)


def encode_record(
    timestamp_ns: int,
    frame: BytesLike,
    *,
    snaplen: int = DEFAULT_SNAPLEN,
    nanosecond: bool = False,
) -> bytes:
    """Header plus frame (cut to ``snaplen``) as one ``bytes``, ready to write."""
    view = memoryview(frame)
    orig_len = view.nbytes
    kept = view[:snaplen] if orig_len > snaplen else view
    return record_header(timestamp_ns, kept.nbytes, orig_len, nanosecond=nanosecond) + kept


def parse_global_header(data: BytesLike) -> PcapHeader:
    view = memoryview(data)
    if view.nbytes < GLOBAL_HEADER_LEN:
        raise ParseError("truncated", f"{view.nbytes} bytes < pcap global header")
    (magic,) = _MAGIC_LE.unpack_from(view, 0)
    if magic in (MAGIC_MICROSECONDS, MAGIC_NANOSECONDS):
        layout, big = _GLOBAL_LE, False
    else:
        layout, big = _GLOBAL_BE, True
        (magic,) = struct.unpack_from(">I", view, 0)
        if magic not in (MAGIC_MICROSECONDS, MAGIC_NANOSECONDS):
            raise ParseError("bad_magic", f"{bytes(view[:4]).hex()} is not a pcap magic number")
    _, major, minor, _, _, snaplen, linktype = layout.unpack_from(view, 0)
    return PcapHeader(magic == MAGIC_NANOSECONDS, snaplen, linktype & 0xFFFF, (major, minor), big)


def iter_records(data: BytesLike) -> Iterator[PcapRecord]:
    """Yield every record of a whole pcap file held in memory.

    A record cut short at the end (a capture still being written) raises
    ``ParseError("truncated")`` after the complete ones were yielded.
    """
    view = memoryview(data)
    header = parse_global_header(view)
    layout = _RECORD_BE if header.big_endian else _RECORD_LE
    scale = 1 if header.nanosecond else 1000
    offset = GLOBAL_HEADER_LEN
    end = view.nbytes
    while offset < end:
        if end - offset < RECORD_HEADER_LEN:
            raise ParseError("truncated", f"record header at {offset} cut short")
        seconds, frac, caplen, orig_len = layout.unpack_from(view, offset)
        offset += RECORD_HEADER_LEN
        if caplen > end - offset:
            raise ParseError("truncated", f"record at {offset} wants {caplen} bytes")
        yield PcapRecord(
            seconds * 1_000_000_000 + frac * scale, orig_len, bytes(view[offset : offset + caplen])
        )
        offset += caplen


def read(data: BytesLike) -> tuple[PcapHeader, list[PcapRecord]]:
    """Decode a whole pcap file: its header and all its records."""
    return parse_global_header(data), list(iter_records(data))
