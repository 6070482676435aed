"""TCP segments (RFC 9293) and their options (RFC 9293, RFC 7323, RFC 2018).

A received segment is parsed into a :class:`TcpHeader` (with its options
decoded into a :class:`TcpOptions`) plus a ``memoryview`` of the payload;
nothing is copied. A segment is built by placing the payload in the frame
buffer first and then writing the header in front of it with
:func:`emit_into`, which also fills the checksum (or the pseudo-header seed
that checksum offload completes).

Hot paths, in the order a Linux peer exercises them:

- No options (data offset 5): option parsing is skipped entirely.
- Linux's established-state layout ``nop, nop, TS`` (data offset 8): the
  same ``unpack_from`` as the fixed header recognises and decodes it, like
  the kernel's own ``tcp_parse_aligned_timestamp`` fast path.
- Linux's SYN/SYN-ACK layout ``mss, sackOK, TS, nop, wscale``: one
  ``unpack_from``.
- Anything else walks the option list once; at most 40 bytes.

``flags`` is kept as a plain ``int`` bitmask: testing ``hdr.flags & SYN``
with the module-level int constants costs nothing, whereas building a
:class:`TcpFlags` per segment (an ``IntFlag``) costs about a microsecond.
Use :class:`TcpFlags` for display and :func:`flags_str` for logs.

Option emission follows Linux's ``tcp_options_write`` byte for byte, see
:func:`encode_options`, so that packetdrill scripts and tcpdump captures of
aiostack look like the kernel's.

Malformed input raises :class:`~aiostack.wire.errors.ParseError` with one of
the reasons ``truncated``, ``bad_data_offset``, ``bad_checksum`` or
``bad_option``. Linux silently stops parsing at a broken option; aiostack
drops the segment instead and counts it, because a segment whose option list
is inconsistent is either corrupt (and the checksum happened to match) or
hostile, and a counted drop is easier to reason about than half-read options.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum, IntFlag

from aiostack.wire import checksum as _checksum
from aiostack.wire.checksum import pseudo_header_sum, wide_sum
from aiostack.wire.errors import ParseError
from aiostack.wire.types import BytesLike

PROTO = 6
HEADER_LEN = 20
MIN_HEADER_LEN = HEADER_LEN
MAX_HEADER_LEN = 60
MAX_OPTIONS_LEN = MAX_HEADER_LEN - HEADER_LEN
#: Offset of the checksum field in the header (the virtio ``csum_offset``).
CHECKSUM_OFFSET = 16

_HEADER = struct.Struct("!HHIIHHHH")
_CHECKSUM = struct.Struct("!H")
_TS_PAIR = struct.Struct("!II")
#: ``nop, nop, TS(kind 8, len 10)`` as one big-endian word, then TSval, TSecr.
_ALIGNED_TS = struct.Struct("!III")
_ALIGNED_TS_WORD = 0x0101080A
#: The fixed header and an aligned ``nop, nop, TS`` block in one unpack.
_HEADER_TS = struct.Struct("!HHIIHHHHIII")
#: Linux's SYN and SYN-ACK options with timestamps (``tcp_options_write``):
#: ``02 04 mss``, ``04 02 08 0a`` TSval TSecr, ``01 03 03 ws``.
_SYN_OPTIONS = struct.Struct("!HHIIII")
_MSS_WORD = 0x0204
_SACKPERM_TS_WORD = 0x0402080A
_NOP_WS_PREFIX = 0x010303
_from_bytes = int.from_bytes
_object_new = object.__new__
#: Pre-built unpackers for 1..4 SACK blocks (2 words each).
_SACK_BLOCKS = tuple(struct.Struct(f"!{2 * n}I") for n in range(5))


class TcpFlags(IntFlag):
    """The control bits, as they sit in the low 9 bits of header word 6.

    ``AE`` (RFC 9768 Accurate ECN, formerly the experimental NS bit of
    RFC 3540) is the bit just above CWR; it is kept so that it round-trips.
    """

    FIN = 0x01
    SYN = 0x02
    RST = 0x04
    PSH = 0x08
    ACK = 0x10
    URG = 0x20
    ECE = 0x40
    CWR = 0x80
    AE = 0x100


# Plain-int copies for the hot path (``flags & SYN`` on two ints).
FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10
URG = 0x20
ECE = 0x40
CWR = 0x80
AE = 0x100
#: Every bit the header's flag field can carry.
FLAGS_MASK = 0x1FF


class TcpOption(IntEnum):
    """Option kinds this codec understands; others are skipped by length.

    (:func:`parse_options` compares the literal ints, which is cheaper than
    an enum lookup per option; the enum is for callers and reprs.)
    """

    EOL = 0
    NOP = 1
    MSS = 2
    WSCALE = 3
    SACK_PERMITTED = 4
    SACK = 5
    TIMESTAMP = 8


#: Largest window shift RFC 7323 2.3 allows; a larger received value is
#: reported as sent, and the control block clamps it (as Linux does).
MAX_WSCALE = 14


@dataclass(slots=True)
class TcpOptions:
    """The options of one segment, decoded.

    ``None``/``False``/``()`` mean "absent". ``sack_blocks`` holds absolute
    ``(left, right)`` sequence numbers as sent (right edge exclusive).
    ``timestamps`` is ``(TSval, TSecr)``. ``unknown`` lists the kinds of
    options this codec does not decode (TCP Fast Open, MPTCP, MD5, ...), in
    the order seen, so the shell can count them without the codec growing a
    field per RFC.
    """

    mss: int | None = None
    wscale: int | None = None
    sack_permitted: bool = False
    sack_blocks: tuple[tuple[int, int], ...] = ()
    timestamps: tuple[int, int] | None = None
    unknown: tuple[int, ...] = ()

    def encode(self) -> bytes:
        """These options in Linux's layout (unknown kinds are not re-emitted)."""
        return encode_options(
            mss=self.mss,
            sack_permitted=self.sack_permitted,
            timestamps=self.timestamps,
            wscale=self.wscale,
            sack_blocks=self.sack_blocks,
        )


