"""Adaptive delayed-ACK timeout and receive-buffer auto-tuning (Linux behaviour, explicit times).

The connection under test completes its handshake with a 300 ms RTT (SYN at
0.0, SYN-ACK at 0.3): SRTT 0.3 s, RTO 0.9 s, so the delayed-ACK ceiling is
``TCP_DELACK_MAX`` (200 ms) rather than the SRTT.
"""

from __future__ import annotations

import pytest

from aiostack.core.tcp.connection import TcpConnection
from aiostack.core.tcp.state import TcpState
from aiostack.core.tcp.timers import TCP_ATO_MIN, TCP_DELACK_MAX
from aiostack.settings import Settings

from .tcp_helpers import (
    ACK,
    ISS,
    PEER_ISS,
    SYN,
    client,
    drain,
    expect_nothing,
    expect_one,
    header,
    send,
    syn_ack_options,
)

OUR0 = ISS + 1
DATA0 = PEER_ISS + 1
#: Float sums of times (1.1 + 0.08) may land a hair after the decimal value.
EPS = 1e-9


def conn_rtt(rtt: float, st: Settings | None = None, **kw: object) -> TcpConnection:
    conn = client(0.0, st, **kw)
    expect_one(conn, 0.0)
    opts = syn_ack_options(ts=False, wscale=7)
    send(conn, rtt, header(PEER_ISS, ISS + 1, SYN | ACK, 65535, options=opts))
    assert conn.state is TcpState.ESTABLISHED
    drain(conn, rtt)
    return conn


class Peer:
    """The sending side: in-order segments of ``size`` bytes."""

    def __init__(self, conn: TcpConnection) -> None:
        self.conn = conn
        self.seq = DATA0

    def data(self, now: float, size: int = 100) -> None:
        send(self.conn, now, header(self.seq, OUR0), b"d" * size)
        self.seq += size


# -- adaptive ATO (Linux tcp_event_data_recv, tcp_send_delayed_ack) -------------------------


def test_ato_adapts_between_40_and_200_ms() -> None:
    """Linux: ato starts at TCP_ATO_MIN, doubles on each late ACK, is capped at TCP_DELACK_MAX."""
    conn = conn_rtt(0.3)
    # Quick-ACK credits used up; not TCP_QUICKACK=0, which enters pingpong mode,
    # whose first delayed-ACK timeout deflates ato instead (tcp_delack_timer_handler).
    conn.quickack = 0
    peer = Peer(conn)
    peer.data(1.0)  # first data: ato = 40 ms
    expect_nothing(conn, 1.0399)
    assert expect_one(conn, 1.04).ack == peer.seq  # the timer fired: ato -> 80 ms
    assert conn.ato == pytest.approx(0.08)
    peer.data(1.1)  # gap 100 ms >= ato: ato stays 80 ms
    expect_nothing(conn, 1.1799)
    expect_one(conn, 1.18 + EPS)  # ato -> 160 ms
    peer.data(1.3)  # gap 200 ms >= 160 ms
    expect_nothing(conn, 1.4599)
    expect_one(conn, 1.46 + EPS)  # ato -> 320 ms
    peer.data(1.5)  # gap 200 ms < 320 ms: ato = 160 + 200 = 360 ms, capped at arming
    assert conn.ato == pytest.approx(0.36)
    assert conn.timers.delack == pytest.approx(1.5 + TCP_DELACK_MAX)
    expect_nothing(conn, 1.6999)
    expect_one(conn, 1.7 + EPS)


def test_ato_shrinks_back_with_fast_arrivals() -> None:
    """Linux: arrivals within TCP_ATO_MIN/2 halve ato toward 40 ms."""
    conn = conn_rtt(0.3)
    conn.set_quickack(0.3, False)
    conn.ato = 0.32
    conn.lrcvtime = 1.0
    peer = Peer(conn)
    t = 1.0
    for _ in range(12):
        t += 0.01
        peer.data(t, 10)
        drain(conn, t)
    assert conn.ato == pytest.approx(TCP_ATO_MIN, abs=1e-4)


