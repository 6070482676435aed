"""TIME-WAIT (RFC 9293 3.10.7.4, Linux tcp_timewait_state_process): 60 s, exactly."""

from __future__ import annotations

from aiostack.core.tcp.demux import TcpDemux
from aiostack.core.tcp.state import TcpState

from .tcp_helpers import (
    ACK,
    FIN,
    ISS,
    PEER,
    PEER_ISS,
    RST,
    SYN,
    US,
    drain,
    established,
    expect_nothing,
    expect_one,
    header,
    send,
)

DATA0 = PEER_ISS + 1
OUR0 = ISS + 1


def time_wait(now: float = 0.2):  # type: ignore[no-untyped-def]
    conn = established()
    conn.shutdown(0.1, 1)
    drain(conn, 0.1)
    send(conn, now, header(DATA0, OUR0 + 1, FIN | ACK))
    drain(conn, now)
    assert conn.state is TcpState.TIME_WAIT
    return conn


def test_time_wait_lasts_60_seconds() -> None:
    """Linux TCP_TIMEWAIT_LEN: nothing at t-1 ms, CLOSED at t."""
    conn = time_wait(0.25)
    assert conn.poll_at() == 60.25
    expect_nothing(conn, 60.249)
    assert conn.state is TcpState.TIME_WAIT
    expect_nothing(conn, 60.25)
    assert conn.state is TcpState.CLOSE
    assert conn.counters.TcpExtTW == 1


def test_retransmitted_fin_is_acked_and_restarts_timer() -> None:
    conn = time_wait(0.25)
    send(conn, 10.0, header(DATA0, OUR0 + 1, FIN | ACK))
    assert expect_one(conn, 10.0).ack == DATA0 + 1
    assert conn.timers.time_wait == 70.0


def test_rst_ends_time_wait() -> None:
    """Linux default tcp_rfc1337=0: an in-window RST kills TIME-WAIT."""
    conn = time_wait()
    send(conn, 1.0, header(DATA0 + 1, 0, RST))
    assert conn.state is TcpState.CLOSE and conn.error == 0


def test_rfc1337_ignores_rst() -> None:
    conn = time_wait()
    conn.settings.tcp_rfc1337 = 1
    send(conn, 1.0, header(DATA0 + 1, 0, RST))
    assert conn.state is TcpState.TIME_WAIT


def test_new_syn_reopens_through_demux() -> None:
    """Linux TCP_TW_SYN: a SYN above rcv_nxt may start a new connection."""
    conn = time_wait()
    dm = TcpDemux()
    dm.add(conn)
    d = dm.input(1.0, PEER, US, header(DATA0 + 100000, 0, SYN), b"")
    assert conn.state is TcpState.CLOSE
    assert d.conn is None and d.reply is not None and d.reply.flags & RST  # no listener here
