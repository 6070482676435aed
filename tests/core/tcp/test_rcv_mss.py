"""``rcv_mss`` from small segments, as Linux ``tcp_measure_rcv_mss`` keeps it.

A segment shorter than ``rcv_mss`` lowers it only when the previous one had
the same (header-invariant) size and it looks full-sized: at least
``TCP_MIN_MSS + 20`` bytes with its header and none of PSH/FIN/URG/SYN
(``TCP_REMNANT``), or at least ``TCP_MSS_DEFAULT + 20`` bytes. Every test runs
on the fast path and on the general path (``fastpath.ENABLED``), which call
the same :func:`aiostack.core.tcp.input.measure_rcv_mss`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aiostack.core.tcp import fastpath
from aiostack.core.tcp.connection import TcpConnection
from aiostack.wire import tcp as wtcp

from .tcp_helpers import ACK, ISS, PEER_TSVAL, PSH, drain, established, header, send


@pytest.fixture(params=[True, False], ids=["fast", "general"])
def fast(request: pytest.FixtureRequest) -> Iterator[bool]:
    saved = fastpath.ENABLED
    fastpath.ENABLED = request.param
    try:
        yield request.param
    finally:
        fastpath.ENABLED = saved


def _feed(conn: TcpConnection, sizes: list[int], flags: int = ACK, *, ts: bool = False) -> None:
    """The peer sends in-order segments of ``sizes`` bytes; each ACK is drained and read."""
    now = 0.1
    for n in sizes:
        opts = wtcp.TcpOptions(timestamps=(PEER_TSVAL + 1, 0)) if ts else None
        send(conn, now, header(conn.rcv_nxt, ISS + 1, flags, options=opts), b"x" * n)
        drain(conn, now + 0.5)
        now += 1.0


def test_initial_rcv_mss_is_tcp_mss_default(fast: bool) -> None:
    conn = established()
    assert conn.rcv_mss == 536


def test_two_equal_small_segments_lower_rcv_mss(fast: bool) -> None:
    """tcp_measure_rcv_mss: the first short segment only records last_seg_size."""
    conn = established()
    _feed(conn, [200])
    assert conn.rcv_mss == 536
    assert conn.last_seg_size == 200
    _feed(conn, [200])
    assert conn.rcv_mss == 200


def test_psh_marks_a_remnant(fast: bool) -> None:
    """TCP_REMNANT: PSH segments below TCP_MSS_DEFAULT + 20 bytes never count."""
    conn = established()
    _feed(conn, [200, 200, 200], ACK | PSH)
    assert conn.rcv_mss == 536
    assert conn.last_seg_size == 0


def test_tiny_segments_do_not_count(fast: bool) -> None:
    """Below TCP_MIN_MSS + 20 bytes with the header (88 + 20), even without PSH."""
    conn = established()
    _feed(conn, [87, 87, 87])
    assert conn.rcv_mss == 536
    _feed(conn, [88, 88])
    assert conn.rcv_mss == 88


def test_alternating_sizes_keep_rcv_mss(fast: bool) -> None:
    """last_seg_size is the previous segment's only: 200, 250, 200, 250 change nothing."""
    conn = established()
    _feed(conn, [200, 250, 200, 250])
    assert conn.rcv_mss == 536
    _feed(conn, [200, 200])
    assert conn.rcv_mss == 200


def test_full_segment_resets_last_seg_size(fast: bool) -> None:
    """Any segment of at least rcv_mss clears last_seg_size (and may raise rcv_mss)."""
    conn = established()
    _feed(conn, [200, 536, 200])
    assert conn.rcv_mss == 536
    _feed(conn, [200])
    assert conn.rcv_mss == 200
    _feed(conn, [1000])
    assert conn.rcv_mss == 1000
    assert conn.rcvbuf.ratio_mss == 1000


def test_lowered_rcv_mss_is_the_buffers_too(fast: bool) -> None:
    """The scaling-ratio measure uses the same rcv_mss: a longer segment measures again."""
    conn = established()
    _feed(conn, [300, 300])
    assert conn.rcv_mss == 300
    assert conn.rcvbuf.ratio_mss == 300


def test_timestamps_size_is_header_invariant(fast: bool) -> None:
    """len + doff * 4 - tcp_header_len: the 12-byte timestamp block is not payload."""
    conn = established(ts=True)
    assert conn.ts_ok
    _feed(conn, [200, 200], ts=True)
    assert conn.rcv_mss == 200


def test_out_of_order_segments_are_not_measured(fast: bool) -> None:
    """tcp_event_data_recv (which measures) runs for in-order data only."""
    conn = established()
    base = conn.rcv_nxt
    for off in (400, 600):
        send(conn, 0.1, header(base + off, ISS + 1, ACK), b"x" * 200)
    assert conn.rcv_mss == 536
    assert conn.last_seg_size == 0
    assert conn.rcvbuf.out_of_order_bytes == 400
