"""Linux's delayed-ACK, PSH, RTO-restart, window and cork details (explicit times).

Each test names the Linux function whose behaviour it pins; the packetdrill
scripts in tests/packetdrill/ (delack/, nagle/, recovery/, window/, listen/)
check the same against the kernel. The connection under test completes its
handshake at 0.0 (so the RTO is the 200 ms minimum plus variance) and the
peer offers an MSS of 1000 unless a test says otherwise.
"""

from __future__ import annotations

import pytest

from aiostack.core.counters import Counters
from aiostack.core.tcp.connection import TcpConnection
from aiostack.core.tcp.listener import TcpListener
from aiostack.core.tcp.timers import TCP_ATO_MIN
from aiostack.settings import Settings

from .tcp_helpers import (
    ACK,
    FIN,
    ISS,
    PEER,
    PEER_ISS,
    PSH,
    SYN,
    US,
    client,
    drain,
    established,
    expect_nothing,
    expect_one,
    header,
    send,
)
from .test_listen import COOKIES, ISN, syn

OUR0 = ISS + 1
DATA0 = PEER_ISS + 1


def interactive() -> TcpConnection:
    """A connection in pingpong mode: request at 1.0 (quick ACK), reply at once."""
    conn = established(0.0, mss=1000)
    send(conn, 1.0, header(DATA0, OUR0), b"q" * 100)
    quick = expect_one(conn, 1.0)
    assert quick.ack == DATA0 + 100 and quick.seg_len == 0  # tcp_incr_quickack credits
    assert not conn.pingpong
    conn.send(1.0, b"r" * 10)
    reply = expect_one(conn, 1.0)
    assert reply.seg_len == 10
    # tcp_event_data_sent: a reply within ato of the last data received.
    assert conn.pingpong
    return conn


# -- delayed ACK: pingpong mode (tcp_event_data_sent, tcp_in_quickack_mode) ----------


def test_pingpong_delays_the_ack_by_ato_then_leaves_on_timeout() -> None:
    """tcp_send_delayed_ack in pingpong mode; tcp_delack_timer_handler leaves it."""
    conn = interactive()
    send(conn, 1.1, header(DATA0 + 100, OUR0 + 10), b"q" * 100)
    expect_nothing(conn, 1.1)  # quick-ACK credits remain, but pingpong overrides them
    expect_nothing(conn, 1.1 + TCP_ATO_MIN - 1e-4)
    late = expect_one(conn, 1.1 + TCP_ATO_MIN)
    assert late.ack == DATA0 + 200 and late.seg_len == 0
    assert not conn.pingpong and conn.ato == TCP_ATO_MIN
    # Out of pingpong the quick-ACK credits apply again.
    send(conn, 1.3, header(DATA0 + 200, OUR0 + 10), b"q" * 100)
    assert expect_one(conn, 1.3).ack == DATA0 + 300


def test_reply_carries_the_delayed_ack() -> None:
    """RFC 1122 4.2.3.2: the reply 10 ms later carries the ACK; no pure ACK at all."""
    conn = interactive()
    send(conn, 1.1, header(DATA0 + 100, OUR0 + 10), b"q" * 100)
    expect_nothing(conn, 1.1)
    conn.send(1.11, b"r" * 10)
    reply = expect_one(conn, 1.11)
    assert reply.seg_len == 10 and reply.ack == DATA0 + 200
    assert conn.timers.delack is None
    expect_nothing(conn, 1.2)


def test_two_full_segments_are_acked_at_once_in_pingpong() -> None:
    """__tcp_ack_snd_check: more than rcv_mss unacknowledged is ACKed at once."""
    conn = interactive()
    send(conn, 1.1, header(DATA0 + 100, OUR0 + 10), b"q" * 1000)
    expect_nothing(conn, 1.1)
    send(conn, 1.11, header(DATA0 + 1100, OUR0 + 10), b"q" * 1000)
    assert expect_one(conn, 1.11).ack == DATA0 + 2100


def test_tcp_quickack_sends_the_delayed_ack_and_leaves_pingpong() -> None:
    """__tcp_sock_set_quickack(1): exit pingpong mode and send the owed ACK now."""
    conn = interactive()
    send(conn, 1.1, header(DATA0 + 100, OUR0 + 10), b"q" * 100)
    expect_nothing(conn, 1.1)
    conn.set_quickack(1.11, True)
    assert expect_one(conn, 1.11).ack == DATA0 + 200
    assert not conn.pingpong
    # TCP_QUICKACK 0 enters pingpong mode (inet_csk_enter_pingpong_mode).
    conn.set_quickack(1.2, False)
    assert conn.pingpong


