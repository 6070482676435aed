"""Partial-ACK undo and the reordering degree (Linux ``tp->reordering``), on explicit times.

Connections complete their handshake with a 100 ms RTT (SYN at 0.0,
SYN-ACK at 0.1, so the RTO is 0.3 s) and write at 1.0; with timestamps
the clock is 1 ms and the offset 0, so a segment sent at 1.0 carries
TSval 1000 and the MSS is 1448.
"""

from __future__ import annotations

from aiostack.core.tcp.connection import TcpConnection
from aiostack.core.tcp.info import tcp_info
from aiostack.core.tcp.rack import Rack
from aiostack.core.tcp.state import TcpState
from aiostack.settings import Settings
from aiostack.wire import tcp as wtcp

from .tcp_helpers import (
    ACK,
    ISS,
    PEER_ISS,
    PEER_TSVAL,
    SYN,
    client,
    drain,
    expect_one,
    header,
    send,
    settings,
)

OUR0 = ISS + 1
DATA0 = PEER_ISS + 1


def connection(st: Settings | None = None, *, sack: bool, ts: bool) -> TcpConnection:
    """ESTABLISHED after a 100 ms handshake, with or without SACK and timestamps."""
    conn = client(0.0, st, sndbuf=1 << 20)
    syn = expect_one(conn, 0.0)
    tsopt = None
    if ts:
        ours = syn.parsed_options().timestamps
        assert ours is not None
        tsopt = (PEER_TSVAL, ours[0])
    opts = wtcp.TcpOptions(mss=1460, sack_permitted=sack, timestamps=tsopt)
    send(conn, 0.1, header(PEER_ISS, ISS + 1, SYN | ACK, 65535, options=opts))
    assert conn.state is TcpState.ESTABLISHED
    drain(conn, 0.1)
    return conn


def seg(conn: TcpConnection, i: int) -> int:
    return OUR0 + i * conn.snd_mss


def ack(
    conn: TcpConnection,
    n: int,
    *blocks: tuple[int, int],
    ecr: int | None = None,
) -> wtcp.TcpHeader:
    """The peer's ACK of our first ``n`` segments (SACK blocks in segment numbers)."""
    opts = wtcp.TcpOptions(
        sack_blocks=tuple((seg(conn, a), seg(conn, b)) for a, b in blocks),
        timestamps=(PEER_TSVAL + 1, ecr) if ecr is not None else None,
    )
    return header(DATA0, seg(conn, n), options=opts)


def newreno_recovery(conn: TcpConnection) -> None:
    """Ten segments at 1.0 (two more queued); three duplicate ACKs resend segment 0 at 1.12."""
    conn.send(1.0, b"x" * 12 * conn.snd_mss)
    assert len(drain(conn, 1.0)) == 10
    send(conn, 1.1, ack(conn, 0, ecr=1000))
    send(conn, 1.11, ack(conn, 0, ecr=1000))
    assert [s.seq for s in drain(conn, 1.11)] == [seg(conn, 10), seg(conn, 11)]  # RFC 3042
    send(conn, 1.12, ack(conn, 0, ecr=1000))
    assert [s.seq for s in drain(conn, 1.12)] == [seg(conn, 0)]
    assert conn.recovery.in_recovery and conn.cc.ssthresh == 7
    assert conn.retrans_stamp == 1120


# -- partial-ACK undo (tcp_try_undo_partial) ---------------------------------------


def test_partial_ack_for_the_delayed_original_undoes() -> None:
    """Linux ``tcp_try_undo_partial``: the partial ACK echoes the original's TSval (Eifel).

    Segments 0 and 4 were delayed, not lost: the ACK covering 0-3 echoes
    TSval 1000, older than the retransmission's 1120. The hole was filled by
    the original and no retransmission is outstanding, so the reduction is
    undone (``TCPPartialUndo``), segment 4 is not resent, and the reordering
    degree becomes the 4 segments the ACK covered (``TCPTSReorder``).
    """
    conn = connection(sack=False, ts=True)
    newreno_recovery(conn)
    send(conn, 1.13, ack(conn, 4, ecr=1000))
    c = conn.counters
    assert c.TcpExtTCPPartialUndo == 1 and c.TcpExtTCPTSReorder == 1
    assert not conn.recovery.in_recovery and conn.undo_episode == 0
    assert conn.cc.cwnd >= 10 and conn.cc.ssthresh > 1000
    assert drain(conn, 1.13) == []  # segment 4 is not resent
    assert conn.reordering == 4 and conn.recovery.dupthresh == 4
    assert tcp_info(conn, 1.13).reordering == 4