@dataclass(slots=True)
class TcpHeader:
    """A parsed TCP header; ``flags`` is an int bitmask of :class:`TcpFlags`."""

    src_port: int
    dst_port: int
    seq: int
    ack: int
    header_len: int
    flags: int
    window: int
    checksum: int
    urgent: int
    options: TcpOptions

    @property
    def data_offset(self) -> int:
        """Header length in 32-bit words, as on the wire."""
        return self.header_len >> 2

    @property
    def tcp_flags(self) -> TcpFlags:
        """``flags`` as a :class:`TcpFlags` (for display; slower than the int)."""
        return TcpFlags(self.flags)


def parse(
    segment: BytesLike, src: int, dst: int, verify_checksum: bool = True
) -> tuple[TcpHeader, memoryview]:
    """Validate a TCP segment carried from ``src`` to ``dst`` (int addresses).

    ``segment`` is the whole IP payload (already trimmed to the IP total
    length), because the checksum covers all of it. Checks run in the order
    of Linux's ``tcp_v4_rcv``: length, data offset, checksum; then options.
    Pass ``verify_checksum=False`` when the device vouched for the checksum
    (virtio ``DATA_VALID``/``NEEDS_CSUM``, see :mod:`aiostack.wire.virtio`).

    The per-segment work is one ``unpack_from`` (the fixed header, plus the
    timestamps when the options are Linux's ``nop, nop, TS``), one integer
    sum for the checksum (the pseudo-header added as plain integers: only the
    sum modulo 0xFFFF matters, and 2**16 is 1 modulo 0xFFFF) and the header
    object; no memoryview but the payload's.
    """
    view = segment if type(segment) is memoryview else memoryview(segment)
    n = len(view)
    if n < HEADER_LEN:
        raise ParseError("truncated", f"{n} bytes < TCP header")
    hlen = (view[12] >> 4) << 2
    if hlen == 32 and n >= 32:
        (
            sport,
            dport,
            seq,
            ack,
            off_flags,
            window,
            csum,
            urgent,
            word,
            tsval,
            tsecr,
        ) = _HEADER_TS.unpack_from(view)
        options = None
        if word == _ALIGNED_TS_WORD:
            # TcpOptions(timestamps=(tsval, tsecr)) field by field, as below.
            options = _object_new(TcpOptions)
            options.mss = None
            options.wscale = None
            options.sack_permitted = False
            options.sack_blocks = ()
            options.timestamps = (tsval, tsecr)
            options.unknown = ()
    else:
        if hlen < HEADER_LEN:
            raise ParseError("bad_data_offset", f"data offset {hlen >> 2} words")
        if hlen > n:
            raise ParseError("truncated", f"data offset {hlen} bytes > {n} bytes received")
        sport, dport, seq, ack, off_flags, window, csum, urgent = _HEADER.unpack_from(view)
        options = TcpOptions() if hlen == HEADER_LEN else None
    if verify_checksum:
        if n < _checksum.NUMPY_MIN:
            value = _from_bytes(view, "big")
            if n & 1:
                value <<= 8
        else:
            value = wide_sum(view, 0, n)
        # The pseudo-header (src, dst, zero + protocol, TCP length) makes the
        # total non-zero, so "sums to all ones" is "0 modulo 0xFFFF".
        if (value + src + dst + PROTO + n) % 0xFFFF:
            raise ParseError("bad_checksum", f"TCP checksum {csum:#06x}")
    if options is None:
        options = _parse_options(bytes(view[HEADER_LEN:hlen]))
    # TcpHeader(...) field by field: the dataclass __init__ does exactly
    # these stores, but calling it through the type costs a third more.
    header = _object_new(TcpHeader)
    header.src_port = sport
    header.dst_port = dport
    header.seq = seq
    header.ack = ack
    header.header_len = hlen
    header.flags = off_flags & FLAGS_MASK
    header.window = window
    header.checksum = csum
    header.urgent = urgent
    header.options = options
    return header, view[hlen:]