def test_fin_after_data_is_acked_after_ato() -> None:
    """tcp_fin enters pingpong mode: the FIN's ACK waits TCP_ATO_MIN for our own FIN."""
    conn = established(0.0, mss=1000)
    send(conn, 1.0, header(DATA0, OUR0), b"q" * 200)
    assert expect_one(conn, 1.0).ack == DATA0 + 200
    send(conn, 1.0, header(DATA0 + 200, OUR0, ACK | FIN))
    expect_nothing(conn, 1.0)
    expect_nothing(conn, 1.0 + TCP_ATO_MIN - 1e-4)
    assert expect_one(conn, 1.0 + TCP_ATO_MIN).ack == DATA0 + 201


def test_fin_without_data_is_acked_at_once() -> None:
    """tcp_send_delayed_ack with ato 0 (no data received yet): the timer is due now."""
    conn = established(0.0, mss=1000)
    send(conn, 1.0, header(DATA0, OUR0, ACK | FIN))
    assert expect_one(conn, 1.0).ack == DATA0 + 1


# -- PSH (tcp_retransmit_skb, tcp_write_wakeup, forced_push) --------------------------


def test_retransmission_keeps_psh() -> None:
    """tcp_retransmit_skb resends the skb with its flags: PSH of each 1000-byte write."""
    conn = established(0.0, mss=1000, sack=False)
    for _ in range(3):
        conn.send(1.0, b"x" * 1000)
        assert expect_one(conn, 1.0).flags & PSH
    rto = conn.timers.retransmit
    assert rto is not None
    first = expect_one(conn, rto)
    assert first.seq == OUR0 and first.seg_len == 1000 and first.flags & PSH


def test_retransmitted_first_half_of_a_write_has_no_psh() -> None:
    """A 2000-byte write is one skb with PSH at its end; resent in pieces, only the last has it."""
    conn = established(0.0, mss=1000, sack=False)
    conn.send(1.0, b"x" * 2000)
    segs = drain(conn, 1.0)
    assert [bool(s.flags & PSH) for s in segs] == [False, True]
    rto = conn.timers.retransmit
    assert rto is not None
    first = expect_one(conn, rto)  # cwnd 1 after the timeout (tcp_enter_loss)
    assert first.seq == OUR0 and not first.flags & PSH
    send(conn, rto + 0.01, header(DATA0, OUR0 + 1000))
    second = drain(conn, rto + 0.01)[0]
    assert second.seq == OUR0 + 1000 and second.flags & PSH


def test_window_probe_with_data_has_psh() -> None:
    """tcp_write_wakeup marks the probe cut from a larger skb with PSH."""
    conn = established(0.0, mss=1000, wscale=7)
    conn.send(1.0, b"x" * 100)
    expect_one(conn, 1.0)
    # An ACK of new data shrinks the window to 512 bytes (4 << 7).
    send(conn, 1.1, header(DATA0, OUR0 + 100, ACK, 4))
    conn.send(1.1, b"y" * 2000)
    expect_nothing(conn, 1.1)  # SWS avoidance: 512 < half the largest window
    probe_at = conn.timers.persist
    assert probe_at is not None
    probe = expect_one(conn, probe_at)
    assert probe.seg_len == 512 and probe.flags & PSH


def test_segments_bounded_to_half_the_largest_window_with_forced_push() -> None:
    """tcp_bound_to_half_wnd caps segments at max_window/2; the 2-segment chunk gets PSH.

    The peer offers 1500 bytes, unscaled: segments are 750 bytes, and the
    second carries PSH as the end of a chunk of two segments (pacing.py;
    Linux 6.18 shows no forced_push, see docs/tcp.md).
    """
    conn = established(0.0, mss=1000, peer_window=1500)
    conn.send(1.0, b"x" * 3000)
    segs = drain(conn, 1.0)
    assert [s.seg_len for s in segs] == [750, 750]
    assert [bool(s.flags & PSH) for s in segs] == [False, True]


# -- RTO restart on fast retransmit (tcp_xmit_retransmit_queue) -----------------------