def test_partial_ack_for_the_retransmission_does_not_undo() -> None:
    """The ACK echoes the retransmission's TSval: a real loss; NewReno resends the next hole.

    As Linux does (tcp_newreno_mark_lost, then tcp_xmit_retransmit_queue within
    PRR's cwnd): the ACK delivered one segment beyond the three duplicates
    (tcp_remove_reno_sacks), 8 - 1 lost = 7 are in flight, at ssthresh, so
    cwnd stays 7 and the hole waits for the next duplicate ACK
    (tests/packetdrill/recovery/newreno_partial_ack_prr.pkt on Linux).
    """
    conn = connection(sack=False, ts=True)
    newreno_recovery(conn)
    send(conn, 1.23, ack(conn, 4, ecr=1120))
    assert conn.counters.TcpExtTCPPartialUndo == 0
    assert conn.recovery.in_recovery and conn.cc.ssthresh == 7
    assert conn.cc.cwnd == 7
    assert drain(conn, 1.23) == []
    send(conn, 1.24, ack(conn, 4, ecr=1120))
    assert [s.seq for s in drain(conn, 1.24)] == [seg(conn, 4)]
    assert conn.reordering == 3


def test_partial_undo_waits_for_outstanding_retransmissions() -> None:
    """Linux ``tcp_try_undo_partial``: with ``retrans_out`` left, no undo on this ACK.

    RFC 6675 recovery (``tcp_recovery=0``) resent segments 0 and 1; the ACK
    for the delayed original of segment 0 covers it alone, while the resent
    segment 1 is still unacknowledged: the reordering is noted, the window
    stays reduced.
    """
    conn = connection(settings(tcp_recovery=0, tcp_early_retrans=0), sack=True, ts=True)
    conn.send(1.0, b"x" * 10 * conn.snd_mss)
    drain(conn, 1.0)
    for end in (4, 5, 6):
        send(conn, 1.1, ack(conn, 0, (3, end), ecr=1000))
    assert [s.seq for s in drain(conn, 1.1)] == [seg(conn, 0)]
    assert conn.sb is not None and conn.sb.in_recovery
    send(conn, 1.11, ack(conn, 0, (3, 7), ecr=1000))
    assert [s.seq for s in drain(conn, 1.11)] == [seg(conn, 1)]
    send(conn, 1.15, ack(conn, 1, (3, 7), ecr=1000))
    assert conn.counters.TcpExtTCPPartialUndo == 0
    assert conn.counters.TcpExtTCPTSReorder == 1
    assert conn.cc.ssthresh == 7


# -- the reordering degree -----------------------------------------------------------


def test_sack_reordering_raises_the_degree_with_rack() -> None:
    """Linux ``tcp_check_sack_reordering`` (TCPSACKReorder): metric = fack - lowest reordered.

    Segment 9 is SACKed first; the cumulative ACK then delivers 0-8, never
    retransmitted, below it: 10 segments of reordering.
    """
    conn = connection(sack=True, ts=False)
    conn.send(1.0, b"x" * 10 * conn.snd_mss)
    drain(conn, 1.0)
    send(conn, 1.05, ack(conn, 0, (9, 10)))
    assert conn.reordering == 3
    send(conn, 1.06, ack(conn, 10))
    assert conn.counters.TcpExtTCPSACKReorder == 1
    assert conn.reordering == 10
    assert conn.sb is not None and conn.sb.dup_thresh == 10
    assert tcp_info(conn, 1.06).reordering == 10


def test_sack_reordering_without_rack() -> None:
    """The same with ``tcp_recovery=0`` (no RACK log): the scoreboard sees it."""
    conn = connection(settings(tcp_recovery=0), sack=True, ts=False)
    conn.send(1.0, b"x" * 10 * conn.snd_mss)
    drain(conn, 1.0)
    send(conn, 1.05, ack(conn, 0, (9, 10)))
    send(conn, 1.06, ack(conn, 10))
    assert conn.counters.TcpExtTCPSACKReorder == 1 and conn.reordering == 10


def test_in_order_sacks_are_not_reordering() -> None:
    """A SACK block growing upward delivers nothing below the highest SACK."""
    conn = connection(settings(tcp_recovery=0), sack=True, ts=False)
    conn.send(1.0, b"x" * 10 * conn.snd_mss)
    drain(conn, 1.0)
    send(conn, 1.1, ack(conn, 0, (1, 2)))
    send(conn, 1.1, ack(conn, 0, (1, 3)))
    assert conn.counters.TcpExtTCPSACKReorder == 0 and conn.reordering == 3


def test_reordering_is_capped_by_tcp_max_reordering() -> None:
    """Linux: min(metric, sysctl_tcp_max_reordering)."""
    conn = connection(settings(tcp_max_reordering=5), sack=True, ts=False)
    conn.send(1.0, b"x" * 10 * conn.snd_mss)
    drain(conn, 1.0)
    send(conn, 1.05, ack(conn, 0, (9, 10)))
    send(conn, 1.06, ack(conn, 10))
    assert conn.reordering == 5


def test_tcp_reordering_is_the_newreno_dupthresh() -> None:
    """Linux ``tcp_time_to_recover`` (no SACK): fast retransmit after tp->reordering dupacks."""
    conn = connection(settings(tcp_reordering=5), sack=False, ts=False)
    assert conn.reordering == 5 and tcp_info(conn, 0.1).reordering == 5
    conn.send(1.0, b"x" * 10 * conn.snd_mss)
    drain(conn, 1.0)
    for i in range(4):
        send(conn, 1.1 + i / 100, ack(conn, 0))
    assert not conn.recovery.in_recovery
    send(conn, 1.15, ack(conn, 0))
    assert conn.recovery.in_recovery
    assert drain(conn, 1.15)[0].seq == seg(conn, 0)


