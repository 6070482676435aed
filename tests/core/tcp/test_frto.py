"""F-RTO (RFC 5682 as Linux's ``tcp_frto``): spurious retransmission timeouts, on explicit times.

Every connection completes its handshake with a 100 ms RTT (SRTT 0.1 s, RTO
0.3 s), writes twelve full segments at 1.0 (the initial window sends ten)
and has TLP off (``tcp_early_retrans=0``), so the RTO fires at 1.3 with
nothing before it. ``tcp_enter_loss`` arms F-RTO; ``tcp_process_loss``
then decides on each ACK.
"""

from __future__ import annotations

from aiostack.core.tcp.connection import TcpConnection
from aiostack.core.tcp.info import TCP_CA_LOSS, TCP_CA_OPEN, tcp_info
from aiostack.core.tcp.loss import EPISODE_LOSS, FRTO_ARMED, FRTO_NEW, FRTO_OFF
from aiostack.core.tcp.state import TcpState
from aiostack.settings import Settings
from aiostack.wire import tcp as wtcp

from .tcp_helpers import ACK as ACK_FLAG
from .tcp_helpers import (
    ISS,
    PEER_ISS,
    SYN,
    client,
    drain,
    expect_nothing,
    expect_one,
    header,
    send,
    settings,
    syn_ack_options,
)

OUR0 = ISS + 1
DATA0 = PEER_ISS + 1
MSS = 1460


def seg(i: int) -> int:
    """Sequence number of our ``i``-th full segment."""
    return OUR0 + i * MSS


def conn_after_rto(
    st: Settings | None = None, *, sack: bool = True, segments: int = 12
) -> TcpConnection:
    """ESTABLISHED (100 ms handshake), ``segments`` written at 1.0, the RTO fired at 1.3."""
    st = st if st is not None else settings()
    st.tcp_early_retrans = 0
    conn = client(0.0, st)
    expect_one(conn, 0.0)
    opts = syn_ack_options(ts=False, sack=sack, wscale=None)
    send(conn, 0.1, header(PEER_ISS, ISS + 1, SYN | ACK_FLAG, 65535, options=opts))
    assert conn.state is TcpState.ESTABLISHED
    drain(conn, 0.1)
    conn.send(1.0, b"x" * segments * MSS)
    out = drain(conn, 1.0)
    assert [s.seq for s in out] == [seg(i) for i in range(min(segments, 10))]
    expect_nothing(conn, 1.2999)
    rtx = expect_one(conn, 1.3)
    assert rtx.seq == seg(0) and conn.loss_mode and conn.cc.cwnd == 1
    return conn


def ack(n: int, *blocks: tuple[int, int]) -> wtcp.TcpHeader:
    """The peer's ACK of our first ``n`` segments, with SACK blocks in segment numbers."""
    opts = wtcp.TcpOptions(sack_blocks=tuple((seg(a), seg(b)) for a, b in blocks))
    return header(DATA0, seg(n), options=opts)


def test_rto_arms_frto() -> None:
    """RFC 5682 3.1 step 1, Linux ``tcp_enter_loss``: tp->frto with tcp_frto=2 (the default)."""
    conn = conn_after_rto()
    assert conn.frto == FRTO_ARMED
    assert conn.undo_episode == EPISODE_LOSS


def test_first_ack_sends_new_data_instead_of_retransmissions() -> None:
    """RFC 5682 3.1 step 2b, Linux ``tcp_process_loss`` REXMIT_NEW.

    The ACK of the resent segment advances ``snd_una`` without reaching the
    old ``snd_nxt``: ``high_seq`` moves to ``snd_nxt`` and the two segments
    cwnd now allows are new data, not more retransmissions.
    """
    conn = conn_after_rto()
    send(conn, 1.35, ack(1))
    assert conn.frto == FRTO_NEW and conn.high_seq == seg(10)
    out = drain(conn, 1.35)
    assert [s.seq for s in out] == [seg(10), seg(11)]
    assert conn.counters.TcpRetransSegs == 1
    assert tcp_info(conn, 1.35).ca_state == TCP_CA_LOSS


