"""The Internet checksum (RFC 1071) with no per-byte or per-word Python loop.

The one's-complement sum of 16-bit big-endian words equals the value of the
whole buffer, read as one big-endian integer, modulo 0xFFFF (because
2**16 == 1 mod 0xFFFF). ``int.from_bytes`` does that reading in C, which makes
this about 20x faster than summing ``array('H')`` and 25x faster than a word
loop (see ``ref/performance-facts.md``). The one subtlety: the modulo maps an
all-ones sum (0xFFFF, i.e. "negative zero") to 0, so a non-zero input whose
sum is 0xFFFF must be told apart from an all-zero input.

Everything here is pure and allocation-light; ``partial`` sums let the
pseudo-header and the payload be summed separately and combined.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiostack.wire.types import BytesLike

try:  # optional: numpy sums large buffers several times faster than int.from_bytes
    import numpy as _np
except ImportError:  # pragma: no cover - numpy is present wherever the suite runs
    _np = None  # type: ignore[assignment]

_from_bytes = int.from_bytes
#: From this size on, numpy's word sum beats reading the buffer as one integer.
#: ``int.from_bytes`` costs about 1.3 ns a byte and the ``% 0xFFFF`` after it
#: one hardware division per 30-bit digit, about 2 ns a byte more; numpy's
#: sum is about 2 us of fixed overhead and next to nothing per byte, so they
#: cross between 500 and 1000 bytes (measured: 500 B 1.6 vs 1.8 us, 1460 B
#: 4.5 vs 2.1 us, 64 KiB 215 vs 8 us; ``bench/wire_codec.py``).
NUMPY_MIN = 768
#: Without numpy, from this size on the integer is halved by shift-and-add
#: folds (cheap digit loops) before the division-bound modulo.
FOLD_MIN = 2048

if _np is not None:
    _frombuffer = _np.frombuffer
    _add_reduce = _np.add.reduce
    _U32 = _np.dtype("<u4")
    _U64 = _np.dtype(_np.uint64)


def wide_sum(data: BytesLike, start: int = 0, end: int = -1) -> int:
    """A non-negative integer congruent modulo 0xFFFF to the word sum of ``data[start:end]``.

    The word sum is that of the big-endian 16-bit words, an odd length padded
    with a zero byte, which is what the one's-complement sum is modulo
    0xFFFF. The result is 0 only when every byte is 0. ``end`` -1 means the
    end of ``data``. Words are counted from ``start``, so when the result is
    added to the sums of other parts of one checksummed region, ``start``
    must lie an even number of bytes into that region (a TCP payload lies a
    multiple of 4 in). This is the building block for a caller that adds
    its own integer terms (header fields, pseudo-header) and takes one
    ``% 0xFFFF`` at the end: 2**16 is 1 modulo 0xFFFF, so a 32-bit field
    counts as itself.

    Nothing is copied on the numpy path (it reads ``data`` where it lies);
    ``data`` must be a byte buffer (bytes, bytearray or a byte memoryview).
    """
    if end < 0:
        end = len(data)
    n = end - start
    if n >= NUMPY_MIN and _np is not None:
        # Sum native little-endian 32-bit words (no byte swapping per word):
        # modulo 0xFFFF that is the sum of the little-endian 16-bit words,
        # and a one's-complement sum of byte-swapped words is the byte-swap
        # of the sum (RFC 1071 2(B)). The last 0-3 bytes are read as below.
        words = int(_add_reduce(_frombuffer(data, _U32, n >> 2, start), dtype=_U64))
        if words:
            words = words % 0xFFFF or 0xFFFF
            words = ((words & 0xFF) << 8) | (words >> 8)
        m = start + (n & ~3)
        if m != end:
            tail = _from_bytes(data[m:end], "big")
            words += tail << 8 if n & 1 else tail
        return words
    if start or end != len(data):
        data = memoryview(data)[start:end]
    value = _from_bytes(data, "big")
    if n & 1:
        value <<= 8
    if n >= FOLD_MIN:
        bits = n << 3
        while bits > 512:
            half = (bits >> 1) & ~15
            value = (value >> half) + (value & ((1 << half) - 1))
            bits -= half
    return value


def ones_sum(data: BytesLike, initial: int = 0) -> int:
    """Return the folded 16-bit one's-complement sum of ``data`` plus ``initial``.

    ``initial`` is another folded sum (for example of a pseudo-header). An odd
    length is padded with one zero byte, as RFC 1071 says. The result is in
    0..0xFFFF where 0xFFFF stands for any non-zero multiple of 0xFFFF.
    """
    n = data.nbytes if type(data) is memoryview else len(data)
    if n < NUMPY_MIN:
        # The common case (headers, ACKs) inline: one C call and one modulo.
        value = _from_bytes(data, "big")
        if n & 1:
            value <<= 8
    else:
        if type(data) is memoryview and data.itemsize != 1:
            data = data.cast("B")
        value = wide_sum(data, 0, n)
    value += initial
    if value == 0:
        return 0
    folded = value % 0xFFFF
    return folded if folded else 0xFFFF


_PADDING = (b"", b"\0", b"\0\0", b"\0\0\0")


def ones_sums(buffers: Sequence[memoryview]) -> list[int]:
    """``[ones_sum(b) for b in buffers]``, in one numpy pass when numpy is there.

    For a batch of 1.5 KB segments one ``ones_sum`` each is mostly the
    per-call and big-integer overhead; here the buffers are joined (each
    padded with zeros to a 4-byte boundary, which changes no sum), summed
    per buffer as native 32-bit words by one ``np.add.reduceat``, and each
    sum folded and byte-swapped as in :func:`wide_sum`.
    """
    if _np is None or len(buffers) < 2:
        return [ones_sum(b) for b in buffers]
    pieces: list[BytesLike] = []
    append = pieces.append
    starts: list[int] = []
    add_start = starts.append
    pos = 0
    for b in buffers:
        n = b.nbytes
        if not n or b.itemsize != 1:
            return [ones_sum(b) for b in buffers]
        add_start(pos >> 2)
        append(b)
        pad = -n & 3
        if pad:
            append(_PADDING[pad])
        pos += n + pad
    words = _frombuffer(b"".join(pieces), _U32)
    out: list[int] = []
    add = out.append
    for s in _np.add.reduceat(words, starts, dtype=_U64).tolist():
        if s:
            s = s % 0xFFFF or 0xFFFF
        add(((s & 0xFF) << 8) | (s >> 8))
    return out


def internet_checksum(data: BytesLike, initial: int = 0) -> int:
    """Return the checksum field value for ``data`` (the complement of the sum).

    Computed over a header whose checksum field holds zero, the result is the
    value to store; computed over a header holding its checksum, a valid header
    gives 0.
    """
    return ~ones_sum(data, initial) & 0xFFFF


def checksum_of(value: int) -> int:
    """The checksum field for data whose words, read as one integer, sum to ``value``.

    Lets an emitter that knows its header's fields add them up as integers
    (a 32-bit field counts as itself: 2**16 is 1 modulo 0xFFFF) instead of
    writing the header and reading it back. ``value`` 0 means all-zero data,
    whose checksum is 0xFFFF; a non-zero multiple of 0xFFFF sums to all ones,
    whose checksum is 0.
    """
    rest = value % 0xFFFF
    if rest:
        return 0xFFFF - rest
    return 0 if value else 0xFFFF


def pseudo_header_sum(src: int, dst: int, proto: int, length: int) -> int:
    """Folded sum of the IPv4 pseudo-header (RFC 768, RFC 9293 3.1).

    ``src`` and ``dst`` are addresses as integers; ``length`` is the
    transport header plus payload length. Adding 32-bit halves and folding
    is the same one's-complement sum as summing the 12 pseudo-header bytes.
    """
    total = (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF) + proto + length
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return total


def transport_checksum(src: int, dst: int, proto: int, segment: BytesLike) -> int:
    """Checksum field value for a UDP or TCP segment whose checksum field is zero."""
    mv = memoryview(segment)
    return internet_checksum(mv, pseudo_header_sum(src, dst, proto, mv.nbytes))


def verify_transport(src: int, dst: int, proto: int, segment: BytesLike) -> bool:
    """True when ``segment`` (checksum field included) sums to all ones."""
    mv = memoryview(segment)
    return ones_sum(mv, pseudo_header_sum(src, dst, proto, mv.nbytes)) == 0xFFFF
