"""Every codec's checksum against a plain RFC 1071 reference, on every summing path.

The codecs sum bytes three ways depending on size and on whether numpy is
installed (:mod:`aiostack.wire.checksum`): one ``int.from_bytes`` and a
modulo (small buffers, or no numpy), the same with shift-and-add folds first
(large buffers without numpy), and numpy's 32-bit word sum (large buffers).
The ``path`` fixture forces each one for every size, so each property below
holds on all three, at sizes either side of the thresholds, odd and even,
random, all 0xFF (one's-complement "negative zero" sums) and all zero.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiostack.wire import checksum, icmpv4, ipv4, tcp, udp
from aiostack.wire.errors import ParseError

FAST = settings(max_examples=60, deadline=None)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
#: Sizes around the thresholds and the frame sizes that matter.
SIZES = (0, 1, 2, 3, 4, 5, 19, 20, 31, 767, 768, 769, 1459, 1460, 1461, 2047, 2049, 9000, 9001)
PATHS = ("int", "fold", "numpy")


@pytest.fixture(params=PATHS)
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Force one summing path for every size (the thresholds are read per call)."""
    if request.param == "numpy":
        monkeypatch.setattr(checksum, "NUMPY_MIN", 0)
    else:
        monkeypatch.setattr(checksum, "NUMPY_MIN", 1 << 30)
        monkeypatch.setattr(checksum, "FOLD_MIN", 0 if request.param == "fold" else 1 << 30)
    yield request.param


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


def samples() -> Iterator[bytes]:
    rng = random.Random(6)
    for n in SIZES:
        yield rng.randbytes(n)
        yield b"\xff" * n
        yield bytes(n)


def pseudo(src: int, dst: int, proto: int, length: int) -> bytes:
    return struct.pack("!IIBBH", src, dst, 0, proto, length)


# -- the sums themselves -------------------------------------------------------


def test_ones_sum_and_wide_sum_match_reference(path: str) -> None:
    for data in samples():
        expected = ref_sum(data)
        for form in (data, bytearray(data), memoryview(data)):
            assert checksum.ones_sum(form) == expected, (path, len(data))
            wide = checksum.wide_sum(form)
            assert wide % 0xFFFF == expected % 0xFFFF
            assert (wide == 0) == (expected == 0)  # zero only for all-zero data
        assert checksum.internet_checksum(data) == ~expected & 0xFFFF


def test_wide_sum_of_a_range_reads_only_that_range(path: str) -> None:
    rng = random.Random(7)
    data = rng.randbytes(3000)
    for start, end in ((0, 0), (4, 4), (2, 1463), (8, 2999), (100, 3000), (0, 2049)):
        got = checksum.wide_sum(bytearray(data), start, end)
        assert got % 0xFFFF == ref_sum(data[start:end]) % 0xFFFF, (path, start, end)


def test_ones_sum_of_a_non_byte_view(path: str) -> None:
    data = random.Random(8).randbytes(2000)
    assert checksum.ones_sum(memoryview(data).cast("H")) == ref_sum(data)


@FAST
@given(data=st.binary(max_size=2500), initial=u16, numpy_min=st.sampled_from([0, 768, 1 << 30]))
def test_ones_sum_random(data: bytes, initial: int, numpy_min: int) -> None:
    saved = checksum.NUMPY_MIN
    checksum.NUMPY_MIN = numpy_min  # (hypothesis and function fixtures do not mix)
    try:
        assert checksum.ones_sum(data) == ref_sum(data)
        # ``initial`` counts as one more word after the (padded) data.
        padded = data + b"\0" * (len(data) & 1)
        assert checksum.ones_sum(data, initial) == ref_sum(padded + struct.pack("!H", initial))
    finally:
        checksum.NUMPY_MIN = saved


def test_ones_sums_batch_matches_one_by_one(path: str) -> None:
    views = [memoryview(d) for d in samples()]
    assert checksum.ones_sums(views) == [ref_sum(bytes(v)) for v in views]


