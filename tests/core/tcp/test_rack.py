"""RACK-TLP (RFC 8985), D-SACK (RFC 2883) and undo of spurious reductions, on explicit times.

Every connection here completes its handshake with a 100 ms RTT (SYN at
0.0, SYN-ACK at 0.1), so SRTT = min RTT = 0.1 s and the RTO is 0.3 s
(Linux: SRTT + max(TCP_RTO_MIN, 4 * mdev) with mdev = RTT/2 at the first
sample); data goes out at 1.0. The reordering window is then
min_rtt / 4 = 25 ms and the probe timeout 2 * SRTT + 2 ms = 202 ms.
"""

from __future__ import annotations

import pytest

from aiostack.core.tcp.connection import TcpConnection
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


def seg(i: int, mss: int = MSS) -> int:
    """Sequence number of our ``i``-th full segment (``mss`` 1448 with timestamps)."""
    return OUR0 + i * mss


def rack_conn(st: Settings | None = None, *, ts: bool = False, rtt: float = 0.1) -> TcpConnection:
    """ESTABLISHED with SACK after a handshake taking ``rtt`` seconds."""
    conn = client(0.0, st)
    syn = expect_one(conn, 0.0)
    opts = syn_ack_options(ts=ts, wscale=None)
    if ts:
        tsopt = syn.parsed_options().timestamps
        assert tsopt is not None
        opts = wtcp.TcpOptions(
            mss=1460, sack_permitted=True, timestamps=(PEER_TSVAL, tsopt[0]), wscale=None
        )
    send(conn, rtt, header(PEER_ISS, ISS + 1, SYN | ACK, 65535, options=opts))
    assert conn.state is TcpState.ESTABLISHED
    drain(conn, rtt)
    return conn


def sack(ack: int, *blocks: tuple[int, int], ts: tuple[int, int] | None = None) -> wtcp.TcpHeader:
    """An ACK from the peer carrying SACK blocks given in segment numbers ``(first, end)``."""
    opts = wtcp.TcpOptions(sack_blocks=tuple((seg(a), seg(b)) for a, b in blocks), timestamps=ts)
    return header(DATA0, ack, options=opts)


def ten_segments(conn: TcpConnection, now: float = 1.0, count: int = 10) -> None:
    """Write ``count`` full segments at ``now``; the initial window sends ten."""
    mss = conn.snd_mss
    conn.send(now, b"x" * count * mss)
    out = drain(conn, now)
    assert [s.seq for s in out] == [seg(i, mss) for i in range(min(count, 10))]


# -- RACK loss detection (RFC 8985 6.2) ---------------------------------------


def test_rack_waits_out_the_reordering_window() -> None:
    """RFC 8985 6.2: one SACK above a hole arms the reorder timer at xmit + RTT + min_rtt/4."""
    conn = rack_conn()
    ten_segments(conn, count=14)
    send(conn, 1.1, sack(OUR0, (1, 2)))
    # Limited by the pipe only: one new segment, no retransmission yet.
    assert [s.seq for s in drain(conn, 1.1)] == [seg(10)]
    assert conn.timers.reorder == pytest.approx(1.125)
    assert conn.poll_at() == pytest.approx(1.125)
    expect_nothing(conn, 1.1249)
    rtx = expect_one(conn, 1.125)
    assert rtx.seq == OUR0 and len(rtx.payload) == MSS
    assert conn.sb is not None and conn.sb.in_recovery
    assert conn.counters.TcpExtTCPSACKRecovery == 1


def test_rack_reordered_segment_within_the_window_is_not_resent() -> None:
    """RFC 8985 6.2 step 3: the late segment arrives inside the window: reordering, no loss."""
    conn = rack_conn()
    ten_segments(conn)
    send(conn, 1.1, sack(OUR0, (1, 2)))
    drain(conn, 1.1)
    send(conn, 1.12, sack(seg(2)))  # segment 0 was only late
    assert conn.rack is not None and conn.rack.reordering_seen
    assert conn.timers.reorder is None
    for t in (1.125, 1.2):
        assert all(s.seq >= seg(10) for s in drain(conn, t))
    assert conn.counters.TcpRetransSegs == 0 and not conn.sb.in_recovery  # type: ignore[union-attr]