def parse_options(data: BytesLike) -> TcpOptions:
    """Decode an option list (the bytes between the fixed header and the data).

    NOP is skipped and EOL ends the list (what follows it is padding). Known
    kinds must have their exact lengths (MSS 4, WS 3, SACK-permitted 2,
    TS 10, SACK 2 + 8n with n in 1..4); any option whose length byte is
    missing, below 2 or runs past the end is ``bad_option``. Unknown kinds
    are skipped by their length and recorded. When a kind repeats, the last
    one wins, as in Linux.
    """
    return _parse_options(bytes(data))


def _parse_options(data: bytes) -> TcpOptions:
    """:func:`parse_options` on ``bytes`` (indexing bytes is cheaper than a view).

    Linux's SYN/SYN-ACK layout with timestamps (``mss, sackOK, TS, nop,
    wscale``, 20 bytes) is recognised by one ``unpack_from``; everything else
    walks the list.
    """
    n = len(data)
    if n == 20:
        mss_word, mss, ts_word, tsval, tsecr, ws_word = _SYN_OPTIONS.unpack_from(data)
        if (
            mss_word == _MSS_WORD
            and ts_word == _SACKPERM_TS_WORD
            and ws_word >> 8 == _NOP_WS_PREFIX
        ):
            return TcpOptions(mss, ws_word & 0xFF, True, (), (tsval, tsecr), ())
    mss_opt: int | None = None
    wscale: int | None = None
    sack_permitted = False
    sack_blocks: tuple[tuple[int, int], ...] = ()
    timestamps: tuple[int, int] | None = None
    unknown: list[int] | None = None
    i = 0
    while i < n:
        kind = data[i]
        if kind == 1:  # NOP
            i += 1
            continue
        if kind == 0:  # EOL
            break
        if i + 1 >= n:
            raise ParseError("bad_option", f"option kind {kind} at {i} has no length byte")
        length = data[i + 1]
        if length < 2 or i + length > n:
            raise ParseError("bad_option", f"option kind {kind} at {i} has length {length}")
        if kind == 8:
            if length != 10:
                raise ParseError("bad_option", f"timestamp option length {length}")
            timestamps = _TS_PAIR.unpack_from(data, i + 2)
        elif kind == 2:
            if length != 4:
                raise ParseError("bad_option", f"MSS option length {length}")
            mss_opt = (data[i + 2] << 8) | data[i + 3]
        elif kind == 3:
            if length != 3:
                raise ParseError("bad_option", f"window scale option length {length}")
            wscale = data[i + 2]
        elif kind == 4:
            if length != 2:
                raise ParseError("bad_option", f"SACK-permitted option length {length}")
            sack_permitted = True
        elif kind == 5:
            count, rem = divmod(length - 2, 8)
            if rem or not 1 <= count <= 4:
                raise ParseError("bad_option", f"SACK option length {length}")
            edges = _SACK_BLOCKS[count].unpack_from(data, i + 2)
            sack_blocks = tuple(zip(edges[::2], edges[1::2], strict=True))
        else:
            if unknown is None:
                unknown = []
            unknown.append(kind)
        i += length
    return TcpOptions(
        mss_opt, wscale, sack_permitted, sack_blocks, timestamps, tuple(unknown) if unknown else ()
    )


