"""LAST-ACK (RFC 9293 3.10.7.4): we closed second and wait for the ACK of our FIN."""

from __future__ import annotations

from aiostack.core.tcp.state import TcpState

from .tcp_helpers import ACK, FIN, ISS, PEER_ISS, RST, drain, established, expect_one, header, send

DATA0 = PEER_ISS + 1
OUR0 = ISS + 1


def test_ack_of_fin_closes() -> None:
    conn = established()
    send(conn, 0.1, header(DATA0, OUR0, FIN | ACK))
    drain(conn, 0.1)
    conn.close(0.2)
    assert conn.state is TcpState.LAST_ACK
    fin = expect_one(conn, 0.2)
    assert fin.flags == FIN | ACK and fin.ack == DATA0 + 1
    send(conn, 0.3, header(DATA0 + 1, OUR0 + 1))
    assert conn.state is TcpState.CLOSE and conn.error == 0
    assert conn.counters.TcpCurrEstab == 0
    # CLOSED answers a stray segment with an RST, but never an RST.
    stray = send(conn, 0.4, header(DATA0 + 1, OUR0 + 1), b"x")
    assert stray is not None and stray.flags == RST and stray.seq == OUR0 + 1
    assert send(conn, 0.4, header(DATA0 + 1, OUR0 + 1, RST)) is None


def test_fin_retransmitted_in_last_ack() -> None:
    conn = established()
    send(conn, 0.1, header(DATA0, OUR0, FIN | ACK))
    drain(conn, 0.1)
    conn.close(0.2)
    drain(conn, 0.2)
    t = conn.timers.retransmit
    assert t is not None
    assert expect_one(conn, t).flags == FIN | ACK