def test_rack_dupthresh_shortcut_marks_at_the_third_sacked_segment() -> None:
    """Linux tcp_rack_reo_wnd: DupThresh segments SACKed, no reordering seen: window 0."""
    conn = rack_conn()
    ten_segments(conn)
    send(conn, 1.1, sack(OUR0, (1, 2)))
    send(conn, 1.1, sack(OUR0, (1, 3)))
    assert all(s.seq != OUR0 for s in drain(conn, 1.1))
    send(conn, 1.1, sack(OUR0, (1, 4)))
    out = drain(conn, 1.1)
    assert out and out[0].seq == OUR0
    assert conn.sb is not None and conn.sb.in_recovery


def test_rack_off_keeps_the_dupthresh_path() -> None:
    """tcp_recovery=0: no RACK, no reorder timer, no TLP; the third SACK dupack starts recovery."""
    conn = rack_conn(settings(tcp_recovery=0))
    assert conn.rack is None
    ten_segments(conn)
    assert conn.timers.loss_probe is None
    send(conn, 1.1, sack(OUR0, (1, 2)))
    drain(conn, 1.1)
    assert conn.timers.reorder is None
    expect_nothing(conn, 1.125)
    send(conn, 1.13, sack(OUR0, (1, 3)))
    drain(conn, 1.13)
    send(conn, 1.14, sack(OUR0, (1, 4)))
    assert drain(conn, 1.14)[0].seq == OUR0
    assert conn.counters.TcpExtTCPSACKRecovery == 1


def test_rack_finds_a_lost_retransmission() -> None:
    """RFC 8985 6.2: a retransmission is lost when data sent after it is SACKed an RTT later."""
    rack = Rack(100)
    rack.on_send(100, 200, 1.0)
    rack.on_send(200, 300, 1.0)
    rack.on_send(300, 400, 1.0)
    rack.on_retransmit(100, 100, 1.2)  # segment 0 resent
    rack.on_send(400, 500, 1.25)  # new data after it
    assert rack.on_ack(1.35, 100, [(400, 500)], min_rtt=0.1)
    assert rack.xmit_ts == 1.25 and rack.rtt == pytest.approx(0.1)
    # The resend went out 50 ms before the delivered segment: lost after
    # 1.2 + 0.1 + reo_wnd; the originals of 1 and 2 long before.
    lost_end, timeout = rack.detect_loss(1.35, 0.0)
    assert lost_end == 400 and rack.lost_rtx == [(100, 100)] and timeout == 0.0


def test_rack_timeout_is_for_the_last_waiting_segment() -> None:
    """RFC 8985 6.2 step 5: the timer covers the latest segment still inside its window."""
    rack = Rack(0)
    rack.on_send(0, 10, 1.0)
    rack.on_send(10, 20, 1.01)
    rack.on_send(20, 30, 1.02)
    rack.on_ack(1.12, 0, [(20, 30)], min_rtt=0.1)  # RACK: xmit 1.02, rtt 0.1
    lost_end, timeout = rack.detect_loss(1.12, 0.05)
    assert lost_end is None
    assert timeout == pytest.approx(1.01 + 0.1 + 0.05 - 1.12)
    lost_end, timeout = rack.detect_loss(1.17, 0.05)
    assert lost_end == 20 and timeout == 0.0


def test_rack_ignores_a_retransmission_acked_faster_than_min_rtt() -> None:
    """RFC 8985 6.2 step 2: an ACK within min_rtt of a resend is for the original."""
    rack = Rack(0)
    rack.on_send(0, 10, 1.0)
    rack.on_retransmit(0, 10, 1.3)
    assert not rack.on_ack(1.32, 10, [], min_rtt=0.1)
    assert rack.xmit_ts is None