_MSS_OPT = struct.Struct("!BBH")
_SACKPERM_TS = b"\x04\x02\x08\x0a"
_NOP_NOP_TS = b"\x01\x01\x08\x0a"
_NOP_NOP_SACKPERM = b"\x01\x01\x04\x02"
_NOP_WS = struct.Struct("!BBBB")


def encode_timestamps(tsval: int, tsecr: int) -> bytes:
    """``nop, nop, TS``: the options of an established segment with nothing to SACK.

    The same bytes as ``encode_options(timestamps=(tsval, tsecr))``, without
    the keyword call and the tuple (the control block sends this per segment).
    """
    return _ALIGNED_TS.pack(_ALIGNED_TS_WORD, tsval, tsecr)


def encode_options(
    *,
    mss: int | None = None,
    sack_permitted: bool = False,
    timestamps: tuple[int, int] | None = None,
    wscale: int | None = None,
    sack_blocks: tuple[tuple[int, int], ...] = (),
) -> bytes:
    """Encode options in Linux's order and padding (``tcp_options_write``).

    Each option group is written as whole 32-bit words, NOP-padded in front,
    in this order:

    ========================  =============================================
    MSS                       ``02 04 mm mm``
    TS with SACK-permitted    ``04 02 08 0a`` TSval TSecr (SACK-permitted
                              rides in the TS word's padding)
    TS without                ``01 01 08 0a`` TSval TSecr
    SACK-permitted, no TS     ``01 01 04 02``
    window scale              ``01 03 03 ws``
    SACK blocks               ``01 01 05 len`` then left/right per block
    ========================  =============================================

    So a Linux active open is ``mss, sackOK, TS, nop, wscale`` (20 bytes), a
    SYN without timestamps ``mss, nop, nop, sackOK, nop, wscale`` (12), with
    TS but no SACK ``mss, nop, nop, TS, nop, wscale`` (20); an established
    segment carries ``nop, nop, TS`` (12) and, when SACKing,
    ``nop, nop, sack`` after it. A SYN-ACK uses the same function with only
    what the SYN offered. The caller chooses how many SACK blocks fit, as
    Linux does (3 with timestamps, 4 without); more than 40 bytes is a
    ValueError.
    """
    if (
        timestamps is not None
        and mss is None
        and wscale is None
        and not sack_permitted
        and not sack_blocks
    ):
        return _ALIGNED_TS.pack(_ALIGNED_TS_WORD, timestamps[0], timestamps[1])
    parts: list[bytes] = []
    if mss is not None:
        parts.append(_MSS_OPT.pack(2, 4, mss))
    if timestamps is not None:
        parts.append(_SACKPERM_TS if sack_permitted else _NOP_NOP_TS)
        parts.append(_TS_PAIR.pack(timestamps[0], timestamps[1]))
    elif sack_permitted:
        parts.append(_NOP_NOP_SACKPERM)
    if wscale is not None:
        parts.append(_NOP_WS.pack(1, 3, 3, wscale))
    if sack_blocks:
        count = len(sack_blocks)
        if count > 4:
            raise ValueError(f"sack_blocks: {count} blocks, at most 4 fit in a TCP header")
        parts.append(_NOP_WS.pack(1, 1, 5, 2 + 8 * count))
        edges = [edge for block in sack_blocks for edge in block]
        parts.append(_SACK_BLOCKS[count].pack(*edges))
    out = b"".join(parts)
    if len(out) > MAX_OPTIONS_LEN:
        raise ValueError(f"options: {len(out)} bytes exceed the 40 a TCP header can carry")
    return out


