"""CLOSING (RFC 9293 3.6 figure 13): simultaneous close."""

from __future__ import annotations

from aiostack.core.tcp.state import TcpState

from .tcp_helpers import ACK, FIN, ISS, PEER_ISS, drain, established, expect_one, header, send

DATA0 = PEER_ISS + 1
OUR0 = ISS + 1


def test_simultaneous_close() -> None:
    conn = established()
    conn.shutdown(0.1, 1)
    drain(conn, 0.1)
    # The peer's FIN crosses ours: it does not acknowledge our FIN.
    send(conn, 0.15, header(DATA0, OUR0, FIN | ACK))
    assert conn.state is TcpState.CLOSING
    assert expect_one(conn, 0.15).ack == DATA0 + 1
    send(conn, 0.2, header(DATA0 + 1, OUR0 + 1))
    assert conn.state is TcpState.TIME_WAIT
    assert conn.timers.time_wait == 0.2 + 60


def test_closing_retransmits_fin_until_acked() -> None:
    conn = established()
    conn.shutdown(0.1, 1)
    drain(conn, 0.1)
    send(conn, 0.15, header(DATA0, OUR0, FIN | ACK))
    drain(conn, 0.15)
    t = conn.timers.retransmit
    assert t is not None
    seg = expect_one(conn, t)
    assert seg.flags == FIN | ACK and seg.seq == OUR0
    assert conn.state is TcpState.CLOSING