def test_reordering_window_grows_per_dsack_round_and_fades() -> None:
    """RFC 8985 6.2 step 4: +1 min_rtt/4 per round with a D-SACK; reset after 16 recoveries."""
    rack = Rack(0)
    rack.reordering_seen = True

    def wnd() -> float:
        return rack.reo_wnd(in_recovery=False, sacked_segs=0, min_rtt=0.1, srtt=1.0)

    assert wnd() == pytest.approx(0.025)
    rack.on_dsack(snd_una=0, snd_nxt=1000)
    assert wnd() == pytest.approx(0.05)
    rack.on_dsack(snd_una=500, snd_nxt=1500)  # same round (snd_una < 1000)
    assert wnd() == pytest.approx(0.05)
    rack.on_dsack(snd_una=1000, snd_nxt=2000)  # next round
    assert wnd() == pytest.approx(0.075)
    assert rack.reo_wnd(in_recovery=False, sacked_segs=0, min_rtt=0.1, srtt=0.06) == 0.06
    for _ in range(15):
        rack.on_recovery_end()
    assert wnd() == pytest.approx(0.075)
    rack.on_recovery_end()
    assert wnd() == pytest.approx(0.025)


def test_static_reordering_window_bit() -> None:
    """tcp_recovery 0x2 (Linux TCP_RACK_STATIC_REO_WND): D-SACKs do not widen the window."""
    rack = Rack(0, recovery=0x3)
    rack.reordering_seen = True
    rack.on_dsack(snd_una=0, snd_nxt=1000)
    assert rack.reo_wnd(in_recovery=False, sacked_segs=0, min_rtt=0.1, srtt=1.0) == 0.025


def test_no_dupthresh_bit_keeps_the_window_open() -> None:
    """tcp_recovery 0x4 (TCP_RACK_NO_DUPTHRESH): three SACKed segments leave the window open."""
    assert Rack(0).reo_wnd(in_recovery=False, sacked_segs=3, min_rtt=0.1, srtt=1.0) == 0.0
    assert Rack(0, recovery=0x5).reo_wnd(
        in_recovery=False, sacked_segs=3, min_rtt=0.1, srtt=1.0
    ) == pytest.approx(0.025)


# -- TLP (RFC 8985 7) ---------------------------------------------------------------


def test_tlp_probe_resends_the_last_segment_at_pto() -> None:
    """RFC 8985 7.2/7.3: PTO = 2*SRTT (+2 ms, Linux); no new data: the last segment again."""
    conn = rack_conn()
    ten_segments(conn)
    assert conn.timers.loss_probe == pytest.approx(1.202)
    expect_nothing(conn, 1.2019)
    probe = expect_one(conn, 1.202)
    assert probe.seq == seg(9) and len(probe.payload) == MSS
    assert conn.counters.TcpExtTCPLossProbes == 1
    assert conn.rack is not None and conn.rack.tlp_high_seq == seg(10)
    # The RTO is re-armed from the probe, and no second probe is scheduled.
    assert conn.timers.retransmit == pytest.approx(1.502)
    assert conn.timers.loss_probe is None


def test_tlp_probe_prefers_new_data_beyond_cwnd() -> None:
    """RFC 8985 7.3: new data is the best probe; it goes out whatever cwnd says."""
    conn = rack_conn()
    ten_segments(conn, count=12)
    expect_nothing(conn, 1.2019)
    probe = expect_one(conn, 1.202)
    assert probe.seq == seg(10)
    assert conn.rack is not None and not conn.rack.tlp_retrans
    assert conn.counters.TcpRetransSegs == 0


def test_tlp_pto_for_one_segment_adds_the_delayed_ack_allowance() -> None:
    """RFC 8985 7.2: one segment in flight: PTO = 2*SRTT + WCDelAckT (200 ms), capped by the RTO."""
    conn = rack_conn(rtt=0.3)  # SRTT 0.3, RTO 0.9
    conn.send(1.0, b"y" * 100)
    expect_one(conn, 1.0)
    assert conn.timers.loss_probe == pytest.approx(1.8)
    assert conn.timers.retransmit == pytest.approx(1.9)
    conn = rack_conn()  # SRTT 0.1, RTO 0.3: 0.4 is capped to the RTO
    conn.send(1.0, b"y" * 100)
    expect_one(conn, 1.0)
    assert conn.timers.loss_probe == pytest.approx(1.3) == conn.timers.retransmit


