"""ESTABLISHED: segmentation, ACK policy, windows, Nagle/NODELAY/CORK, zero-window probes."""

from __future__ import annotations

import pytest

from aiostack.core.tcp.state import TcpState
from aiostack.wire import tcp as wtcp

from .tcp_helpers import (
    ACK,
    ISS,
    PEER_ISS,
    PSH,
    client,
    drain,
    established,
    expect_nothing,
    expect_one,
    header,
    send,
    syn_ack_options,
)

DATA0 = PEER_ISS + 1  # the peer's first data byte
OUR0 = ISS + 1


def test_segmentation_to_mss_after_options_and_psh_on_last() -> None:
    """Payload = MSS - options actually sent (1448 with TS); PSH only on the write's end."""
    conn = established(ts=True)
    assert conn.send(0.1, b"a" * 5000) == 5000
    segs = drain(conn, 0.1)
    assert [len(s.payload) for s in segs] == [1448, 1448, 1448, 656]
    assert [bool(s.flags & PSH) for s in segs] == [False, False, False, True]
    assert [s.seq - OUR0 for s in segs] == [0, 1448, 2896, 4344]
    plain = established(ts=False)
    plain.send(0.1, b"b" * 3000)
    assert [len(s.payload) for s in drain(plain, 0.1)] == [1460, 1460, 80]


def test_initial_window_is_ten_segments() -> None:
    """RFC 6928 / Linux TCP_INIT_CWND: ten segments before the first ACK."""
    conn = established(sndbuf=1 << 20)
    conn.send(0.1, b"x" * 30 * 1460)
    assert len(drain(conn, 0.1)) == 10


def test_quickack_at_start_then_delayed_ack_40ms() -> None:
    """Linux: quick-ACK mode for the first segments, then ATO 40 ms (TCP_ATO_MIN)."""
    conn = established()
    conn.quickack = 1
    send(conn, 0.1, header(DATA0, OUR0), b"x" * 100)
    assert expect_one(conn, 0.1).ack == DATA0 + 100  # quick ACK
    send(conn, 0.2, header(DATA0 + 100, OUR0), b"y" * 100)
    expect_nothing(conn, 0.2)
    assert conn.timers.delack == 0.2 + 0.04
    expect_nothing(conn, 0.2 + 0.04 - 1e-6)
    ack = expect_one(conn, 0.2 + 0.04)
    assert ack.flags == ACK and ack.ack == DATA0 + 200
    assert conn.counters.TcpExtDelayedACKs == 1


def test_two_full_segments_acked_at_once() -> None:
    """RFC 5681 4.2: an ACK at least every second full-sized segment."""
    conn = established()
    conn.quickack = 0
    send(conn, 0.1, header(DATA0, OUR0), b"x" * 1460)
    expect_nothing(conn, 0.1)
    send(conn, 0.1, header(DATA0 + 1460, OUR0), b"x" * 1460)
    assert expect_one(conn, 0.1).ack == DATA0 + 2920


def test_out_of_order_gets_immediate_dupack_with_sack() -> None:
    """RFC 5681 4.2 / RFC 2018: immediate duplicate ACK carrying the SACK block."""
    conn = established()
    conn.quickack = 0
    send(conn, 0.1, header(DATA0 + 1000, OUR0), b"z" * 500)
    dup = expect_one(conn, 0.1)
    assert dup.ack == DATA0
    assert dup.parsed_options().sack_blocks == ((DATA0 + 1000, DATA0 + 1500),)
    send(conn, 0.2, header(DATA0, OUR0), b"a" * 1000)
    fill = expect_one(conn, 0.2)  # the hole is filled: ACK at once
    assert fill.ack == DATA0 + 1500 and fill.parsed_options().sack_blocks == ()
    assert conn.recv(0.2) == b"a" * 1000 + b"z" * 500


def test_whole_window_may_hold_out_of_order_data() -> None:
    """Pitfall: every byte of the offered window may be held out of order."""
    conn = established()
    wnd = conn.rwnd.receive_window(conn.rcv_nxt)
    n = (wnd - 1) // 1000
    for i in range(1, n):
        send(conn, 0.1, header(DATA0 + i * 1000, OUR0), b"q" * 1000)
    assert conn.rcvbuf.out_of_order_bytes == (n - 1) * 1000
    send(conn, 0.1, header(DATA0, OUR0), b"q" * 1000)
    assert len(conn.rcvbuf) == n * 1000


def test_window_update_after_drain_is_not_delayed() -> None:
    """Pitfall: a delayed ACK must not hold back the window update after a read."""
    conn = established(rcvbuf=16384)
    conn.quickack = 0
    seq = DATA0
    while conn.rwnd.receive_window(conn.rcv_nxt) > 0:
        n = min(500, conn.rwnd.receive_window(conn.rcv_nxt))
        send(conn, 0.1, header(seq, OUR0), b"w" * n)
        seq += n
        drain(conn, 0.1)
    assert len(conn.rcvbuf) > 0
    conn.recv(0.2)
    upd = expect_one(conn, 0.2)  # at once, not after the 40 ms delayed-ACK timer
    assert upd.window > 0 and upd.ack == seq


