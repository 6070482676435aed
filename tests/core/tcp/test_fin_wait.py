"""FIN-WAIT-1 and FIN-WAIT-2 (RFC 9293 3.10.4, 3.10.7.4): we closed first."""

from __future__ import annotations

import errno

from aiostack.core.tcp.state import TcpState

from .tcp_helpers import (
    ACK,
    FIN,
    ISS,
    PEER_ISS,
    RST,
    drain,
    established,
    expect_nothing,
    expect_one,
    header,
    send,
)

DATA0 = PEER_ISS + 1
OUR0 = ISS + 1


def test_shutdown_sends_fin_then_fin_wait2() -> None:
    conn = established()
    conn.shutdown(0.1, 1)
    assert conn.state is TcpState.FIN_WAIT1
    fin = expect_one(conn, 0.1)
    assert fin.flags == FIN | ACK and fin.seq == OUR0
    send(conn, 0.2, header(DATA0, OUR0 + 1))
    assert conn.state is TcpState.FIN_WAIT2
    assert conn.timers.retransmit is None and conn.timers.fin_wait2 is None
    # Half-closed: we still receive.
    send(conn, 0.3, header(DATA0, OUR0 + 1), b"late")
    assert conn.recv(0.3) == b"late"


def test_fin_rides_on_last_data_segment() -> None:
    """Linux tcp_send_fin: the FIN joins the last queued segment when it fits."""
    conn = established()
    conn.send(0.1, b"x" * 100)
    conn.close(0.1)
    seg = expect_one(conn, 0.1)
    assert seg.flags & FIN and len(seg.payload) == 100


def test_fin_after_data_in_flight_when_window_blocks_nothing() -> None:
    conn = established()
    conn.send(0.1, b"x" * 3000)
    conn.shutdown(0.1, 1)
    segs = drain(conn, 0.1)
    assert [len(s.payload) for s in segs] == [1460, 1460, 80]
    assert segs[-1].flags & FIN and not segs[0].flags & FIN


def test_fin_wait2_then_fin_enters_time_wait() -> None:
    conn = established()
    conn.shutdown(0.1, 1)
    drain(conn, 0.1)
    send(conn, 0.2, header(DATA0, OUR0 + 1))
    send(conn, 0.3, header(DATA0, OUR0 + 1, FIN | ACK))
    assert conn.state is TcpState.TIME_WAIT
    assert expect_one(conn, 0.3).ack == DATA0 + 1
    assert conn.recv(0.3) == b""


def test_fin_and_ack_of_fin_together() -> None:
    """FIN-WAIT-1: a FIN that also acknowledges ours goes straight to TIME-WAIT."""
    conn = established()
    conn.shutdown(0.1, 1)
    drain(conn, 0.1)
    send(conn, 0.2, header(DATA0, OUR0 + 1, FIN | ACK))
    assert conn.state is TcpState.TIME_WAIT
    assert conn.timers.time_wait == 0.2 + 60.0


def test_orphan_fin_wait2_times_out() -> None:
    """tcp_fin_timeout (60 s): an orphaned FIN-WAIT-2 does not wait forever."""
    conn = established()
    conn.close(0.1)
    drain(conn, 0.1)
    send(conn, 0.2, header(DATA0, OUR0 + 1))
    assert conn.state is TcpState.FIN_WAIT2
    assert conn.timers.fin_wait2 == 0.2 + 60
    expect_nothing(conn, 60.1)
    assert conn.state is TcpState.FIN_WAIT2
    expect_nothing(conn, 60.2)
    assert conn.state is TcpState.CLOSE and conn.error == 0


def test_data_to_closed_socket_resets() -> None:
    """Linux tcp_rcv_state_process: new data after close() -> RST (TCPAbortOnData).

    ``tcp_reset`` then ``tcp_v4_send_reset`` from the segment alone: the reply
    is ``<SEQ=SEG.ACK><CTL=RST>``, no ACK bit (not an RST|ACK at snd_nxt).
    """
    conn = established()
    conn.close(0.1)
    drain(conn, 0.1)
    rst = send(conn, 0.2, header(DATA0, OUR0 + 1), b"unwanted")
    assert conn.state is TcpState.CLOSE
    assert rst is not None and rst.flags == RST and rst.seq == OUR0 + 1 and rst.ack == 0
    expect_nothing(conn, 0.2)
    assert conn.counters.TcpExtTCPAbortOnData == 1


def test_data_after_shutdown_rdwr_resets_with_econnreset() -> None:
    """The test is RCV_SHUTDOWN, not orphaning: shutdown(SHUT_RDWR) in FIN-WAIT-1 too.

    The socket still exists, so tcp_reset's ECONNRESET reaches it.
    """
    conn = established()
    conn.shutdown(0.1, 2)
    drain(conn, 0.1)
    rst = send(conn, 0.2, header(DATA0, OUR0), b"unwanted")
    assert rst is not None and rst.flags == RST and rst.seq == OUR0
    assert conn.state is TcpState.CLOSE and conn.error == errno.ECONNRESET


def test_old_data_after_close_is_not_reset() -> None:
    """Only data beyond rcv_nxt resets (``after(end_seq - fin, rcv_nxt)``): a duplicate is ACKed."""
    conn = established()
    send(conn, 0.05, header(DATA0, OUR0), b"early")
    drain(conn, 0.05)
    assert conn.recv(0.05) == b"early"  # unread data would make close() an abort
    conn.close(0.1)
    drain(conn, 0.1)
    assert send(conn, 0.2, header(DATA0, OUR0 + 1), b"early") is None
    assert conn.state is TcpState.FIN_WAIT2


def test_fin_retransmitted_on_timeout() -> None:
    conn = established()
    conn.shutdown(0.1, 1)
    fin = expect_one(conn, 0.1)
    rto = conn.rtt.rto
    expect_nothing(conn, 0.1 + rto - 0.001)
    again = expect_one(conn, 0.1 + rto)
    assert again.flags == FIN | ACK and again.seq == fin.seq