def test_tlp_repairing_a_loss_reduces_cwnd_once() -> None:
    """RFC 8985 7.4 (Linux tcp_process_tlp_ack): an ACK beyond the probe without D-SACK: CWR."""
    conn = rack_conn()
    ten_segments(conn)
    expect_one(conn, 1.202)
    send(conn, 1.3, header(DATA0, seg(10)))  # covers the probe: undecided yet
    assert conn.counters.TcpExtTCPLossProbeRecovery == 0
    conn.send(1.3, b"z" * MSS)
    drain(conn, 1.3)
    cwnd = conn.cc.cwnd
    send(conn, 1.4, header(DATA0, seg(11)))
    assert conn.counters.TcpExtTCPLossProbeRecovery == 1
    assert conn.cc.cwnd == conn.cc.ssthresh < cwnd
    assert conn.rack is not None and conn.rack.tlp_high_seq is None


def test_tlp_dsack_of_the_probe_means_no_loss() -> None:
    """RFC 8985 7.4: a D-SACK for the probe: both copies arrived, nothing to reduce."""
    conn = rack_conn()
    ten_segments(conn)
    expect_one(conn, 1.202)
    send(conn, 1.3, sack(seg(10), (9, 10)))  # D-SACK: below the cumulative ACK
    assert conn.rack is not None and conn.rack.tlp_high_seq is None
    assert conn.counters.TcpExtTCPDSACKRecv == 1
    conn.send(1.3, b"z" * MSS)
    drain(conn, 1.3)
    send(conn, 1.4, header(DATA0, seg(11)))
    assert conn.counters.TcpExtTCPLossProbeRecovery == 0
    assert conn.cc.ssthresh > 1000  # still the initial (infinite) ssthresh


def test_tlp_off_with_tcp_early_retrans_0() -> None:
    """tcp_early_retrans=0: RACK without probes; the tail waits for the RTO."""
    conn = rack_conn(settings(tcp_early_retrans=0))
    ten_segments(conn)
    assert conn.timers.loss_probe is None
    expect_nothing(conn, 1.2999)
    assert expect_one(conn, 1.3).seq == OUR0  # the RTO resends the head


# -- D-SACK and undo (RFC 2883, RFC 3522; Linux undo_marker) --------------------------


def test_dsack_undo_restores_the_window() -> None:
    """Linux tcp_try_undo_dsack: every resend D-SACKed: the reduction was spurious, undo it."""
    conn = rack_conn()
    ten_segments(conn)
    for end in (2, 3, 4):
        send(conn, 1.1, sack(OUR0, (1, end)))
    assert drain(conn, 1.1)[0].seq == OUR0  # recovery: segment 0 resent
    assert conn.cc.ssthresh == 7
    send(conn, 1.15, sack(seg(4)))  # the original segment 0 was only late
    assert conn.counters.TcpExtTCPDSACKUndo == 0
    send(conn, 1.2, sack(seg(4), (0, 1)))  # ... and the resend is reported twice
    assert conn.counters.TcpExtTCPDSACKRecv == 1
    assert conn.counters.TcpExtTCPDSACKUndo == 1
    assert conn.cc.ssthresh > 1000 and conn.cc.cwnd >= 10
    assert not conn.cc.in_cwnd_reduction
    assert conn.sb is not None and not conn.sb.in_recovery


def test_dsack_of_network_duplicate_without_retransmission_undoes_nothing() -> None:
    """Linux: undo needs undo_retrans resends, each taken away by one D-SACK."""
    conn = rack_conn()
    ten_segments(conn)
    send(conn, 1.1, sack(seg(2), (0, 1)))
    assert conn.counters.TcpExtTCPDSACKRecv == 1 and conn.counters.TcpExtTCPDSACKUndo == 0


