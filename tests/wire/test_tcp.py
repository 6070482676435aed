"""TCP header and options: golden bytes, Linux option layouts, scapy cross-checks."""

from __future__ import annotations

import contextlib
import dataclasses
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP
from scapy.packet import Raw

from aiostack.wire import tcp
from aiostack.wire.checksum import ones_sum, pseudo_header_sum, verify_transport
from aiostack.wire.errors import ParseError
from aiostack.wire.ipv4 import addr

FAST = settings(max_examples=200, deadline=None)

SRC = addr("198.18.0.2")
DST = addr("198.18.0.1")

# A Linux active open from 198.18.0.2:41970 to 198.18.0.1:80 (checksum
# computed by scapy): mss 1460, sackOK, TS val=0xa2b3c ecr=0, nop, wscale 7.
LINUX_SYN = bytes.fromhex(
    "a3f2 0050 01020304 00000000 a002 faf0 ed58 0000 020405b4 0402080a 000a2b3c 00000000 01030307"
)
# The reply direction, established: PSH|ACK, nop nop TS, 5 bytes of data.
LINUX_DATA = (
    bytes.fromhex("0050 a3f2 fffffff0 01020305 8018 01fd 339b 0000 0101080a deadbeef 000a2b3c")
    + b"hello"
)

u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)


def build(
    *,
    payload: bytes = b"",
    options: bytes = b"",
    flags: int = tcp.ACK,
    seq: int = 1000,
    ack: int = 2000,
    window: int = 65535,
    urgent: int = 0,
    src_port: int = 40000,
    dst_port: int = 80,
    src: int = SRC,
    dst: int = DST,
    checksum: bool = True,
) -> bytes:
    hlen = tcp.HEADER_LEN + len(options)
    buf = bytearray(hlen + len(payload))
    buf[hlen:] = payload
    got = tcp.emit_into(
        buf,
        0,
        src_port=src_port,
        dst_port=dst_port,
        seq=seq,
        ack=ack,
        flags=flags,
        window=window,
        urgent=urgent,
        options=options,
        payload_len=len(payload),
        src=src,
        dst=dst,
        checksum=checksum,
    )
    assert got == hlen
    return bytes(buf)


# -- golden frames -----------------------------------------------------------


def test_parse_linux_syn() -> None:
    hdr, payload = tcp.parse(LINUX_SYN, SRC, DST)
    assert (hdr.src_port, hdr.dst_port, hdr.seq, hdr.ack) == (41970, 80, 0x01020304, 0)
    assert hdr.header_len == 40 and hdr.data_offset == 10
    assert hdr.flags == tcp.SYN and hdr.tcp_flags is tcp.TcpFlags.SYN
    assert (hdr.window, hdr.checksum, hdr.urgent) == (64240, 0xED58, 0)
    assert hdr.options == tcp.TcpOptions(
        mss=1460, wscale=7, sack_permitted=True, timestamps=(0xA2B3C, 0)
    )
    assert len(payload) == 0


def test_emit_linux_syn_is_byte_identical() -> None:
    options = tcp.encode_options(mss=1460, sack_permitted=True, timestamps=(0xA2B3C, 0), wscale=7)
    seg = build(
        options=options,
        flags=tcp.SYN,
        seq=0x01020304,
        ack=0,
        window=64240,
        src_port=41970,
        dst_port=80,
    )
    assert seg == LINUX_SYN


def test_parse_established_aligned_timestamps() -> None:
    hdr, payload = tcp.parse(LINUX_DATA, DST, SRC)
    assert hdr.flags == tcp.PSH | tcp.ACK
    assert (hdr.seq, hdr.ack, hdr.window) == (0xFFFFFFF0, 0x01020305, 509)
    assert hdr.options == tcp.TcpOptions(timestamps=(0xDEADBEEF, 0xA2B3C))
    assert bytes(payload) == b"hello"