def test_learnt_reordering_delays_sack_recovery_without_rack() -> None:
    """RFC 6675 DupThresh = tp->reordering: after 10 segments of reordering, 9 SACKs wait."""
    conn = connection(settings(tcp_recovery=0, tcp_early_retrans=0), sack=True, ts=False)
    conn.send(1.0, b"x" * 30 * conn.snd_mss)
    drain(conn, 1.0)
    send(conn, 1.05, ack(conn, 0, (9, 10)))
    send(conn, 1.06, ack(conn, 10))
    assert conn.reordering == 10
    sent = [s.seq for s in drain(conn, 1.06)]
    assert seg(conn, 10) in sent
    for k in range(1, 10):  # segment 10 lost, 11.. SACKed one by one
        send(conn, 1.2, ack(conn, 10, (11, 11 + k)))
    assert conn.sb is not None and not conn.sb.in_recovery
    send(conn, 1.2, ack(conn, 10, (11, 21)))
    assert conn.sb.in_recovery
    assert drain(conn, 1.2)[0].seq == seg(conn, 10)


def test_rack_dupthresh_shortcut_uses_the_reordering_degree() -> None:
    """Linux ``tcp_rack_reo_wnd``: no window once sacked_out >= tp->reordering (none seen yet)."""
    rack = Rack(0)
    kw = {"in_recovery": False, "min_rtt": 0.1, "srtt": 1.0}
    assert rack.reo_wnd(sacked_segs=3, dupthresh=3, **kw) == 0.0  # type: ignore[arg-type]
    assert rack.reo_wnd(sacked_segs=3, dupthresh=4, **kw) == 0.025  # type: ignore[arg-type]


def test_timeout_resets_a_learnt_degree() -> None:
    """Linux ``tcp_enter_loss``: an RTO in Open, sacked_out >= tcp_reordering: degree reset."""
    conn = connection(settings(tcp_recovery=0, tcp_early_retrans=0), sack=True, ts=False)
    conn.send(1.0, b"x" * 30 * conn.snd_mss)
    drain(conn, 1.0)
    send(conn, 1.05, ack(conn, 0, (9, 10)))
    send(conn, 1.06, ack(conn, 10))
    drain(conn, 1.06)
    assert conn.reordering == 10
    for k in range(1, 5):
        send(conn, 1.1, ack(conn, 10, (11, 11 + k)))
    t = conn.timers.retransmit
    assert t is not None
    drain(conn, t)
    assert conn.loss_mode and conn.reordering == 3
    assert conn.sb is not None and conn.sb.dup_thresh == 3


def test_more_duplicate_acks_than_segments_is_reordering() -> None:
    """Linux ``tcp_check_reno_reordering`` (TCPRenoReorder): sacked_out + 1 > packets_out.

    Two segments out, SACK off: the second duplicate ACK is more than the
    segments beyond the hole could cause (the network duplicated or
    reordered), so the degree becomes the segments in flight.
    """
    conn = connection(sack=False, ts=False)
    conn.send(1.0, b"x" * 2 * conn.snd_mss)
    assert len(drain(conn, 1.0)) == 2
    send(conn, 1.1, ack(conn, 0))
    assert conn.counters.TcpExtTCPRenoReorder == 0 and conn.reordering == 3
    send(conn, 1.1, ack(conn, 0))
    assert conn.counters.TcpExtTCPRenoReorder == 1
    assert conn.reordering == 2 and conn.recovery.dupthresh == 2
    send(conn, 1.1, ack(conn, 0))
    assert conn.counters.TcpExtTCPRenoReorder == 2 and not conn.recovery.in_recovery


def test_partial_undo_with_sack_grows_the_restored_window() -> None:
    """Linux ``tcp_try_undo_partial`` with SACK, then ``tcp_cong_control`` in the Open state.

    RACK resends segment 0 after segments 1-3 are SACKed; the ACK for the
    delayed original covers 0-3 (4-9 still out) and echoes TSval 1000. The
    window comes back to 10 and grows by the one segment this ACK newly
    delivered (the other three were SACKed before): 11.
    """
    conn = connection(settings(tcp_early_retrans=0), sack=True, ts=True)
    conn.send(1.0, b"x" * 10 * conn.snd_mss)
    drain(conn, 1.0)
    for end in (2, 3, 4):
        send(conn, 1.1, ack(conn, 0, (1, end), ecr=1000))
    assert [s.seq for s in drain(conn, 1.1)] == [seg(conn, 0)]
    send(conn, 1.11, ack(conn, 4, ecr=1000))
    assert conn.counters.TcpExtTCPPartialUndo == 1
    assert conn.sb is not None and not conn.sb.in_recovery
    assert conn.cc.cwnd == 11 and conn.reordering == 4
    assert tcp_info(conn, 1.11).ca_state == 0
