"""The pacing-rate model and the burst chunks it implies (``tcp_tso_autosize``, PSH per chunk).

Expected numbers are Linux 6.18's, measured with ``aiostack packetdrill
--target linux`` (see :mod:`aiostack.core.tcp.pacing`).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiostack.core.tcp.congestion import TCP_INFINITE_SSTHRESH
from aiostack.core.tcp.connection import TcpConnection
from aiostack.core.tcp.info import tcp_info
from aiostack.core.tcp.output import Segment
from aiostack.core.tcp.pacing import (
    GSO_MAX_SIZE,
    UNLIMITED_RATE,
    chunk_segments,
    cwnd_quota,
    open_chunk,
    pacing_rate,
    tso_autosize,
)
from aiostack.core.tcp.state import TcpState

from .tcp_helpers import (
    ACK,
    ISS,
    PEER_ISS,
    PSH,
    SYN,
    client,
    drain,
    expect_one,
    header,
    rel,
    send,
    syn_ack_options,
)


def connected(rtt: float, *, mss: int = 1000) -> TcpConnection:
    """A client whose SYN-ACK came ``rtt`` seconds after its SYN (one RTT sample)."""
    conn = client(0.0)
    expect_one(conn, 0.0)
    opts = syn_ack_options(ts=False, sack=True, wscale=7, mss=mss)
    send(conn, rtt, header(PEER_ISS, ISS + 1, SYN | ACK, 65535, options=opts))
    assert conn.state is TcpState.ESTABLISHED
    drain(conn, rtt)
    return conn


def psh_ends(segs: list[Segment], base: int) -> list[int]:
    """Where the PSH segments end, relative to ``base``."""
    return [rel(s.seq + len(s.payload), base) for s in segs if s.flags & PSH]


# -- the formulas ----------------------------------------------------------------------


def test_pacing_rate_slow_start_matches_linux() -> None:
    """tcpi_pacing_rate after a 100.921 ms handshake: 198174 bytes/s on Linux."""
    rate = pacing_rate(
        mss=1000, cwnd=10, ssthresh=TCP_INFINITE_SSTHRESH, packets_out=0, srtt_us=100921
    )
    assert rate == 198174


def test_pacing_rate_congestion_avoidance_ratio() -> None:
    """cwnd >= ssthresh / 2: tcp_pacing_ca_ratio (120%) instead of 200%."""
    assert pacing_rate(mss=1000, cwnd=20, ssthresh=30, packets_out=0, srtt_us=100_000) == 240_000
    assert pacing_rate(mss=1000, cwnd=14, ssthresh=30, packets_out=0, srtt_us=100_000) == 280_000


def test_pacing_rate_uses_packets_out_when_larger() -> None:
    rate = pacing_rate(mss=1000, cwnd=10, ssthresh=10, packets_out=20, srtt_us=100_000)
    assert rate == 240_000


def test_pacing_rate_unlimited_before_a_sample() -> None:
    assert pacing_rate(mss=1000, cwnd=10, ssthresh=30, packets_out=0, srtt_us=0) == UNLIMITED_RATE


def test_tso_autosize() -> None:
    # 100 ms: about 195 bytes per ms, the min-RTT term is 0: tcp_min_tso_segs.
    assert tso_autosize(200_000, 1000, min_rtt_us=100_000) == 2
    # 2 ms: 9765 bytes per ms plus 65536 >> 3.
    assert tso_autosize(10_000_000, 1000, min_rtt_us=2000) == 17
    # No min RTT: the rate alone.
    assert tso_autosize(10_000_000, 1000, min_rtt_us=None) == 9
    # Never more than gso_max_size.
    assert tso_autosize(UNLIMITED_RATE, 1000, min_rtt_us=0) == GSO_MAX_SIZE // 1000
    assert tso_autosize(UNLIMITED_RATE, 1000, min_rtt_us=0, gso_max_size=16000) == 16
    with pytest.raises(ValueError, match="mss"):
        tso_autosize(1, 0, min_rtt_us=None)


def test_cwnd_quota_is_at_most_half_the_window() -> None:
    """tcp_cwnd_test: at least two GSO packets per window."""
    assert cwnd_quota(10, 0) == 5
    assert cwnd_quota(10, 7) == 3
    assert cwnd_quota(10, 9) == 1
    assert cwnd_quota(10, 10) == 0
    assert cwnd_quota(1, 0) == 1


def test_chunk_segments_takes_the_smaller_limit() -> None:
    common = {"mss": 1000, "ssthresh": TCP_INFINITE_SSTHRESH, "packets_out": 0}
    assert chunk_segments(cwnd=10, in_flight=0, srtt_us=100_000, min_rtt_us=100_000, **common) == 2
    assert chunk_segments(cwnd=10, in_flight=0, srtt_us=1000, min_rtt_us=1000, **common) == 5
    assert chunk_segments(cwnd=10, in_flight=9, srtt_us=1000, min_rtt_us=1000, **common) == 1


@settings(max_examples=300, deadline=None)
@given(
    mss=st.integers(1, 9000),
    cwnd=st.integers(1, 1000),
    ssthresh=st.integers(2, 1 << 31),
    packets_out=st.integers(0, 2000),
    in_flight=st.integers(0, 1200),
    srtt_us=st.integers(0, 10_000_000),
    min_rtt_us=st.none() | st.integers(0, 10_000_000),
    gso_max_size=st.sampled_from([GSO_MAX_SIZE, 16384, 1 << 16 << 2]),
)
def test_chunk_segments_equals_the_composed_formulas(
    mss: int,
    cwnd: int,
    ssthresh: int,
    packets_out: int,
    in_flight: int,
    srtt_us: int,
    min_rtt_us: int | None,
    gso_max_size: int,
) -> None:
    """chunk_segments is written out for speed: it must equal the three functions composed."""
    rate = pacing_rate(
        mss=mss, cwnd=cwnd, ssthresh=ssthresh, packets_out=packets_out, srtt_us=srtt_us
    )
    want = min(
        tso_autosize(rate, mss, min_rtt_us=min_rtt_us, gso_max_size=gso_max_size),
        cwnd_quota(cwnd, in_flight),
    )
    got = chunk_segments(
        mss, cwnd, ssthresh, packets_out, in_flight, srtt_us, min_rtt_us, gso_max_size
    )
    assert got == max(want, 1)


# -- where PSH goes ----------------------------------------------------------------------


def test_initial_window_psh_every_second_segment_at_100ms() -> None:
    """initial_window_ten.pkt: IW10 leaves as five 2-segment chunks, each ending with PSH."""
    conn = connected(0.1)
    conn.send(0.1, b"x" * 15000)
    segs = drain(conn, 0.1)
    assert [len(s.payload) for s in segs] == [1000] * 10
    assert psh_ends(segs, ISS + 1) == [2000, 4000, 6000, 8000, 10000]


def test_short_write_psh_at_chunk_and_end() -> None:
    """data_psh_per_tso_chunk.pkt: 2500 bytes leave as 1000, P1000, P500."""
    conn = connected(0.1)
    conn.send(0.1, b"x" * 2500)
    segs = drain(conn, 0.1)
    assert [len(s.payload) for s in segs] == [1000, 1000, 500]
    assert psh_ends(segs, ISS + 1) == [2000, 2500]


def test_short_rtt_chunks_are_half_the_cwnd() -> None:
    """A near-zero RTT allows large chunks; tcp_cwnd_test cuts IW10 into 5 + 5."""
    conn = connected(0.0001)
    conn.send(0.0001, b"x" * 15000)
    segs = drain(conn, 0.0001)
    assert psh_ends(segs, ISS + 1) == [5000, 10000]


def test_one_segment_chunk_has_no_psh() -> None:
    """A chunk cwnd cuts to one segment (limited transmit, PRR) ends without PSH."""
    conn = connected(0.1)
    conn.send(0.1, b"x" * 9000)
    segs = drain(conn, 0.1)
    assert psh_ends(segs, ISS + 1) == [2000, 4000, 6000, 8000, 9000]
    conn.send(0.1, b"x" * 5000)
    (seg,) = drain(conn, 0.1)  # the tenth segment fills cwnd: a chunk of one
    assert rel(seg.seq, ISS + 1) == 9000 and not seg.flags & PSH


def test_window_limited_chunks() -> None:
    """The peer's window cuts a chunk: two segments or more still end with PSH, one has none.

    Linux: 5-segment chunks, a 2000-byte window: ``1000, P1000`` (the largest
    window seen was 65535, so this is no forced_push); at a 3000-byte
    window's edge a lone segment leaves without PSH.
    """
    conn = connected(0.0001)
    conn.send(0.0001, b"x" * 9000)
    start = conn.snd_nxt
    conn.snd_wnd = 2000
    chunk = open_chunk(conn, start, conn.data_end, 1000)
    assert rel(chunk[1], start) == 2000 and chunk[2] is True
    conn.snd_wnd = 1000
    chunk = open_chunk(conn, start, conn.data_end, 1000)
    assert rel(chunk[1], start) == 1000 and chunk[2] is False


def test_tso_super_segments_are_chunks() -> None:
    """With a TSO device a super-segment is one chunk (one skb), PSH on each."""
    conn = connected(0.1)
    conn.gso_max_size = GSO_MAX_SIZE
    conn.send(0.1, b"x" * 15000)
    segs = drain(conn, 0.1)
    assert [len(s.payload) for s in segs] == [2000] * 5
    assert all(s.flags & PSH for s in segs)
    assert all(s.flags & ACK for s in segs)


def test_tcp_info_reports_the_model_rate() -> None:
    conn = connected(0.1)
    info = tcp_info(conn, 0.1)
    assert info.pacing_rate == 200_000
    assert info.max_pacing_rate == UNLIMITED_RATE
