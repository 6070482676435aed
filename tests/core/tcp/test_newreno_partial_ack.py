"""A NewReno partial ACK (no SACK), as Linux handles it rather than RFC 6582's text.

Linux ``tcp_fastretrans_alert`` in Recovery: the partial ACK removes the
duplicate-ACK credits it covers (``tcp_remove_reno_sacks``: ``sacked_out -=
acked - 1``; delivered ``max(acked - sacked_out, 1)``), marks the new head
lost (``tcp_newreno_mark_lost``), and ``tcp_cwnd_reduction`` (PRR, newly lost
1) sets cwnd; ``tcp_xmit_retransmit_queue`` resends the head only while the
flight is below cwnd. RFC 6582 resends it at once. The scenario is
tests/packetdrill/recovery/newreno_partial_ack_prr.pkt, checked on Linux.
"""

from __future__ import annotations

from aiostack.core.tcp.connection import TcpConnection
from aiostack.core.tcp.info import tcp_info
from aiostack.wire import tcp as wtcp

from .tcp_helpers import ISS, PEER_ISS, drain, established, header, send, settings


def _recovery() -> tuple[TcpConnection, int]:
    """Reno, ten segments out; three duplicate ACKs resend segment 0 (ssthresh 5)."""
    conn = established(sack=False, st=settings(tcp_congestion_control="reno"))
    mss = conn.snd_mss
    conn.send(1.0, b"x" * 10 * mss)
    assert len(drain(conn, 1.0)) == 10
    una = ISS + 1
    for t in (1.1, 1.1, 1.1):
        send(conn, t, header(PEER_ISS + 1, una, wtcp.ACK))
    assert [s.seq for s in drain(conn, 1.1)] == [una]
    assert conn.recovery.in_recovery and conn.cc.ssthresh == 5
    return conn, mss


def test_partial_ack_head_waits_for_prr() -> None:
    """tcp_newreno_mark_lost + tcp_cwnd_reduction: at ssthresh, the lost head waits."""
    conn, mss = _recovery()
    una = ISS + 1
    send(conn, 1.2, header(PEER_ISS + 1, una + 2 * mss, wtcp.ACK))  # covers segments 0-1
    assert conn.recovery.dupacks == 2  # tcp_remove_reno_sacks: 3 - (2 - 1)
    assert conn.in_flight_bytes() == 5 * mss  # 8 out, 2 credited, the head lost
    assert conn.cc.cwnd == 5
    assert drain(conn, 1.2) == []
    assert conn.rtx_head  # still to resend (Linux: TCPCB_LOST, not retransmitted)
    info = tcp_info(conn, 1.2)
    assert (info.unacked, info.sacked, info.lost, info.retrans) == (8, 2, 1, 0)
    # tcp_add_reno_sack: one more segment left the network; PRR allows one.
    send(conn, 1.25, header(PEER_ISS + 1, una + 2 * mss, wtcp.ACK))
    assert [s.seq for s in drain(conn, 1.25)] == [una + 2 * mss]
    assert not conn.rtx_head
    assert conn.cc.cwnd == 5
    info = tcp_info(conn, 1.25)
    assert (info.sacked, info.lost, info.retrans) == (3, 1, 1)
    assert conn.in_flight_bytes() == 5 * mss  # the resent head counts again


def test_partial_ack_resends_at_once_when_prr_allows() -> None:
    """Below ssthresh PRR-SSRB lets the partial ACK resend the head (newreno_partial_ack.pkt)."""
    conn, mss = _recovery()
    una = ISS + 1
    for t in (1.11, 1.12, 1.13, 1.14, 1.15):  # the rest of the flight: 8 credits
        send(conn, t, header(PEER_ISS + 1, una, wtcp.ACK))
    drain(conn, 1.15)
    send(conn, 1.2, header(PEER_ISS + 1, una + 2 * mss, wtcp.ACK))
    assert conn.recovery.dupacks == 7
    assert [s.seq for s in drain(conn, 1.2)] == [una + 2 * mss]


def test_timeout_drops_the_pending_head() -> None:
    """An RTO while the head waits starts the go-back-N pass instead (tcp_enter_loss)."""
    conn, mss = _recovery()
    una = ISS + 1
    send(conn, 1.2, header(PEER_ISS + 1, una + 2 * mss, wtcp.ACK))
    assert drain(conn, 1.2) == []
    rto = conn.timers.retransmit
    assert rto is not None
    conn.run_timers(rto)
    assert not conn.rtx_head
    segs = drain(conn, rto)
    assert segs and segs[0].seq == una + 2 * mss