def test_emit_established_is_byte_identical() -> None:
    seg = build(
        options=tcp.encode_options(timestamps=(0xDEADBEEF, 0xA2B3C)),
        payload=b"hello",
        flags=tcp.PSH | tcp.ACK,
        seq=0xFFFFFFF0,
        ack=0x01020305,
        window=509,
        src_port=80,
        dst_port=41970,
        src=DST,
        dst=SRC,
    )
    assert seg == LINUX_DATA


def test_payload_is_a_view_not_a_copy() -> None:
    frame = bytearray(LINUX_DATA)
    _, payload = tcp.parse(frame, DST, SRC)
    frame[-1] = ord("O")
    assert bytes(payload) == b"hellO"


# -- Linux option layouts (tcp_options_write) --------------------------------


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        # Active open with everything: mss, sackOK, TS, nop, wscale.
        (
            dict(mss=1460, sack_permitted=True, timestamps=(1, 0), wscale=7),
            "020405b4 0402080a 00000001 00000000 01030307",
        ),
        # No timestamps: mss, nop, nop, sackOK, nop, wscale.
        (dict(mss=1460, sack_permitted=True, wscale=7), "020405b4 01010402 01030307"),
        # Timestamps but no SACK: mss, nop, nop, TS, nop, wscale.
        (
            dict(mss=1460, timestamps=(1, 2), wscale=7),
            "020405b4 0101080a 00000001 00000002 01030307",
        ),
        # SYN-ACK to a SYN that offered TS and SACK but no window scaling.
        (
            dict(mss=1460, sack_permitted=True, timestamps=(5, 1)),
            "020405b4 0402080a 00000005 00000001",
        ),
        # SYN with nothing but MSS and window scale.
        (dict(mss=536, wscale=0), "02040218 01030300"),
        (dict(mss=1460), "020405b4"),
        # Established: nop, nop, TS.
        (dict(timestamps=(0xDEADBEEF, 0xCAFEBABE)), "0101080a deadbeef cafebabe"),
        # SACK without TS: nop, nop, sack.
        (dict(sack_blocks=((10, 20),)), "0101050a 0000000a 00000014"),
        # TS then SACK (2 blocks).
        (
            dict(timestamps=(7, 8), sack_blocks=((100, 200), (300, 400))),
            "0101080a 00000007 00000008 01010512 00000064 000000c8 0000012c 00000190",
        ),
        (dict(), ""),
    ],
)
def test_encode_options_linux_layout(kwargs: dict[str, object], expected: str) -> None:
    encoded = tcp.encode_options(**kwargs)  # type: ignore[arg-type]
    assert encoded == bytes.fromhex(expected)
    assert len(encoded) % 4 == 0
    # And the codec reads back what it wrote.
    opts = tcp.parse_options(encoded)
    assert opts.encode() == encoded


def test_encode_options_sack_limits() -> None:
    blocks4 = tuple((i * 100, i * 100 + 50) for i in range(4))
    assert len(tcp.encode_options(sack_blocks=blocks4)) == 36
    assert len(tcp.encode_options(timestamps=(1, 2), sack_blocks=blocks4[:3])) == 40
    with pytest.raises(ValueError, match="40"):
        tcp.encode_options(timestamps=(1, 2), sack_blocks=blocks4)
    with pytest.raises(ValueError, match="at most 4"):
        tcp.encode_options(sack_blocks=(*blocks4, (1, 2)))


def test_encode_options_matches_scapy_for_same_order() -> None:
    ours = tcp.encode_options(mss=1400, sack_permitted=True, timestamps=(3, 4), wscale=9)
    theirs = TCP(
        options=[
            ("MSS", 1400),
            ("SAckOK", b""),
            ("Timestamp", (3, 4)),
            ("NOP", None),
            ("WScale", 9),
        ]
    )
    assert bytes(theirs)[20:] == ours


# -- option parsing ----------------------------------------------------------