def test_ack_of_never_retransmitted_data_undoes_the_timeout() -> None:
    """RFC 5682 3.1 step 3b, Linux ``tcp_try_undo_loss(sk, true)``: TCPSpuriousRTOs.

    The second ACK covers segments 1-2, which were never resent: the
    timeout was spurious. cwnd and ssthresh come back (``tcp_undo_cwnd_reduction``),
    plus this ACK's slow-start growth, and nothing more is retransmitted.
    """
    conn = conn_after_rto()
    send(conn, 1.35, ack(1))
    drain(conn, 1.35)
    send(conn, 1.36, ack(3))
    c = conn.counters
    assert c.TcpExtTCPSpuriousRTOs == 1 and c.TcpExtTCPLossUndo == 1
    assert conn.frto == FRTO_OFF and conn.undo_episode == 0 and not conn.loss_mode
    assert conn.cc.cwnd == 12 and conn.cc.ssthresh > 1000
    assert tcp_info(conn, 1.36).ca_state == TCP_CA_OPEN
    assert drain(conn, 1.36) == []
    assert c.TcpRetransSegs == 1


def test_first_ack_of_original_data_undoes_at_once() -> None:
    """Linux ``tcp_process_loss``: FLAG_ORIG_SACK_ACKED on the first ACK is enough."""
    conn = conn_after_rto()
    send(conn, 1.32, ack(2))
    assert conn.counters.TcpExtTCPSpuriousRTOs == 1
    assert not conn.loss_mode and conn.cc.cwnd >= 10


def test_sack_of_original_data_undoes() -> None:
    """RFC 5682 3 (SACK-enhanced): a SACK for never-retransmitted data proves the RTO spurious."""
    conn = conn_after_rto()
    send(conn, 1.35, ack(1))
    drain(conn, 1.35)
    send(conn, 1.36, ack(1, (2, 3)))
    assert conn.counters.TcpExtTCPSpuriousRTOs == 1


def test_sack_of_new_data_proves_the_loss_real() -> None:
    """RFC 5682 3.1 step 3a: only the new data arrived: F-RTO off, retransmissions resume."""
    conn = conn_after_rto()
    send(conn, 1.35, ack(1))
    drain(conn, 1.35)
    send(conn, 1.4, ack(1, (10, 11)))
    assert conn.frto == FRTO_OFF and conn.loss_mode
    assert conn.counters.TcpExtTCPSpuriousRTOs == 0
    out = drain(conn, 1.4)
    assert [s.seq for s in out] == [seg(1), seg(2)]
    assert conn.cc.ssthresh == 7  # the reduction stands


def test_duplicate_ack_without_sack_proves_the_loss_real() -> None:
    """RFC 5682 2.1 step 3a (no SACK): a duplicate ACK after the new data."""
    conn = conn_after_rto(sack=False)
    send(conn, 1.35, ack(1))
    out = drain(conn, 1.35)
    assert [s.seq for s in out] == [seg(10), seg(11)]
    send(conn, 1.4, ack(1))
    assert conn.frto == FRTO_OFF and conn.loss_mode
    out = drain(conn, 1.4)
    assert out and out[0].seq == seg(1)
    assert conn.counters.TcpExtTCPSpuriousRTOs == 0


def test_spurious_rto_without_sack() -> None:
    """RFC 5682 2.1 step 3b: a cumulative ACK beyond what was resent, SACK off."""
    conn = conn_after_rto(sack=False)
    send(conn, 1.35, ack(1))
    assert [s.seq for s in drain(conn, 1.35)] == [seg(10), seg(11)]
    send(conn, 1.36, ack(3))
    assert conn.counters.TcpExtTCPSpuriousRTOs == 1
    assert not conn.loss_mode and conn.cc.cwnd == 12


def test_nothing_new_to_send_falls_back_to_go_back_n() -> None:
    """RFC 5682 3.1 step 2a, Linux: an empty write queue clears tp->frto."""
    conn = conn_after_rto(segments=10)
    send(conn, 1.35, ack(1))
    assert conn.frto == FRTO_OFF and conn.loss_mode
    assert [s.seq for s in drain(conn, 1.35)] == [seg(1), seg(2)]
    send(conn, 1.36, ack(3))  # original data, but F-RTO is off: no undo without timestamps
    assert conn.counters.TcpExtTCPSpuriousRTOs == 0 and conn.counters.TcpExtTCPLossUndo == 0