def test_fast_retransmit_restarts_the_rto() -> None:
    """tcp_xmit_retransmit_queue re-arms the RTO when it resends the head."""
    conn = established(0.0, mss=1000, sack=False)
    conn.send(1.0, b"x" * 6000)
    assert len(drain(conn, 1.0)) == 6
    first_rto = conn.timers.retransmit
    assert first_rto is not None
    for t in (1.1, 1.1, 1.15):
        send(conn, t, header(DATA0, OUR0))
    rtx = expect_one(conn, 1.15)
    assert rtx.seq == OUR0
    assert conn.timers.retransmit == pytest.approx(1.15 + conn.rtt.rto)
    assert conn.timers.retransmit > first_rto


# -- send window (tcp_may_update_window) ----------------------------------------------


def test_zero_window_on_a_duplicate_ack_is_taken() -> None:
    """tcp_may_update_window: same SEG.SEQ/ACK, window 0 is an update; a smaller one is not."""
    conn = established(0.0, mss=1000)
    send(conn, 1.0, header(DATA0, OUR0))  # SND.WL1 = this SEG.SEQ
    send(conn, 1.0, header(DATA0, OUR0, ACK, 100))
    assert conn.snd_wnd == 65535  # a smaller non-zero window on a duplicate ACK
    send(conn, 1.0, header(DATA0, OUR0, ACK, 0))
    assert conn.snd_wnd == 0
    conn.send(1.0, b"x" * 500)
    expect_nothing(conn, 1.0)
    assert conn.timers.persist is not None
    send(conn, 1.1, header(DATA0, OUR0, ACK, 1000))
    assert expect_one(conn, 1.1).seg_len == 500


# -- receive window scale from a set SO_RCVBUF (tcp_select_initial_window) ------------


def test_small_rcvbuf_offers_no_window_scaling() -> None:
    """tcp_connect_init clamps the window to tcp_full_space: 4096 bytes need scale 0."""
    conn = client(0.0, rcvbuf=8192)
    syn_seg = expect_one(conn, 0.0)
    assert syn_seg.parsed_options().wscale == 0
    assert conn.rwnd.window_clamp == 4096
    default = client(0.0)
    assert expect_one(default, 0.0).parsed_options().wscale == 7


# -- cork ceiling and MSG_MORE (tcp_push, tcp_check_probe_timer) ----------------------


def test_corked_data_leaves_after_one_rto() -> None:
    """TCP_CORK's ceiling: the probe timer sends the corked segment one RTO later."""
    conn = established(0.0, mss=1000)
    conn.set_cork(1.0, True)
    conn.send(1.0, b"x" * 100)
    expect_nothing(conn, 1.0)
    due = conn.timers.persist
    assert due == pytest.approx(1.0 + conn.rtt.rto)
    expect_nothing(conn, due - 1e-4)
    seg = expect_one(conn, due)
    assert seg.seg_len == 100 and seg.flags & PSH
    assert conn.cork


def test_msg_more_holds_one_write() -> None:
    """tcp_sendmsg with MSG_MORE pushes with TCP_NAGLE_CORK for that call only."""
    conn = established(0.0, mss=1000)
    conn.send(1.0, b"x" * 100, more=True)
    expect_nothing(conn, 1.0)
    conn.send(1.05, b"y" * 100)
    assert expect_one(conn, 1.05).seg_len == 200
    # An arriving ACK pushes with the socket's own mode (tcp_data_snd_check).
    send(conn, 1.1, header(DATA0, OUR0 + 200))
    conn.send(1.1, b"z" * 100, more=True)
    expect_nothing(conn, 1.1)
    send(conn, 1.2, header(DATA0, OUR0 + 200))
    assert expect_one(conn, 1.2).seg_len == 100


# -- SYN queue (inet_csk_reqsk_queue_is_full) -----------------------------------------


def test_syn_queue_full_only_past_backlog() -> None:
    """Linux 6.x: full when more than backlog requests wait; then a cookie SYN-ACK."""
    lst = TcpListener(
        local_addr=US,
        local_port=80,
        backlog=1,
        isn=ISN,
        cookies=COOKIES,
        settings=Settings(),
        counters=Counters(),
    )
    first, _ = lst.on_segment(0.0, PEER, US, syn(40001), b"")
    second, _ = lst.on_segment(0.0, PEER, US, syn(40002), b"")
    assert first is not None and second is not None
    third, cookie = lst.on_segment(0.0, PEER, US, syn(40003), b"")
    assert third is None and cookie is not None and cookie.flags == SYN | ACK
    assert lst.counters.TcpExtSyncookiesSent == 1