def test_parse_options_each_kind() -> None:
    opts = tcp.parse_options(bytes.fromhex("020405dc 01 030305 0402 080a0000000100000002 00"))
    assert opts.mss == 1500 and opts.wscale == 5 and opts.sack_permitted
    assert opts.timestamps == (1, 2) and opts.sack_blocks == () and opts.unknown == ()


def test_parse_options_sack_blocks_absolute() -> None:
    raw = bytes.fromhex("0101 0522") + struct.pack("!8I", *range(0xFFFFFFF8, 0xFFFFFFF8 + 8))
    opts = tcp.parse_options(raw)
    assert opts.sack_blocks == (
        (0xFFFFFFF8, 0xFFFFFFF9),
        (0xFFFFFFFA, 0xFFFFFFFB),
        (0xFFFFFFFC, 0xFFFFFFFD),
        (0xFFFFFFFE, 0xFFFFFFFF),
    )


def test_parse_options_eol_ends_list() -> None:
    # Garbage after EOL (which would be a bad option) is padding, not options.
    opts = tcp.parse_options(bytes.fromhex("020405b4 00 ff 00 02"))
    assert opts.mss == 1460


def test_parse_options_unknown_kinds_skipped_and_recorded() -> None:
    # TFO cookie (34, len 10), MPTCP (30, len 4), then MSS.
    raw = bytes.fromhex("220a 0102030405060708 1e04 0000 020405b4")
    opts = tcp.parse_options(raw)
    assert opts.unknown == (34, 30)
    assert opts.mss == 1460


def test_parse_options_last_duplicate_wins() -> None:
    assert tcp.parse_options(bytes.fromhex("02040100 02040200")).mss == 0x200


def test_unaligned_timestamps_same_as_fast_path() -> None:
    # TS first then two NOPs: not the fast-path layout, same meaning.
    odd = build(options=bytes.fromhex("080a 00000009 0000000a 0101"))
    fast = build(options=tcp.encode_options(timestamps=(9, 10)))
    assert tcp.parse(odd, SRC, DST)[0].options == tcp.parse(fast, SRC, DST)[0].options
    # A 12-byte option area that is not nop,nop,TS takes the slow path correctly.
    other = build(options=bytes.fromhex("020405b4 01030302 0402 0101"))
    opts = tcp.parse(other, SRC, DST)[0].options
    assert (opts.mss, opts.wscale, opts.sack_permitted, opts.timestamps) == (1460, 2, True, None)


@pytest.mark.parametrize(
    "raw",
    [
        "02",  # kind without length byte
        "0101 0402 08",  # TS kind at the end, no length
        "0200 0000",  # length 0 (would loop forever if accepted)
        "0201 0000",  # length 1
        "1e08 0000",  # unknown kind running past the end
        "0203 05 00",  # MSS with length 3
        "020500000000 0000",  # MSS with length 5
        "030400 00",  # window scale length 4
        "0302 0000",  # window scale length 2
        "0403 00 00",  # SACK-permitted length 3
        "0808 000000000000 0000",  # TS length 8
        "080c 000000000000000000000000",  # TS length 12
        "0509 00000001000000 00 0000",  # SACK length 9
        "0502 0000",  # SACK with no blocks
        "052a" + "00" * 40,  # SACK length 42 (5 blocks)
    ],
)
def test_bad_options_raise(raw: str) -> None:
    data = bytes.fromhex(raw)
    with pytest.raises(ParseError) as info:
        tcp.parse_options(data)
    assert info.value.reason == "bad_option"


def test_bad_option_inside_segment_is_bad_option() -> None:
    seg = build(options=bytes.fromhex("02030000"))
    with pytest.raises(ParseError) as info:
        tcp.parse(seg, SRC, DST)
    assert info.value.reason == "bad_option"


# -- header validation -------------------------------------------------------


def test_no_options_fast_case() -> None:
    hdr, payload = tcp.parse(build(payload=b"xyz"), SRC, DST)
    assert hdr.header_len == 20 and hdr.options == tcp.TcpOptions()
    assert bytes(payload) == b"xyz"


