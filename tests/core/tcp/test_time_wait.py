"""TIME-WAIT (RFC 9293 3.10.7.4, Linux tcp_timewait_state_process): 60 s, exactly."""

from __future__ import annotations

from aiostack.core.counters import Counters
from aiostack.core.tcp.demux import TcpDemux
from aiostack.core.tcp.isn import IsnGenerator
from aiostack.core.tcp.listener import TcpListener
from aiostack.core.tcp.state import TcpState
from aiostack.wire import tcp as wtcp

from .tcp_helpers import (
    ACK,
    FIN,
    ISS,
    LPORT,
    PEER,
    PEER_ISS,
    PEER_TSVAL,
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


def test_old_bare_ack_is_acked_and_restarts_timer() -> None:
    """tcp_timewait_state_process: a bare ACK below rcv_nxt is out of window -> TCP_TW_ACK.

    RFC 9293 3.10.7.4 (unacceptable segment: send an ACK); Linux also
    reschedules the 60 s timer because the segment has the ACK bit.
    """
    conn = time_wait(0.2)
    send(conn, 0.3, header(DATA0, OUR0 + 1, ACK))
    reply = expect_one(conn, 0.3)
    assert reply.flags == ACK and reply.seq == OUR0 + 1 and reply.ack == DATA0 + 1
    assert conn.timers.time_wait == 60.3
    assert conn.state is TcpState.TIME_WAIT


def test_bare_ack_at_rcv_nxt_restarts_timer_silently() -> None:
    """tcp_timewait_state_process: seq == rcv_nxt without data is in window: no answer."""
    conn = time_wait(0.2)
    send(conn, 5.0, header(DATA0 + 1, OUR0 + 1, ACK))
    expect_nothing(conn, 5.0)
    assert conn.timers.time_wait == 65.0


def test_out_of_window_acks_are_rate_limited_but_data_is_not() -> None:
    """tcp_timewait_check_oow_rate_limit: bare ACKs/SYNs at most one per 500 ms.

    ``tcp_oow_rate_limited`` exempts segments carrying data or FIN (not part
    of an ACK loop); the timewait sock starts with no previous answer
    (``tw_last_oow_ack_time = 0``), so the first one is answered.
    """
    conn = time_wait(0.2)
    send(conn, 1.0, header(DATA0, OUR0 + 1, ACK))
    expect_one(conn, 1.0)
    send(conn, 1.499, header(DATA0, OUR0 + 1, ACK))
    expect_nothing(conn, 1.499)
    send(conn, 1.499, header(DATA0, OUR0 + 1, SYN))  # old SYN: also limited
    expect_nothing(conn, 1.499)
    send(conn, 1.499, header(DATA0, OUR0 + 1, ACK | FIN))  # retransmitted FIN: answered
    assert expect_one(conn, 1.499).ack == DATA0 + 1
    send(conn, 1.5, header(DATA0, OUR0 + 1, ACK))
    expect_one(conn, 1.5)


def test_out_of_window_rst_is_ignored() -> None:
    """Only an RST at exactly rcv_nxt kills TIME-WAIT; any other is dropped unanswered."""
    conn = time_wait()
    send(conn, 1.0, header(DATA0 + 2, 0, RST))
    expect_nothing(conn, 1.0)
    assert conn.state is TcpState.TIME_WAIT


def test_reopening_syn_gets_isn_above_old_snd_nxt() -> None:
    """Linux TCP_TW_SYN: the new ISN is tw_snd_nxt + 65535 + 2 (never a fresh one)."""
    conn = time_wait()
    dm = TcpDemux()
    dm.add(conn)
    lst = TcpListener(
        local_addr=US, local_port=LPORT, backlog=4, isn=IsnGenerator(bytes(16)), counters=Counters()
    )
    dm.listen(lst)
    d = dm.input(1.0, PEER, US, header(DATA0 + 100000, 0, SYN), b"")
    assert conn.state is TcpState.CLOSE
    assert d.conn is not None and d.conn is not conn
    syn_ack = expect_one(d.conn, 1.0)
    assert syn_ack.flags == SYN | ACK
    assert syn_ack.seq == (conn.snd_nxt + 65537) & 0xFFFFFFFF == OUR0 + 1 + 65537


def test_paws_rejected_syn_does_not_reopen() -> None:
    """tcp_timewait_state_process: TCP_TW_SYN needs !paws_reject even above rcv_nxt."""
    conn = established(ts=True)
    conn.shutdown(0.1, 1)
    drain(conn, 0.1)
    ts = wtcp.TcpOptions(timestamps=(PEER_TSVAL + 10, 0))
    send(conn, 0.2, header(DATA0, OUR0 + 1, FIN | ACK, options=ts))
    drain(conn, 0.2)
    assert conn.state is TcpState.TIME_WAIT
    dm = TcpDemux()
    dm.add(conn)
    old = wtcp.TcpOptions(timestamps=(PEER_TSVAL + 5, 0))
    d = dm.input(1.0, PEER, US, header(DATA0 + 100000, 0, SYN, options=old), b"")
    assert conn.state is TcpState.TIME_WAIT and d.conn is conn
    assert expect_one(conn, 1.0).flags == ACK
    # The same timestamp is no PAWS reject, and the sequence number is new: reopen.
    same = wtcp.TcpOptions(timestamps=(PEER_TSVAL + 10, 0))
    dm.input(2.0, PEER, US, header(DATA0 + 100000, 0, SYN, options=same), b"")
    assert conn.state is TcpState.CLOSE