def test_closed_window_falls_back_to_go_back_n() -> None:
    """Linux ``tcp_process_loss``: new data must fit the peer's window (tcp_wnd_end)."""
    conn = conn_after_rto()
    # The ACK shrinks the window to exactly what is outstanding.
    hdr = header(DATA0, seg(1), window=9 * MSS)
    send(conn, 1.35, hdr)
    assert conn.frto == FRTO_OFF
    assert [s.seq for s in drain(conn, 1.35)] == [seg(1), seg(2)]


def test_tcp_frto_zero_disables_it() -> None:
    """Linux ``tcp_enter_loss``: tp->frto = sysctl_tcp_frto && ...; 0 keeps go-back-N."""
    conn = conn_after_rto(settings(tcp_frto=0))
    assert conn.frto == FRTO_OFF
    send(conn, 1.35, ack(1))
    assert [s.seq for s in drain(conn, 1.35)] == [seg(1), seg(2)]
    send(conn, 1.36, ack(3))
    assert conn.counters.TcpExtTCPSpuriousRTOs == 0


def test_not_armed_by_a_timeout_in_fast_recovery_but_by_the_next() -> None:
    """Linux ``tcp_enter_loss``: (new_recovery || icsk_retransmits), RFC 5682 3.2.

    A first timeout during fast recovery does not arm F-RTO; a second
    timeout of the same ``snd_una`` (a repeated RTO) does.
    """
    st = settings(tcp_recovery=0, tcp_early_retrans=0)
    conn = client(0.0, st)
    expect_one(conn, 0.0)
    opts = syn_ack_options(ts=False, sack=True, wscale=None)
    send(conn, 0.1, header(PEER_ISS, ISS + 1, SYN | ACK_FLAG, 65535, options=opts))
    drain(conn, 0.1)
    conn.send(1.0, b"x" * 12 * MSS)
    drain(conn, 1.0)
    for end in (2, 3, 4):  # three SACKs: RFC 6675 recovery, segment 0 resent
        send(conn, 1.1, ack(0, (1, end)))
    assert drain(conn, 1.1)[0].seq == seg(0)
    assert conn.sb is not None and conn.sb.in_recovery
    t = conn.timers.retransmit
    assert t is not None
    drain(conn, t)
    assert conn.loss_mode and conn.frto == FRTO_OFF
    t2 = conn.timers.retransmit
    assert t2 is not None
    drain(conn, t2)
    assert conn.retransmits == 2 and conn.frto == FRTO_ARMED


def test_dsack_in_the_loss_state_undoes_with_the_advancing_ack() -> None:
    """Linux ``tcp_process_loss`` -> ``tcp_try_undo_loss`` (``tcp_may_undo``: undo_retrans 0).

    The ACK of the original segment 0 also D-SACKs its retransmission: the
    only resend was unnecessary. In the Loss state that is TCPLossUndo (not
    TCPDSACKUndo, nor TCPSpuriousRTOs: F-RTO did not decide it).
    """
    conn = conn_after_rto()
    send(conn, 1.35, ack(1, (0, 1)))
    c = conn.counters
    assert c.TcpExtTCPDSACKRecv == 1
    assert c.TcpExtTCPLossUndo == 1 and c.TcpExtTCPDSACKUndo == 0
    assert c.TcpExtTCPSpuriousRTOs == 0
    assert not conn.loss_mode and conn.undo_episode == 0 and conn.cc.cwnd >= 10


def test_dsack_alone_waits_for_an_advancing_ack() -> None:
    """In the Loss state a D-SACK-only ACK undoes nothing yet, and is not a duplicate ACK."""
    conn = conn_after_rto()
    send(conn, 1.35, ack(1))
    assert [s.seq for s in drain(conn, 1.35)] == [seg(10), seg(11)]
    send(conn, 1.36, ack(1, (0, 1)))
    assert conn.undo_retrans == 0 and conn.counters.TcpExtTCPLossUndo == 0
    assert conn.undo_episode == EPISODE_LOSS
    send(conn, 1.37, ack(2))
    assert conn.counters.TcpExtTCPLossUndo == 1 and conn.counters.TcpExtTCPDSACKUndo == 0