def emit_into(
    buf: bytearray | memoryview,
    offset: int,
    *,
    src_port: int,
    dst_port: int,
    seq: int,
    ack: int,
    flags: int,
    window: int,
    urgent: int = 0,
    options: bytes = b"",
    payload_len: int,
    src: int,
    dst: int,
    checksum: bool = True,
) -> int:
    """Write a TCP header at ``offset``; the payload must already follow it.

    ``options`` is an encoded option list (from :func:`encode_options`),
    already a multiple of 4 bytes and at most 40. Returns the header length.

    With ``checksum=False`` the checksum field receives the folded
    pseudo-header sum instead of the final checksum: this is the "partial"
    checksum that Linux's ``CHECKSUM_PARTIAL`` and virtio-net's
    ``NEEDS_CSUM`` expect, because the device (the TAP's kernel side) sums
    from ``csum_start`` to the end, *including* this field, and stores the
    complement. A zero there would make the device produce a checksum that
    lacks the pseudo-header. See :func:`aiostack.wire.virtio.complete_checksum`.

    Per-segment callers should prefer :func:`write_header`, the same with
    positional arguments: CPython 3.11 does not inline a call with keywords,
    and thirteen of them cost about 0.4 us more than a positional call.
    """
    return write_header(
        buf,
        offset,
        src_port,
        dst_port,
        seq,
        ack,
        flags,
        window,
        urgent,
        options,
        payload_len,
        src,
        dst,
        checksum,
    )


def write_header(
    buf: bytearray | memoryview,
    offset: int,
    src_port: int,
    dst_port: int,
    seq: int,
    ack: int,
    flags: int,
    window: int,
    urgent: int,
    options: bytes,
    payload_len: int,
    src: int,
    dst: int,
    checksum: bool,
    /,
) -> int:
    """:func:`emit_into` with positional arguments, for the per-segment path."""
    olen = len(options)
    length = HEADER_LEN + olen + payload_len
    if olen:
        if olen & 3 or olen > MAX_OPTIONS_LEN:
            raise ValueError(f"options: {olen} bytes is not a multiple of 4 up to 40")
        buf[offset + HEADER_LEN : offset + HEADER_LEN + olen] = options
    off_flags = ((HEADER_LEN + olen) << 10) | (flags & FLAGS_MASK)
    if checksum:
        # The checksum from integers: the header's fields (a 32-bit field
        # counts as itself, 2**16 being 1 modulo 0xFFFF), the options, the
        # payload where it lies and the pseudo-header; never zero (the data
        # offset), so a multiple of 0xFFFF is a sum of all ones: checksum 0.
        value = src_port + dst_port + seq + ack + off_flags + window + urgent
        value += src + dst + PROTO + length
        if olen:
            value += _from_bytes(options, "big")
        if payload_len:
            start = offset + HEADER_LEN + olen
            value += wide_sum(buf, start, start + payload_len)
        rest = value % 0xFFFF
        csum = 0xFFFF - rest if rest else 0
    else:
        csum = pseudo_header_sum(src, dst, PROTO, length)
    _HEADER.pack_into(buf, offset, src_port, dst_port, seq, ack, off_flags, window, csum, urgent)
    return HEADER_LEN + olen


_FLAG_LETTERS = (
    (FIN, "F"),
    (SYN, "S"),
    (RST, "R"),
    (PSH, "P"),
    (ACK, "."),
    (URG, "U"),
    (ECE, "E"),
    (CWR, "W"),
    (AE, "e"),
)


def flags_str(flags: int) -> str:
    """Flags the way tcpdump and packetdrill print them: ``S.`` is SYN-ACK.

    Letters and order are tcpdump's ``tcp_flag_values`` (F S R P . U E W e,
    ``e`` being AE). No flags at all is ``none``, as tcpdump prints it.
    """
    text = "".join(letter for bit, letter in _FLAG_LETTERS if flags & bit)
    return text or "none"
