"""Urgent data as Linux keeps it (tcp_check_urg, tcp_urg, tcp_recvmsg, tcp_recv_urg, snd_up)."""

from __future__ import annotations

import errno
from dataclasses import replace

import pytest

from aiostack.core.tcp import urgent
from aiostack.core.tcp.connection import TcpConnection
from aiostack.wire import tcp as wtcp

from .tcp_helpers import ACK, ISS, PEER_ISS, drain, established, header, send

DATA0 = PEER_ISS + 1
OUR0 = ISS + 1
URG = wtcp.URG


def _urg(seq: int, ptr: int) -> wtcp.TcpHeader:
    return replace(header(seq, OUR0), flags=ACK | URG, urgent=ptr)


def _oob(conn: TcpConnection, *, peek: bool = False) -> bytes:
    return urgent.recv_urg(conn, 1, peek=peek, closed=False)


def test_urgent_byte_leaves_the_stream_and_reads_stop_at_the_mark() -> None:
    """RFC 6093: the pointer is one past the urgent byte; recv stops before it, skips it."""
    conn = established()
    send(conn, 0.1, _urg(DATA0, 5), b"abcdXefgh")
    assert conn.urg_data == urgent.URG_VALID | ord("X")
    assert urgent.inq(conn) == 4 and not urgent.at_mark(conn)
    assert conn.peek(100) == b"abcd"
    assert conn.recv(0.1, 100) == b"abcd"
    assert urgent.at_mark(conn) and urgent.inq(conn) == 0
    assert _oob(conn, peek=True) == b"X"
    assert _oob(conn) == b"X"
    with pytest.raises(OSError) as exc:
        _oob(conn)
    assert exc.value.errno == errno.EINVAL
    assert conn.recv(0.1, 100) == b"efgh"
    assert conn.urg_data == 0  # past the mark: urgent mode over


def test_read_at_the_mark_drops_the_unread_byte() -> None:
    """tcp_recvmsg steps over the byte (urg_hole); MSG_OOB then has nothing (EINVAL)."""
    conn = established()
    send(conn, 0.1, _urg(DATA0, 1), b"Xab")
    assert conn.peek(10) == b"ab"
    assert conn.recv(0.1, 10) == b"ab"
    with pytest.raises(OSError) as exc:
        _oob(conn)
    assert exc.value.errno == errno.EINVAL


def test_only_the_urgent_byte_queued_is_not_readable() -> None:
    conn = established()
    send(conn, 0.1, _urg(DATA0, 1), b"X")
    assert not conn.readable
    assert _oob(conn) == b"X"
    with pytest.raises(BlockingIOError):
        conn.recv(0.1, 10)


def test_pointer_ahead_of_the_data_is_eagain_until_the_byte_arrives() -> None:
    """URG_NOTYET: MSG_OOB is EAGAIN; the byte is picked up from a later plain segment."""
    conn = established()
    send(conn, 0.1, _urg(DATA0, 9), b"abcd")
    assert conn.urg_data == urgent.URG_NOTYET
    with pytest.raises(BlockingIOError):
        _oob(conn)
    assert conn.recv(0.1, 100) == b"abcd"
    # No URG bit on this one: header prediction must not swallow it.
    send(conn, 0.2, header(DATA0 + 4, OUR0), b"efghZij")
    assert conn.urg_data == urgent.URG_VALID | ord("Z")
    assert conn.recv(0.2, 100) == b"efgh"
    assert _oob(conn) == b"Z"
    assert conn.recv(0.2, 100) == b"ij"


def test_oobinline_keeps_the_byte_in_the_stream() -> None:
    conn = established()
    conn.urginline = True
    send(conn, 0.1, _urg(DATA0, 3), b"abXcd")
    assert urgent.inq(conn) == 5
    with pytest.raises(OSError) as exc:
        _oob(conn)
    assert exc.value.errno == errno.EINVAL
    assert conn.recv(0.1, 100) == b"ab"  # still stops at the mark
    assert urgent.at_mark(conn)
    assert conn.recv(0.1, 100) == b"Xcd"


def test_newer_pointer_replaces_an_unread_byte_that_then_reads_in_line() -> None:
    conn = established()
    send(conn, 0.1, _urg(DATA0, 3), b"abXcd")
    send(conn, 0.2, _urg(DATA0 + 5, 2), b"eYf")
    assert conn.urg_data == urgent.URG_VALID | ord("Y")
    assert conn.recv(0.2, 100) == b"abXcde"
    assert _oob(conn) == b"Y"
    assert conn.recv(0.2, 100) == b"f"


def test_old_or_duplicate_pointer_is_ignored() -> None:
    conn = established()
    send(conn, 0.1, _urg(DATA0, 2), b"aXb")
    assert _oob(conn) == b"X"
    send(conn, 0.2, _urg(DATA0, 2), b"")  # pointer behind rcv_nxt: no replay
    assert conn.urg_data == urgent.URG_READ


def test_send_oob_marks_segments_until_acknowledged() -> None:
    """tcp_mark_urg: snd_up = end of the write; URG on segments before it until snd_una passes."""
    conn = established(ts=False)
    conn.send(0.1, b"a" * 2000, oob=True)
    segs = drain(conn, 0.1)
    assert [s.flags & URG for s in segs] == [URG, URG]
    assert [s.urgent for s in segs] == [2000, 2000 - 1460]
    send(conn, 0.2, header(DATA0, OUR0 + 2000))
    conn.send(0.2, b"b" * 10)
    (seg,) = drain(conn, 0.2)
    assert not seg.flags & URG and seg.urgent == 0
    assert conn.snd_up is None


def test_peek_all_at_the_mark_skips_the_byte_and_stops_at_the_next_mark() -> None:
    conn = established()
    send(conn, 0.1, _urg(DATA0, 1), b"Xabc")
    assert conn.peek() == b"abc"
    assert conn.peek(2) == b"ab"
    assert conn.recv(0.1) == b"abc"
