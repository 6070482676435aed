"""Loss detection glue of one connection: RACK-TLP, D-SACK and undo (Linux ``tcp_recovery.c``).

:mod:`.rack` holds RACK-TLP's state and transmit log, :mod:`.sack` the
scoreboard, :mod:`.congestion` the window; this module is what Linux's
``tcp_fastretrans_alert``, ``tcp_rack_*``, ``tcp_*_loss_probe`` and
``tcp_try_undo_*`` do with them, as functions of the connection:

- per ACK with SACK (:func:`rack_ack`): RACK's update, reordering
  detection and loss marking (RFC 8985 6.2), the reorder timer;
- entering SACK recovery (:func:`enter_sack_recovery`), shared by the
  ACK path and the reorder timer;
- TLP (RFC 8985 7): arming the probe timeout (:func:`schedule_loss_probe`),
  the timer (:func:`on_loss_probe_timer`) and the probe's ACK
  (:func:`tlp_ack`);
- D-SACK (RFC 2883 section 4, RFC 3708) and timestamps (RFC 3522, Eifel
  detection) proving retransmissions spurious, and the undo of the window
  reduction they caused (Linux's ``undo_marker``/``undo_retrans``,
  ``tcp_undo_cwnd_reduction``): :func:`start_episode`, :func:`on_dsack`,
  :func:`ts_undo`.

An *episode* is a fast recovery or an RTO recovery, from the ACK or timeout
that started it until ``snd_una`` reaches ``high_seq`` (``snd_nxt`` at its
start). ``undo_marker`` (``snd_una`` at its start) outlives it, so D-SACKs
arriving after the recovery (the usual case: they report the original and
the retransmission both arriving) can still undo it, as in Linux.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiostack.core.tcp.isn import tcp_time_stamp
from aiostack.core.tcp.rack import TCP_TIMEOUT_MIN, TLP_MAX_ACK_DELAY, TLP_PTO_NO_SRTT, Rack
from aiostack.core.tcp.state import TcpState
from aiostack.wire.seqnum import seq_diff, seq_ge, seq_gt, seq_le, seq_lt

if TYPE_CHECKING:
    from aiostack.core.tcp.connection import TcpConnection
    from aiostack.core.tcp.sack import SackScoreboard

__all__ = [
    "EPISODE_LOSS",
    "EPISODE_RECOVERY",
    "enter_sack_recovery",
    "episode_acked",
    "note_retransmit",
    "on_dsack",
    "on_loss_probe_timer",
    "on_reorder_timer",
    "rack_ack",
    "schedule_loss_probe",
    "start_episode",
    "tlp_ack",
    "ts_undo",
    "undo",
]

#: Episode kinds (Linux ``TCP_CA_Recovery`` and ``TCP_CA_Loss``).
EPISODE_RECOVERY = 1
EPISODE_LOSS = 2

_NONE: list[tuple[int, int]] = []

_PROBE_STATES = frozenset(
    (
        TcpState.ESTABLISHED,
        TcpState.CLOSE_WAIT,
        TcpState.FIN_WAIT1,
        TcpState.CLOSING,
        TcpState.LAST_ACK,
    )
)


# -- RACK ----------------------------------------------------------------------


def rack_ack(conn: TcpConnection, now: float, ack: int, sb: SackScoreboard, rack: Rack) -> bool:
    """RACK for one ACK (RFC 8985 6.2 steps 1-5); return whether it marked new losses.

    The log learns what the ACK delivered; loss detection then runs only
    when something is SACKed, recovery is under way or the reorder timer
    is armed (Linux's "dubious" ACKs): a clean cumulative ACK costs the
    log update alone.
    """
    new = sb.new_ranges
    min_rtt = _min_rtt(conn)
    rack.on_ack(now, ack, new if new is not None else _NONE, min_rtt=min_rtt)
    if not (sb.sacked_bytes or sb.in_recovery or conn.timers.reorder is not None):
        return False
    return _detect(conn, now, sb, rack, min_rtt)


def _min_rtt(conn: TcpConnection) -> float:
    """The windowed minimum RTT in seconds (0.0 before any sample)."""
    us = conn.rtt.min_rtt_us
    return us / 1e6 if us is not None else 0.0


def _detect(
    conn: TcpConnection, now: float, sb: SackScoreboard, rack: Rack, min_rtt: float
) -> bool:
    """``RACK_detect_loss_and_arm_timer``: mark losses in the scoreboard, arm the reorder timer."""
    mss = conn.snd_mss
    reo_wnd = rack.reo_wnd(
        in_recovery=sb.in_recovery or conn.loss_mode,
        sacked_segs=sb.sacked_bytes // mss if mss > 0 else 0,
        min_rtt=min_rtt,
        srtt=conn.rtt.srtt,
    )
    before = len(rack.lost_rtx)
    lost_end, timeout = rack.detect_loss(now, reo_wnd)
    conn.timers.reorder = now + timeout if timeout > 0 else None
    marked = len(rack.lost_rtx) > before
    if lost_end is not None:
        lost_before = sb.lost_bytes
        sb.mark_lost(lost_end)
        marked = marked or sb.lost_bytes > lost_before
    return marked


def enter_sack_recovery(conn: TcpConnection, now: float, sb: SackScoreboard, newly: int) -> None:
    """Start RFC 6675 recovery with PRR (Linux ``tcp_enter_recovery``); queue the first resend.

    RFC 6675 resends the segment at ``snd_una`` first; with RACK only what
    RACK marked lost is resent, so that head is kept only if it is lost
    (a lost retransmission elsewhere may be what started recovery).
    """
    head = conn.sack_head = sb.enter_recovery()
    if conn.rack is not None and head is not None and not sb.is_lost(head.seq):
        conn.sack_head = None
    conn.cc.on_congestion_event(now)
    counters = conn.counters
    counters.TcpExtTCPSACKRecovery += 1
    counters.TcpExtTCPFastRetrans += 1
    conn.rtt_time = None
    start_episode(conn, EPISODE_RECOVERY)
    mss = conn.snd_mss
    pipe = (conn.in_flight_bytes() + mss - 1) // mss
    conn.cc.on_recovery_ack(now, max(newly, 1), pipe, snd_una_advanced=False)


def on_reorder_timer(conn: TcpConnection, now: float) -> None:
    """The reorder timer fired (Linux ``tcp_rack_reo_timeout``): look for losses again."""
    rack = conn.rack
    sb = conn.sb
    if rack is None or sb is None or conn.snd_una == conn.snd_nxt or conn.loss_mode:
        return
    marked = _detect(conn, now, sb, rack, _min_rtt(conn))
    if marked and not sb.in_recovery and sb.can_enter_recovery:
        enter_sack_recovery(conn, now, sb, 1)
    if conn.timers.retransmit is None:
        conn.arm_retransmit(now)


# -- TLP -----------------------------------------------------------------------


def schedule_loss_probe(conn: TcpConnection, now: float) -> None:
    """Arm the PTO if a probe may be sent (RFC 8985 7.2, Linux ``tcp_schedule_loss_probe``).

    Only with RACK-TLP on, SACK in use, data outstanding, no recovery or
    RTO under way and no probe already outstanding; otherwise the PTO is
    disarmed and the RTO alone guards the tail.
    """
    rack = conn.rack
    t = conn.timers
    if (
        rack is None
        or not conn.tlp_enabled
        or rack.tlp_high_seq is not None
        or conn.snd_una == conn.snd_nxt
        or conn.loss_mode
        or conn.undo_episode
        or conn.state not in _PROBE_STATES
    ):
        t.loss_probe = None
        return
    rto_at = t.retransmit
    rto_left = rto_at - now if rto_at is not None else conn.rtt.rto
    one = seq_diff(conn.snd_nxt, conn.snd_una) <= conn.snd_mss
    rack.pto_base = now
    rack.pto_one = one
    srtt = conn.rtt.srtt
    # Rack.pto, written out (this runs for every ACK of new data).
    if srtt > 0:
        pto = 2 * srtt + (TLP_MAX_ACK_DELAY if one else TCP_TIMEOUT_MIN)
    else:
        pto = TLP_PTO_NO_SRTT
    t.loss_probe = now + (pto if pto < rto_left else rto_left)


def on_loss_probe_timer(conn: TcpConnection, now: float) -> None:
    """The PTO fired (RFC 8985 7.3): ask :func:`.output.transmit` for a probe if still due.

    ACKs of new data do not re-arm the timer (that would cost every ACK a
    PTO computation); they record their time in ``rack.pto_base``. A timer
    that fires before ``pto_base + PTO`` re-arms itself for then.
    """
    rack = conn.rack
    if (
        rack is None
        or rack.tlp_high_seq is not None
        or conn.snd_una == conn.snd_nxt
        or conn.loss_mode
        or conn.undo_episode
    ):
        return
    base = rack.pto_base
    if base < now:
        schedule_loss_probe(conn, base)
        due = conn.timers.loss_probe
        if due is not None and due > now:
            return
        conn.timers.loss_probe = None
    conn.tlp_pending = True


def tlp_ack(
    conn: TcpConnection,
    now: float,
    rack: Rack,
    ack: int,
    *,
    advanced: bool,
    sacked: bool,
    dsack: tuple[int, int] | None,
) -> None:
    """A probe is outstanding and an ACK arrived (RFC 8985 7.4, Linux ``tcp_process_tlp_ack``).

    A probe of new data needs nothing more once acknowledged. A
    retransmitted probe proves no loss when a D-SACK reports it (both
    copies arrived) or a pure duplicate ACK answers it; an ACK beyond the
    probe means the probe repaired a loss: the window is reduced once
    (Linux: CWR, cwnd = ssthresh) and ``TCPLossProbeRecovery`` counted.
    """
    high = rack.tlp_high_seq
    if high is None or seq_lt(ack, high):
        return
    probe_dsacked = (
        dsack is not None and seq_le(dsack[1], high) and seq_gt(dsack[1], rack.tlp_start)
    )
    if not rack.tlp_retrans or probe_dsacked:
        # New data acknowledged, or both copies of the resent segment arrived.
        rack.tlp_high_seq = None
    elif seq_gt(ack, high):
        rack.tlp_high_seq = None
        cc = conn.cc
        if not cc.in_cwnd_reduction:
            cc.on_congestion_event(now)
            cc.exit_recovery(now)
        conn.counters.TcpExtTCPLossProbeRecovery += 1
    elif not advanced and not sacked:
        rack.tlp_high_seq = None


# -- episodes, D-SACK and undo -------------------------------------------------


def start_episode(conn: TcpConnection, kind: int) -> None:
    """A recovery or RTO episode starts (Linux ``tcp_init_undo``, ``high_seq``)."""
    conn.undo_marker = conn.snd_una
    conn.undo_retrans = -1
    conn.retrans_stamp = None
    conn.undo_episode = kind
    conn.high_seq = conn.snd_nxt
    rack = conn.rack
    if rack is not None:
        rack.tlp_high_seq = None
    conn.timers.loss_probe = None


def note_retransmit(conn: TcpConnection, now: float, seq: int, length: int) -> None:
    """A segment was sent again: count it for undo and stamp the episode's first resend."""
    if conn.undo_retrans < 0:
        conn.undo_retrans = 0
    conn.undo_retrans += 1
    if conn.retrans_stamp is None and conn.ts_ok:
        conn.retrans_stamp = tcp_time_stamp(now, conn.ts_offset)
    rack = conn.rack
    if rack is not None:
        rack.on_retransmit(seq, length, now)


def on_dsack(conn: TcpConnection, now: float, dsack: tuple[int, int], ack: int) -> None:
    """A D-SACK arrived (Linux ``tcp_check_dsack``): count it, adapt RACK, maybe undo.

    ``TCPDSACKRecv`` counts a D-SACK below the ACK's cumulative number
    (``ack``), ``TCPDSACKOfoRecv`` one inside the next SACK block. Every
    duplicate the receiver reports above ``undo_marker`` takes one
    retransmission off ``undo_retrans`` (Linux's "dumb counting"); when
    none is left, every retransmission of the episode was unnecessary and
    the reduction is undone (``TCPDSACKUndo``).
    """
    start, end = dsack
    counters = conn.counters
    if seq_lt(start, ack):
        counters.TcpExtTCPDSACKRecv += 1
    else:
        counters.TcpExtTCPDSACKOfoRecv += 1
    rack = conn.rack
    if rack is not None:
        rack.on_dsack(conn.snd_una, conn.snd_nxt)
    marker = conn.undo_marker
    if marker is None or conn.undo_retrans <= 0 or not seq_gt(end, marker):
        return
    mss = conn.snd_mss
    segs = max((seq_diff(end, start) + mss - 1) // mss, 1)
    conn.undo_retrans = max(conn.undo_retrans - segs, 0)
    if conn.undo_retrans == 0:
        if rack is not None:
            rack.reo_wnd_persist = min(rack.reo_wnd_persist + 1, 16)
        undo(conn, now, "dsack")


def _packet_delayed(conn: TcpConnection, tsecr: int | None) -> bool:
    """Linux ``tcp_packet_delayed``: the ACK echoes a TSval older than the first resend (Eifel)."""
    stamp = conn.retrans_stamp
    return stamp is not None and bool(tsecr) and tsecr is not None and seq_lt(tsecr, stamp)


def ts_undo(conn: TcpConnection, now: float, tsecr: int | None, *, full: bool) -> bool:
    """Eifel detection (RFC 3522) on an ACK of new data during an episode.

    In an RTO episode the first such ACK undoes the timeout (Linux
    ``tcp_try_undo_loss``: ``TCPLossUndo``; counted as ``TCPSpuriousRTOs``
    too, RFC 4138's name for it); in fast recovery the full ACK does
    (``tcp_try_undo_recovery``: ``TCPFullUndo``).
    """
    kind = conn.undo_episode
    if conn.undo_marker is None or not _packet_delayed(conn, tsecr):
        return False
    if kind == EPISODE_LOSS:
        undo(conn, now, "loss")
        return True
    if kind == EPISODE_RECOVERY and full:
        undo(conn, now, "full")
        return True
    return False


def episode_acked(conn: TcpConnection) -> bool:
    """Whether ``snd_una`` reached the episode's ``high_seq`` (then it ends)."""
    return conn.undo_episode != 0 and seq_ge(conn.snd_una, conn.high_seq)


def end_episode(conn: TcpConnection) -> None:
    """The episode's data is all acknowledged; ``undo_marker`` stays for late D-SACKs."""
    conn.undo_episode = 0
    conn.retrans_stamp = None
    rack = conn.rack
    if rack is not None:
        rack.on_recovery_end()


def undo(conn: TcpConnection, now: float, why: str) -> None:
    """Undo the episode's window reduction (Linux ``tcp_undo_cwnd_reduction``).

    The window and ssthresh come back (``CongestionControl.undo``), SACK
    recovery or the go-back-N pass after a timeout stops (Linux unmarks the
    lost segments), and the counter for ``why`` is bumped: ``dsack``
    (``TCPDSACKUndo``), ``loss`` (``TCPLossUndo`` and ``TCPSpuriousRTOs``)
    or ``full`` (``TCPFullUndo``).
    """
    conn.cc.undo(now)
    sb = conn.sb
    was_loss = conn.undo_episode == EPISODE_LOSS or conn.loss_mode
    if sb is not None:
        sb.end_recovery()
        if was_loss:
            sb.clear_lost()
        conn.sack_head = None
    rack = conn.rack
    if rack is not None:
        rack.lost_rtx.clear()
    rec = conn.recovery
    rec.in_recovery = False
    if conn.loss_mode:
        conn.loss_mode = False
        conn.rtx_nxt = conn.snd_nxt
    counters = conn.counters
    if why == "dsack":
        counters.TcpExtTCPDSACKUndo += 1
    elif why == "loss":
        counters.TcpExtTCPLossUndo += 1
        counters.TcpExtTCPSpuriousRTOs += 1
    else:
        counters.TcpExtTCPFullUndo += 1
    conn.undo_marker = None
    conn.undo_retrans = -1
    if conn.undo_episode:
        end_episode(conn)