def test_bad_data_offset() -> None:
    seg = bytearray(build(payload=b"abcd"))
    seg[12] = 0x40  # data offset 4 words < 5
    with pytest.raises(ParseError) as info:
        tcp.parse(seg, SRC, DST, verify_checksum=False)
    assert info.value.reason == "bad_data_offset"


def test_data_offset_beyond_segment_is_truncated() -> None:
    seg = bytearray(build())
    seg[12] = 0xF0  # 60-byte header in a 20-byte segment
    with pytest.raises(ParseError) as info:
        tcp.parse(seg, SRC, DST, verify_checksum=False)
    assert info.value.reason == "truncated"


def test_bad_checksum_and_skip() -> None:
    seg = bytearray(build(payload=b"data"))
    seg[-1] ^= 0x01
    with pytest.raises(ParseError) as info:
        tcp.parse(seg, SRC, DST)
    assert info.value.reason == "bad_checksum"
    _hdr, payload = tcp.parse(seg, SRC, DST, verify_checksum=False)
    assert bytes(payload) == b"dat" + bytes([ord("a") ^ 1])


def test_checksum_covers_pseudo_header() -> None:
    seg = build(payload=b"data")
    with pytest.raises(ParseError):
        tcp.parse(seg, SRC, DST + 1)


def test_flags_round_trip_including_ae() -> None:
    every = tcp.FLAGS_MASK
    hdr, _ = tcp.parse(build(flags=every), SRC, DST)
    assert hdr.flags == every
    assert hdr.tcp_flags == tcp.TcpFlags(every)
    # Reserved bits in the offset byte are not flags.
    seg = bytearray(build(flags=tcp.SYN))
    seg[12] |= 0x0E
    assert tcp.parse(seg, SRC, DST, verify_checksum=False)[0].flags == tcp.SYN


def test_tcpflags_values() -> None:
    assert [int(f) for f in tcp.TcpFlags] == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    assert tcp.TcpFlags.SYN | tcp.TcpFlags.ACK == tcp.SYN | tcp.ACK == 0x12


@pytest.mark.parametrize(
    ("flags", "text"),
    [
        (tcp.SYN, "S"),
        (tcp.SYN | tcp.ACK, "S."),
        (tcp.PSH | tcp.ACK, "P."),
        (tcp.FIN | tcp.ACK, "F."),
        (tcp.RST, "R"),
        (tcp.ACK, "."),
        (tcp.SYN | tcp.ECE | tcp.CWR, "SEW"),
        (0, "none"),
    ],
)
def test_flags_str_like_tcpdump(flags: int, text: str) -> None:
    assert tcp.flags_str(flags) == text


def test_emit_rejects_bad_options_length() -> None:
    buf = bytearray(80)
    with pytest.raises(ValueError, match="multiple of 4"):
        tcp.emit_into(
            buf,
            0,
            src_port=1,
            dst_port=2,
            seq=0,
            ack=0,
            flags=0,
            window=0,
            options=b"\x01\x01\x01",
            payload_len=0,
            src=SRC,
            dst=DST,
        )
    with pytest.raises(ValueError, match="multiple of 4"):
        tcp.emit_into(
            buf,
            0,
            src_port=1,
            dst_port=2,
            seq=0,
            ack=0,
            flags=0,
            window=0,
            options=b"\x01" * 44,
            payload_len=0,
            src=SRC,
            dst=DST,
        )


def test_emit_at_offset_leaves_surroundings() -> None:
    buf = bytearray(b"\xaa" * 10 + b"\x00" * 20 + b"PAYLOAD" + b"\xbb" * 3)
    tcp.emit_into(
        buf,
        10,
        src_port=1,
        dst_port=2,
        seq=3,
        ack=4,
        flags=tcp.ACK,
        window=5,
        payload_len=7,
        src=SRC,
        dst=DST,
    )
    assert buf[:10] == b"\xaa" * 10 and buf[-3:] == b"\xbb" * 3
    hdr, payload = tcp.parse(buf[10:-3], SRC, DST)
    assert (hdr.src_port, hdr.seq, bytes(payload)) == (1, 3, b"PAYLOAD")