def test_recv_eagain_when_empty() -> None:
    conn = established()
    with pytest.raises(BlockingIOError):
        conn.recv(0.1)


def test_send_bounded_by_sndbuf() -> None:
    conn = established(sndbuf=4096)
    assert conn.send(0.1, b"x" * 10_000) == 4096
    assert conn.send(0.1, b"x") == 0
    assert not conn.writable


def test_nagle_holds_second_small_segment() -> None:
    """RFC 896 (Minshall's variant, Linux tcp_nagle_check)."""
    conn = established()
    conn.send(0.1, b"a")
    assert len(expect_one(conn, 0.1).payload) == 1
    conn.send(0.1, b"b")
    expect_nothing(conn, 0.1)
    send(conn, 0.2, header(DATA0, OUR0 + 1))
    seg = expect_one(conn, 0.2)
    assert bytes(seg.payload) == b"b"


def test_nodelay_sends_small_segments_at_once() -> None:
    conn = established()
    conn.set_nodelay(0.1, True)
    conn.send(0.1, b"a")
    assert [bytes(s.payload) for s in drain(conn, 0.1)] == [b"a"]
    conn.send(0.1, b"b")  # "a" is still unacknowledged: Nagle would hold this
    assert [bytes(s.payload) for s in drain(conn, 0.1)] == [b"b"]


def test_cork_holds_partial_segments_until_uncorked() -> None:
    conn = established()
    conn.set_cork(0.1, True)
    conn.send(0.1, b"x" * 100)
    expect_nothing(conn, 0.1)
    conn.send(0.1, b"x" * 2000)
    assert [len(s.payload) for s in drain(conn, 0.1)] == [1460]
    conn.set_cork(0.1, False)
    assert [len(s.payload) for s in drain(conn, 0.1)] == [640]


def test_zero_window_probe_with_backoff() -> None:
    """RFC 9293 3.8.6.1: a zero window is probed, at doubling intervals."""
    conn = established(peer_window=0)
    rto = conn.rtt.rto
    conn.send(0.1, b"x" * 100)
    expect_nothing(conn, 0.1)
    assert conn.timers.persist == pytest.approx(0.1 + rto)
    expect_nothing(conn, 0.1 + rto - 0.001)
    probe = expect_one(conn, 0.1 + rto)
    assert probe.seq == OUR0 - 1 and len(probe.payload) == 0  # Linux: snd_una - 1
    assert conn.timers.persist == pytest.approx(0.1 + rto + 2 * rto)
    expect_one(conn, 0.1 + 3 * rto)
    # The window opens: the data goes out and the probe timer stops.
    send(conn, 1.0, header(DATA0, OUR0, ACK, 65535))
    seg = expect_one(conn, 1.0)
    assert len(seg.payload) == 100 and conn.timers.persist is None


def test_sws_avoidance_does_not_starve_sender() -> None:
    """Pitfall: a window smaller than the data and than half the max window still drains."""
    conn = established(peer_window=65535)
    send(conn, 0.05, header(DATA0, OUR0, ACK, 300))
    conn.send(0.1, b"x" * 1000)
    expect_nothing(conn, 0.1)  # 300 < max_window / 2: SWS avoidance waits...
    sent = drain(conn, 0.1 + conn.rtt.rto)  # ...but the persist timer sends what fits
    assert len(sent) == 1 and len(sent[0].payload) == 300


def test_sequence_space_wraps() -> None:
    """Sequence numbers are modulo 2**32 (RFC 9293 3.4), tested across the wrap."""
    c = client(0.0, iss=0xFFFFFF00)
    syn = expect_one(c, 0.0)
    assert syn.seq == 0xFFFFFF00
    send(c, 0.01, header(0xFFFFFFF0, 0xFFFFFF01, wtcp.SYN | ACK, options=syn_ack_options(ts=False)))
    assert c.state is TcpState.ESTABLISHED
    drain(c, 0.01)
    c.send(0.02, b"w" * 3000)
    segs = drain(c, 0.02)
    assert [s.seq for s in segs] == [
        0xFFFFFF01,
        (0xFFFFFF01 + 1460) & 0xFFFFFFFF,
        (0xFFFFFF01 + 2920) & 0xFFFFFFFF,
    ]
    send(c, 0.03, header(0xFFFFFFF1, (0xFFFFFF01 + 3000) & 0xFFFFFFFF, ACK), b"r" * 40)
    assert c.snd_una == (0xFFFFFF01 + 3000) & 0xFFFFFFFF and c.timers.retransmit is None
    assert c.recv(0.03) == b"r" * 40
    assert c.rcv_nxt == (0xFFFFFFF1 + 40) & 0xFFFFFFFF