def test_ato_is_bounded_by_srtt() -> None:
    """Linux tcp_send_delayed_ack: a known SRTT (at least 40 ms) bounds the delay."""
    conn = conn_rtt(0.06)
    conn.set_quickack(0.06, False)
    conn.ato = 0.15
    conn.lrcvtime = 0.9
    Peer(conn).data(1.0)  # gap 100 ms < 150 ms: ato = 75 + 100 = 175 ms, SRTT 60 ms
    assert conn.timers.delack == pytest.approx(1.06)


def test_long_silence_re_enters_quickack() -> None:
    """Linux: a gap longer than the RTO means the sender restarts: ACK at once."""
    conn = conn_rtt(0.3)
    conn.set_quickack(0.3, False)
    peer = Peer(conn)
    peer.data(1.0)
    drain(conn, 1.04)
    peer.data(3.0)  # 2 s > RTO 0.9 s
    assert expect_one(conn, 3.0).ack == peer.seq


# -- receive-buffer auto-tuning (Linux tcp_rcv_space_adjust) ---------------------------------


def window_round(conn: TcpConnection, peer: Peer, now: float, segs: int) -> None:
    """``segs`` full segments arrive at ``now`` and the application reads them all."""
    for _ in range(segs):
        peer.data(now, 1460)
    conn.recv(now)
    drain(conn, now)


def test_rcvbuf_grows_with_the_rate_read_per_rtt() -> None:
    """Linux tcp_rcv_space_adjust: bytes read per RTT grow: the buffer follows, to tcp_rmem[2]."""
    conn = conn_rtt(0.1)
    peer = Peer(conn)
    # sk_rcvbuf is what auto-tuning moves (the window it gives also follows
    # scaling_ratio, measured from the first segment: see rmem.py).
    start = conn.rcvbuf.rcvbuf
    assert start == 131072 and conn.rcvbuf.capacity == 131072 // 2
    window_round(conn, peer, 1.0, 40)  # starts the receiver's RTT measurement
    window_round(conn, peer, 1.05, 4)  # rcv_nxt passes the window edge
    assert conn.rcvbuf.rcvbuf == start  # no RTT yet
    window_round(conn, peer, 1.1, 40)
    assert conn.rcv_rtt > 0
    window_round(conn, peer, 1.2, 40)
    grown = conn.rcvbuf.rcvbuf
    assert start < grown <= Settings().tcp_rmem[2]
    window_round(conn, peer, 1.3, 40)
    window_round(conn, peer, 1.4, 40)
    assert conn.rcvbuf.rcvbuf <= Settings().tcp_rmem[2]


def test_rcvbuf_not_tuned_after_so_rcvbuf() -> None:
    """Linux SOCK_RCVBUF_LOCK: SO_RCVBUF set by the user disables auto-tuning."""
    conn = conn_rtt(0.1, rcvbuf=131072)
    peer = Peer(conn)
    for k in range(6):
        window_round(conn, peer, 1.0 + 0.1 * k, 40)
    assert conn.rcvbuf.rcvbuf == 131072 and not conn.rcvbuf_auto


def test_rcvbuf_not_tuned_with_moderate_rcvbuf_off() -> None:
    """net.ipv4.tcp_moderate_rcvbuf=0 turns auto-tuning off."""
    st = Settings()
    st.tcp_moderate_rcvbuf = 0
    conn = conn_rtt(0.1, st)
    peer = Peer(conn)
    for k in range(6):
        window_round(conn, peer, 1.0 + 0.1 * k, 40)
    assert conn.rcvbuf.rcvbuf == 131072


def test_slow_reader_does_not_grow_the_buffer() -> None:
    """Only what the application reads per RTT counts, not what arrives."""
    conn = conn_rtt(0.1)
    peer = Peer(conn)
    start = conn.rcvbuf.rcvbuf
    t = 1.0
    for _ in range(20):
        peer.data(t, 1460)
        drain(conn, t)
        conn.recv(t, 100)  # reads a trickle
        t += 0.1
    assert conn.rcvbuf.rcvbuf == start