def test_spurious_rto_undone_by_timestamps() -> None:
    """RFC 3522 (Eifel), Linux tcp_try_undo_loss: the ACK echoes the original's TSval."""
    conn = rack_conn(settings(tcp_early_retrans=0), ts=True)
    ten_segments(conn)
    expect_nothing(conn, 1.2999)
    rtx = expect_one(conn, 1.3)  # RTO: go back to snd_una with cwnd 1
    assert rtx.seq == OUR0 and conn.loss_mode and conn.cc.cwnd == 1
    # TSval at 1.0 is 1000 (1 ms clock, offset 0): the ACK answers the original.
    send(
        conn,
        1.35,
        header(DATA0, seg(1, 1448), options=wtcp.TcpOptions(timestamps=(PEER_TSVAL + 1, 1000))),
    )
    # Linux counts TCPSpuriousRTOs only for F-RTO's undo (tcp_try_undo_loss(sk, true)).
    assert conn.counters.TcpExtTCPLossUndo == 1 and conn.counters.TcpExtTCPSpuriousRTOs == 0
    assert not conn.loss_mode and conn.cc.cwnd >= 10 and conn.cc.ssthresh > 1000
    assert drain(conn, 1.35) == []  # no more go-back-N


def test_genuine_rto_is_not_undone() -> None:
    """The ACK echoes the retransmission's TSval: the loss was real, the RTO stands."""
    conn = rack_conn(settings(tcp_early_retrans=0), ts=True)
    ten_segments(conn)
    expect_one(conn, 1.3)
    send(
        conn,
        1.4,
        header(DATA0, seg(1, 1448), options=wtcp.TcpOptions(timestamps=(PEER_TSVAL + 1, 1300))),
    )
    assert conn.counters.TcpExtTCPLossUndo == 0 and conn.cc.ssthresh == 7


# -- D-SACK generation (receiver, RFC 2883) -------------------------------------------------


def test_dsack_first_then_sack_blocks_for_an_out_of_order_duplicate() -> None:
    """RFC 2883 4.1.2: a duplicate above a hole: the D-SACK block first, then the SACK block."""
    conn = rack_conn()
    send(conn, 1.0, header(DATA0 + 100, OUR0), b"b" * 100)  # hole at DATA0
    first = expect_one(conn, 1.0).parsed_options().sack_blocks
    assert first == ((DATA0 + 100, DATA0 + 200),)
    send(conn, 1.1, header(DATA0 + 100, OUR0), b"b" * 100)  # again
    blocks = expect_one(conn, 1.1).parsed_options().sack_blocks
    assert blocks == ((DATA0 + 100, DATA0 + 200), (DATA0 + 100, DATA0 + 200))
    assert conn.counters.TcpExtTCPDSACKOfoSent == 1
    send(conn, 1.2, header(DATA0 - 50, OUR0), b"o" * 50)  # wholly old
    assert expect_one(conn, 1.2).parsed_options().sack_blocks[0] == (DATA0 - 50, DATA0)
    assert conn.counters.TcpExtTCPDSACKOldSent == 1


def test_dsack_off_sends_no_duplicate_report() -> None:
    """net.ipv4.tcp_dsack=0: duplicates are ACKed without a D-SACK block."""
    conn = rack_conn(settings(tcp_dsack=0))
    send(conn, 1.0, header(DATA0, OUR0), b"a" * 100)
    drain(conn, 1.0)
    send(conn, 1.1, header(DATA0, OUR0), b"a" * 100)
    assert expect_one(conn, 1.1).parsed_options().sack_blocks == ()


def test_second_hole_follows_at_once_and_no_rescue_retransmission() -> None:
    """Linux (packetdrill sack_two_holes): RACK marks hole 2 on the next SACK; no RFC 6675 rescue.

    Segments 0 and 4 of 6 are lost. Three SACKed segments resend 0 at once
    (the DupThresh shortcut); the SACK of segment 5 marks 4 lost and it
    follows; the partial ACK up to 4 then sends nothing (RFC 6675's rescue
    retransmission would resend 4 again; Linux has none).
    """
    conn = rack_conn()
    conn.send(1.0, b"x" * 6 * MSS)
    drain(conn, 1.0)
    for end in (2, 3, 4):
        send(conn, 1.1, sack(OUR0, (1, end)))
    assert [s.seq for s in drain(conn, 1.1)] == [seg(0)]
    send(conn, 1.11, sack(OUR0, (5, 6), (1, 4)))
    assert [s.seq for s in drain(conn, 1.11)] == [seg(4)]
    send(conn, 1.21, sack(seg(4), (5, 6)))
    expect_nothing(conn, 1.21)
    send(conn, 1.26, header(DATA0, seg(6)))
    assert conn.sb is not None and not conn.sb.in_recovery