# -- TCP ---------------------------------------------------------------------


def _tcp(payload: bytes, options: bytes, *, src: int, dst: int, flags: int = tcp.ACK) -> bytes:
    hlen = tcp.HEADER_LEN + len(options)
    buf = bytearray(hlen + len(payload))
    buf[hlen:] = payload
    tcp.emit_into(
        buf,
        0,
        src_port=40000,
        dst_port=5001,
        seq=0xFFFFFFF0,
        ack=0x12345678,
        flags=flags,
        window=502,
        options=options,
        payload_len=len(payload),
        src=src,
        dst=dst,
    )
    return bytes(buf)


TS = tcp.encode_timestamps(0xDEADBEEF, 7)


def test_tcp_checksum_matches_reference_and_verifies(path: str) -> None:
    src, dst = 0xC6120002, 0xC6120001
    for payload in samples():
        for options in (b"", TS):
            seg = _tcp(payload, options, src=src, dst=dst)
            blank = seg[:16] + b"\0\0" + seg[18:]
            expected = ref_checksum(pseudo(src, dst, 6, len(seg)) + blank)
            assert struct.unpack_from("!H", seg, 16)[0] == expected, (path, len(payload))
            hdr, got = tcp.parse(seg, src, dst)
            assert bytes(got) == payload and hdr.checksum == expected
            expect = tcp.TcpOptions(timestamps=(0xDEADBEEF, 7)) if options else tcp.TcpOptions()
            assert hdr.options == expect


def test_tcp_every_bit_flip_is_a_bad_checksum(path: str) -> None:
    src, dst = 0x0A000001, 0x0A000002
    payload = random.Random(9).randbytes(1461)
    seg = bytearray(_tcp(payload, TS, src=src, dst=dst))
    for pos in (0, 4, 13, 16, 17, 25, 32, 33, 800, 1400, len(seg) - 1):
        for bit in (0, 7):
            seg[pos] ^= 1 << bit
            try:
                with pytest.raises(ParseError) as err:
                    tcp.parse(seg, src, dst)
                # Flipping the data offset may trip that check first.
                assert err.value.reason == "bad_checksum" or pos == 12
            finally:
                seg[pos] ^= 1 << bit
    # ... and so is the wrong pseudo-header.
    with pytest.raises(ParseError, match="bad_checksum"):
        tcp.parse(seg, src, dst + 1)
    tcp.parse(seg, src, dst + 1, verify_checksum=False)


def test_tcp_write_header_is_emit_into(path: str) -> None:
    payload = random.Random(10).randbytes(1001)
    for options in (b"", TS, tcp.encode_options(mss=1460, sack_permitted=True, wscale=7)):
        for csum in (True, False):
            hlen = 20 + len(options)
            a = bytearray(4 + hlen + len(payload))
            a[4 + hlen :] = payload
            b = bytearray(a)
            args = (4, 1, 2, 3, 4, tcp.SYN | tcp.ACK, 5, 6, options, len(payload), 7, 8, csum)
            assert tcp.write_header(a, *args) == hlen
            tcp.emit_into(
                b,
                4,
                src_port=1,
                dst_port=2,
                seq=3,
                ack=4,
                flags=tcp.SYN | tcp.ACK,
                window=5,
                urgent=6,
                options=options,
                payload_len=len(payload),
                src=7,
                dst=8,
                checksum=csum,
            )
            assert a == b