def test_partial_checksum_is_pseudo_header_seed() -> None:
    """checksum=False writes what virtio NEEDS_CSUM / CHECKSUM_PARTIAL expects."""
    payload = b"offloaded payload"
    partial = bytearray(build(payload=payload, checksum=False))
    full = build(payload=payload)
    seed = pseudo_header_sum(SRC, DST, tcp.PROTO, len(partial))
    assert struct.unpack_from("!H", partial, tcp.CHECKSUM_OFFSET)[0] == seed
    # Completing it as the device does (sum from csum_start incl. the seed,
    # store the complement) yields the fully checksummed segment.
    struct.pack_into("!H", partial, 16, ~ones_sum(partial) & 0xFFFF)
    assert bytes(partial) == full
    assert verify_transport(SRC, DST, tcp.PROTO, partial)


# -- truncation and random input ---------------------------------------------


@pytest.mark.parametrize("segment", [LINUX_SYN, LINUX_DATA], ids=["syn", "data"])
def test_every_truncation_raises_parse_error(segment: bytes) -> None:
    src, dst = (SRC, DST) if segment is LINUX_SYN else (DST, SRC)
    hlen = (segment[12] >> 4) * 4
    for cut in range(len(segment)):
        with pytest.raises(ParseError):
            tcp.parse(segment[:cut], src, dst)
        if cut < hlen:
            with pytest.raises(ParseError) as info:
                tcp.parse(segment[:cut], src, dst, verify_checksum=False)
            assert info.value.reason == "truncated"


@FAST
@given(st.binary(max_size=80), st.booleans())
def test_random_bytes_only_parse_error(data: bytes, verify: bool) -> None:
    with contextlib.suppress(ParseError):
        tcp.parse(data, SRC, DST, verify_checksum=verify)


@FAST
@given(st.binary(max_size=40))
def test_random_options_only_parse_error(data: bytes) -> None:
    try:
        opts = tcp.parse_options(data)
    except ParseError:
        return
    assert opts.mss is None or 0 <= opts.mss <= 0xFFFF


