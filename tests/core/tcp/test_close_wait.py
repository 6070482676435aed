"""CLOSE-WAIT (RFC 9293 3.10.7.4 eighth step): the peer closed first."""

from __future__ import annotations

import errno

import pytest

from aiostack.core.tcp.state import TcpState

from .tcp_helpers import ACK, FIN, ISS, PEER_ISS, RST, drain, established, expect_one, header, send

DATA0 = PEER_ISS + 1
OUR0 = ISS + 1


def test_fin_gives_eof_after_data_and_immediate_ack() -> None:
    conn = established()
    send(conn, 0.1, header(DATA0, OUR0, FIN | ACK), b"bye")
    assert conn.state is TcpState.CLOSE_WAIT
    assert expect_one(conn, 0.1).ack == DATA0 + 4
    assert conn.recv(0.1) == b"bye"
    assert conn.recv(0.1) == b""
    assert conn.recv(0.2) == b""


def test_out_of_order_fin_waits_for_the_hole() -> None:
    conn = established()
    send(conn, 0.1, header(DATA0 + 5, OUR0, FIN | ACK), b"world")
    assert conn.state is TcpState.ESTABLISHED
    send(conn, 0.2, header(DATA0, OUR0), b"hello")
    assert conn.state is TcpState.CLOSE_WAIT
    assert conn.recv(0.2) == b"helloworld" and conn.recv(0.2) == b""


def test_can_still_send_then_close_goes_last_ack() -> None:
    conn = established()
    send(conn, 0.1, header(DATA0, OUR0, FIN | ACK))
    drain(conn, 0.1)
    assert conn.send(0.2, b"reply") == 5
    conn.close(0.2)
    assert conn.state is TcpState.LAST_ACK
    seg = expect_one(conn, 0.2)
    assert seg.flags & FIN and bytes(seg.payload) == b"reply"


def test_rst_in_close_wait_is_epipe() -> None:
    """Linux tcp_reset: CLOSE-WAIT -> EPIPE."""
    conn = established()
    send(conn, 0.1, header(DATA0, OUR0, FIN | ACK))
    send(conn, 0.2, header(DATA0 + 1, 0, RST))
    assert conn.state is TcpState.CLOSE and conn.error == errno.EPIPE
    with pytest.raises(BrokenPipeError):
        conn.send(0.2, b"x")


def test_close_with_unread_data_resets() -> None:
    """RFC 2525 2.17 / Linux: close() with unread data sends RST, not FIN."""
    conn = established()
    send(conn, 0.1, header(DATA0, OUR0, FIN | ACK), b"unread")
    drain(conn, 0.1)
    conn.close(0.2)
    rst = expect_one(conn, 0.2)
    assert rst.flags == RST | ACK and conn.state is TcpState.CLOSE
    assert conn.counters.TcpExtTCPAbortOnClose == 1