@FAST
@given(
    src=u32,
    dst=u32,
    seq=u32,
    ack=u32,
    flags=st.integers(0, tcp.FLAGS_MASK),
    payload=st.binary(max_size=2100) | st.integers(0, 2100).map(lambda n: b"\xff" * n),
    ts=st.none() | st.tuples(u32, u32),
)
def test_tcp_round_trip_any_size(
    src: int, dst: int, seq: int, ack: int, flags: int, payload: bytes, ts: tuple[int, int] | None
) -> None:
    options = tcp.encode_options(timestamps=ts)
    hlen = 20 + len(options)
    buf = bytearray(hlen + len(payload))
    buf[hlen:] = payload
    tcp.write_header(buf, 0, 1, 2, seq, ack, flags, 3, 0, options, len(payload), src, dst, True)
    blank = bytes(buf[:16]) + b"\0\0" + bytes(buf[18:])
    assert struct.unpack_from("!H", buf, 16)[0] == ref_checksum(
        pseudo(src, dst, 6, len(buf)) + blank
    )
    hdr, got = tcp.parse(buf, src, dst)
    assert (hdr.seq, hdr.ack, hdr.flags) == (seq, ack, flags)
    assert hdr.options.timestamps == ts and bytes(got) == payload


# -- IPv4, UDP, ICMP -------------------------------------------------------------


@FAST
@given(
    src=u32,
    dst=u32,
    proto=st.integers(0, 255),
    ttl=st.integers(0, 255),
    tos=st.integers(0, 255),
    ident=u16,
    frag=u16,
    options=st.sampled_from([b"", b"\x01\x01\x01\x00", bytes(range(1, 41))]),
)
def test_ipv4_checksum_matches_reference(
    src: int, dst: int, proto: int, ttl: int, tos: int, ident: int, frag: int, options: bytes
) -> None:
    hlen = 20 + len(options)
    a = bytearray(hlen)
    b = bytearray(hlen)
    ipv4.emit_into(
        a,
        0,
        src=src,
        dst=dst,
        proto=proto,
        payload_len=0,
        ttl=ttl,
        tos=tos,
        ident=ident,
        frag=frag,
        options=options,
    )
    assert ipv4.write_header(b, 0, src, dst, proto, 0, ttl, tos, ident, frag, options) == hlen
    assert a == b
    assert struct.unpack_from("!H", a, 10)[0] == ref_checksum(bytes(a[:10]) + b"\0\0" + a[12:])
    header, _ = ipv4.parse(a)
    assert (header.src, header.dst, header.ttl, header.options) == (src, dst, ttl, options)
    for pos in range(hlen):  # any one-bit error is caught (by some check)
        a[pos] ^= 0x10
        with pytest.raises(ParseError):
            ipv4.parse(a)
        a[pos] ^= 0x10


def test_udp_checksums_match_reference(path: str) -> None:
    src, dst = 0xC0A80001, 0xC0A800C7
    for payload in samples():
        buf = bytearray(8) + payload
        udp.emit_into(
            buf, 0, src_port=5353, dst_port=53, payload_len=len(payload), src=src, dst=dst
        )
        expected = ref_checksum(pseudo(src, dst, 17, len(buf)) + bytes(buf[:6]) + b"\0\0" + payload)
        assert struct.unpack_from("!H", buf, 6)[0] == (expected or 0xFFFF), (path, len(payload))
        view = memoryview(bytes(buf))
        assert bytes(udp.parse(view, src, dst)[1]) == payload
        assert bytes(udp.parse_in(view, src, dst)[2]) == payload
        if payload:
            bad = bytearray(buf)
            bad[-1] ^= 1
            for parse in (udp.parse, udp.parse_in):
                with pytest.raises(ParseError, match="bad_checksum"):
                    parse(memoryview(bad), src, dst)


def test_icmp_checksums_match_reference(path: str) -> None:
    for body in samples():
        buf = bytearray(8) + body
        rest = icmpv4.echo_rest(0x1234, 7)
        icmpv4.emit_into(buf, 0, type=8, code=0, rest=rest, body_len=len(body))
        expected = ref_checksum(b"\x08\x00\0\0" + struct.pack("!I", rest) + body)
        assert struct.unpack_from("!H", buf, 2)[0] == expected, (path, len(body))
        header, got = icmpv4.parse(buf)
        assert header.sequence == 7 and bytes(got) == body
        buf[-1] ^= 0x80
        with pytest.raises(ParseError, match="bad_checksum"):
            icmpv4.parse(buf)