@FAST
@given(st.binary(min_size=20, max_size=60), st.binary(max_size=40))
def test_random_header_with_valid_offset_only_parse_error(head: bytes, tail: bytes) -> None:
    # Force a plausible data offset so the option walker sees random bytes.
    seg = bytearray(head + tail)
    words = min(len(seg) // 4, 15)
    seg[12] = (words << 4) | (seg[12] & 0x0F)
    with contextlib.suppress(ParseError):
        tcp.parse(seg, SRC, DST, verify_checksum=False)


# -- properties --------------------------------------------------------------

options_st = st.builds(
    tcp.encode_options,
    mss=st.none() | u16,
    sack_permitted=st.booleans(),
    timestamps=st.none() | st.tuples(u32, u32),
    wscale=st.none() | st.integers(0, 14),
)
sack_st = st.lists(st.tuples(u32, u32), min_size=1, max_size=3).map(tuple)


@FAST
@given(
    sport=u16,
    dport=u16,
    seq=u32,
    ack=u32,
    flags=st.integers(0, tcp.FLAGS_MASK),
    window=u16,
    urgent=u16,
    options=options_st,
    payload=st.binary(max_size=64),
    src=u32,
    dst=u32,
)
def test_parse_after_emit(
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    window: int,
    urgent: int,
    options: bytes,
    payload: bytes,
    src: int,
    dst: int,
) -> None:
    seg = build(
        payload=payload,
        options=options,
        flags=flags,
        seq=seq,
        ack=ack,
        window=window,
        urgent=urgent,
        src_port=sport,
        dst_port=dport,
        src=src,
        dst=dst,
    )
    hdr, got = tcp.parse(seg, src, dst)
    assert (hdr.src_port, hdr.dst_port, hdr.seq, hdr.ack) == (sport, dport, seq, ack)
    assert (hdr.flags, hdr.window, hdr.urgent) == (flags, window, urgent)
    assert hdr.header_len == 20 + len(options)
    assert hdr.options.encode() == options
    assert bytes(got) == payload


@FAST
@given(ts=st.none() | st.tuples(u32, u32), blocks=sack_st)
def test_sack_round_trip(ts: tuple[int, int] | None, blocks: tuple[tuple[int, int], ...]) -> None:
    raw = tcp.encode_options(timestamps=ts, sack_blocks=blocks)
    opts = tcp.parse_options(raw)
    assert opts.sack_blocks == blocks and opts.timestamps == ts


# -- scapy cross-checks ------------------------------------------------------


def _scapy_options(opts: list[tuple[str, object]]) -> dict[str, object]:
    return {name: value for name, value in opts if name not in ("NOP", "EOL")}


@FAST
@given(
    sport=u16,
    dport=u16,
    seq=u32,
    ack=u32,
    flags=st.integers(0, 0xFF),
    window=u16,
    mss=st.none() | u16,
    ws=st.none() | st.integers(0, 14),
    sack_ok=st.booleans(),
    ts=st.none() | st.tuples(u32, u32),
    payload=st.binary(max_size=32),
)
def test_scapy_dissects_what_we_emit(
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    window: int,
    mss: int | None,
    ws: int | None,
    sack_ok: bool,
    ts: tuple[int, int] | None,
    payload: bytes,
) -> None:
    options = tcp.encode_options(mss=mss, sack_permitted=sack_ok, timestamps=ts, wscale=ws)
    seg = build(
        payload=payload,
        options=options,
        flags=flags,
        seq=seq,
        ack=ack,
        window=window,
        src_port=sport,
        dst_port=dport,
    )
    pkt = TCP(seg)
    assert (pkt.sport, pkt.dport, pkt.seq, pkt.ack) == (sport, dport, seq, ack)
    assert (int(pkt.flags), pkt.window, pkt.dataofs) == (flags, window, 5 + len(options) // 4)
    got = _scapy_options(pkt.options)
    assert got.get("MSS") == mss and got.get("WScale") == ws
    assert ("SAckOK" in got) == sack_ok
    assert got.get("Timestamp") == ts
    assert bytes(pkt.payload) == payload
    # scapy's own checksum over the same pseudo-header agrees with ours.
    ip = IP(src="198.18.0.2", dst="198.18.0.1", proto=6) / TCP(seg)
    ip[TCP].chksum = None
    rebuilt = IP(bytes(ip))
    assert rebuilt[TCP].chksum == struct.unpack_from("!H", seg, 16)[0]


@FAST
@given(
    sport=u16,
    dport=u16,
    seq=u32,
    ack=u32,
    flags=st.integers(0, 0xFF),
    window=u16,
    urgent=u16,
    blocks=st.lists(st.tuples(u32, u32), max_size=3),
    ts=st.none() | st.tuples(u32, u32),
    payload=st.binary(max_size=32),
)
def test_we_parse_what_scapy_builds(
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    window: int,
    urgent: int,
    blocks: list[tuple[int, int]],
    ts: tuple[int, int] | None,
    payload: bytes,
) -> None:
    sopts: list[tuple[str, object]] = []
    if ts is not None:
        sopts.append(("Timestamp", ts))
    if blocks:
        sopts.append(("SAck", tuple(edge for block in blocks for edge in block)))
    pkt = (
        IP(src="198.18.0.2", dst="198.18.0.1")
        / TCP(
            sport=sport,
            dport=dport,
            seq=seq,
            ack=ack,
            flags=flags,
            window=window,
            urgptr=urgent,
            options=sopts,
        )
        / Raw(payload)
    )
    wire = bytes(pkt)
    hdr, got = tcp.parse(wire[20:], SRC, DST)
    assert (hdr.src_port, hdr.dst_port, hdr.seq, hdr.ack) == (sport, dport, seq, ack)
    assert (hdr.flags, hdr.window, hdr.urgent) == (flags, window, urgent)
    assert hdr.checksum == IP(wire)[TCP].chksum
    assert hdr.options.timestamps == ts
    assert hdr.options.sack_blocks == tuple(blocks)
    assert bytes(got) == payload


# -- fast paths agree with the general option walk -----------------------------


def _walked(options: bytes) -> tcp.TcpOptions:
    """The same options with a leading NOP pair, EOL-padded: never a fast-path layout."""
    return tcp.parse_options(b"\x01\x01" + options + b"\x00\x00")


@FAST
@given(mss=u16, ts=st.tuples(u32, u32), wscale=st.integers(0, 255))
def test_linux_syn_layout_fast_path_matches_walk(
    mss: int, ts: tuple[int, int], wscale: int
) -> None:
    raw = tcp.encode_options(mss=mss, sack_permitted=True, timestamps=ts, wscale=wscale)
    assert len(raw) == 20  # the layout the fast path recognises
    got = tcp.parse_options(raw)
    assert got == _walked(raw) == tcp.TcpOptions(mss, wscale, True, (), ts)
    seg = build(options=raw, flags=tcp.SYN)
    assert tcp.parse(seg, SRC, DST)[0].options == got


@pytest.mark.parametrize(
    "raw",
    [
        # 20 bytes, almost Linux's SYN layout: each must take the general walk.
        "020405b4 0402080a 00000001 00000002 01030307",
        "020405b4 0101080a 00000001 00000002 01030307",  # no sackOK
        "020405b4 0402080a 00000001 00000002 01010402",  # sackOK again, no wscale
        "03030701 0402080a 00000001 00000002 020405b4",  # same options, other order
        "020405b4 0402080a 00000001 00000002 fe040000",  # unknown kind last
    ],
)
def test_near_syn_layouts(raw: str) -> None:
    data = bytes.fromhex(raw)
    assert tcp.parse_options(data) == _walked(data)


def test_fast_path_options_are_whole_dataclasses() -> None:
    # parse() builds the options of the usual layouts field by field (cheaper
    # than __init__): they must be complete, equal, replaceable and not shared.
    a = tcp.parse(build(), SRC, DST)[0].options
    b = tcp.parse(build(payload=b"x"), SRC, DST)[0].options
    assert a == b == tcp.TcpOptions() and a is not b
    ts = tcp.parse(LINUX_DATA, DST, SRC)[0].options
    assert ts == tcp.TcpOptions(timestamps=(0xDEADBEEF, 0xA2B3C))
    assert dataclasses.replace(ts, mss=1) == tcp.TcpOptions(1, None, False, (), ts.timestamps)
    assert ts.encode() == bytes.fromhex("0101080a deadbeef 000a2b3c")
    assert ts is not tcp.parse(LINUX_DATA, DST, SRC)[0].options


def test_aligned_timestamp_word_with_other_kinds_takes_the_walk() -> None:
    # Data offset 8 but not ``nop, nop, TS``: 12 option bytes decoded by the walk.
    raw = bytes.fromhex("020405b4 01030307 04020101")
    hdr, _ = tcp.parse(build(options=raw), SRC, DST)
    assert hdr.options == tcp.TcpOptions(mss=1460, wscale=7, sack_permitted=True)


def test_parsed_header_sets_every_field() -> None:
    # parse() fills a TcpHeader field by field (cheaper than its __init__):
    # a field added to the dataclass but not to parse() fails here.
    for seg, src, dst in ((LINUX_DATA, DST, SRC), (LINUX_SYN, SRC, DST), (build(), SRC, DST)):
        hdr, _ = tcp.parse(seg, src, dst)
        values = [getattr(hdr, f.name) for f in dataclasses.fields(tcp.TcpHeader)]
        assert hdr == tcp.TcpHeader(*values)
