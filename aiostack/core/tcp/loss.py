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
  :func:`ts_undo`, including the partial-ACK undo of fast recovery
  (``tcp_try_undo_partial``);
- F-RTO (RFC 5682 as Linux's ``tcp_frto``): whether an RTO arms it
  (:func:`frto_enter_loss`, from ``tcp_enter_loss``) and what each ACK of
  the RTO episode then does (:func:`frto_ack`, ``tcp_process_loss``): new
  data instead of retransmissions after the first ACK, undo when
  never-retransmitted data is acknowledged;
- the reordering degree ``tp->reordering`` (:func:`check_reordering`,
  ``tcp_check_sack_reordering``; :func:`set_reordering`): the DupThresh
  of fast retransmit without RACK and RACK's DupThresh shortcut.

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
    from aiostack.core.tcp.sack import SackScoreboard, SackUpdate

__all__ = [
    "EPISODE_LOSS",
    "EPISODE_RECOVERY",
    "FRTO_ARMED",
    "FRTO_NEW",
    "FRTO_OFF",
    "FRTO_RESUMED",
    "check_reordering",
    "enter_sack_recovery",
    "episode_acked",
    "frto_ack",
    "frto_enter_loss",
    "frto_in_flight",
    "note_retransmit",
    "on_dsack",
    "on_loss_probe_timer",
    "on_reorder_timer",
    "rack_ack",
    "reno_reordering",
    "sack_reordering",
    "schedule_loss_probe",
    "set_reordering",
    "start_episode",
    "tlp_ack",
    "ts_undo",
    "undo",
]

#: Episode kinds (Linux ``TCP_CA_Recovery`` and ``TCP_CA_Loss``).
EPISODE_RECOVERY = 1
EPISODE_LOSS = 2

#: F-RTO (RFC 5682 3.1) states of an RTO episode (Linux ``tp->frto`` plus the
#: step reached). OFF: plain go-back-N. ARMED: the timeout resent
#: ``snd_una``, the first ACK is awaited (step 2). NEW: that ACK advanced
#: ``snd_una`` and new data goes out instead of retransmissions (step 2b;
#: ``loss_mode`` is off meanwhile). RESUMED: the next ACK neither undid nor
#: disproved the timeout; retransmissions resumed, undo still possible.
FRTO_OFF = 0
FRTO_ARMED = 1
FRTO_NEW = 2
FRTO_RESUMED = 3

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
    if rack.reord_dist:
        check_reordering(conn, rack.reord_dist, ts=False)
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
        in_recovery=sb.in_recovery or conn.undo_episode != 0 or conn.loss_mode,
        sacked_segs=sb.sacked_bytes // mss if mss > 0 else 0,
        min_rtt=min_rtt,
        srtt=conn.rtt.srtt,
        dupthresh=conn.reordering,
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
    if kind == EPISODE_RECOVERY:
        conn.frto = FRTO_OFF  # F-RTO belongs to RTO episodes (armed by frto_enter_loss)
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
    end = (seq + length) & 0xFFFFFFFF
    if seq_gt(end, conn.rtx_high):
        conn.rtx_high = end
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
        if conn.undo_episode == EPISODE_LOSS:
            # Linux tcp_process_loss: in the Loss state the undo waits for an
            # ACK that advances snd_una (tcp_try_undo_loss, TCPLossUndo).
            return
        undo(conn, now, "dsack")


def _packet_delayed(conn: TcpConnection, tsecr: int | None) -> bool:
    """Linux ``tcp_packet_delayed``: the ACK echoes a TSval older than the first resend (Eifel)."""
    stamp = conn.retrans_stamp
    return stamp is not None and bool(tsecr) and tsecr is not None and seq_lt(tsecr, stamp)


def ts_undo(
    conn: TcpConnection,
    now: float,
    tsecr: int | None,
    *,
    full: bool,
    prior_una: int | None = None,
    sack: SackUpdate | None = None,
    acked_segs: int = 0,
) -> bool:
    """Eifel detection (RFC 3522) on an ACK of new data during an episode.

    In an RTO episode the first such ACK undoes the timeout (Linux
    ``tcp_try_undo_loss``: ``TCPLossUndo``; so does any ACK of new data once
    D-SACKs covered every resend, ``tcp_may_undo``; ``TCPSpuriousRTOs`` is F-RTO's,
    :func:`frto_ack`); in fast recovery the full ACK does
    (``tcp_try_undo_recovery``: ``TCPFullUndo``) and so does a partial ACK
    (``tcp_try_undo_partial``: ``TCPPartialUndo``) once no retransmission
    is still unacknowledged: the hole was filled by the delayed original,
    so the reordering degree is raised to what the ACK shows
    (``tcp_check_sack_reordering`` with ``ts=1``: ``TCPTSReorder``).
    ``prior_una`` is ``snd_una`` before the ACK; ``sack`` the scoreboard's
    reading of it and ``acked_segs`` the segments it acknowledged, from which
    a partial undo with SACK lets the ACK grow the restored window as Linux
    does (:func:`_delivered`).
    """
    kind = conn.undo_episode
    if conn.undo_marker is None:
        return False
    if kind == EPISODE_LOSS and conn.undo_retrans == 0:
        undo(conn, now, "loss")  # every resend D-SACKed (tcp_may_undo)
        return True
    if not _packet_delayed(conn, tsecr):
        return False
    if kind == EPISODE_LOSS:
        undo(conn, now, "loss")
        return True
    if kind == EPISODE_RECOVERY and full:
        undo(conn, now, "full")
        return True
    if kind == EPISODE_RECOVERY and prior_una is not None:
        sb = conn.sb
        fack = conn.snd_una
        if sb is not None:
            high = sb.high_sacked
            if high is not None and seq_gt(high, fack):
                fack = high
        if seq_lt(prior_una, fack):
            check_reordering(conn, seq_diff(fack, prior_una), ts=True)
        rack = conn.rack
        if (sb is not None and sb.retrans_bytes > 0) or (
            rack is not None and rack.retrans_outstanding()
        ):
            # Linux: retransmissions still out (retrans_out); clock out new
            # data but neither undo nor mark more lost on this ACK.
            return False
        cc = conn.cc
        restored = cc.prior_cwnd
        reduced = cc.cwnd <= restored
        undo(conn, now, "partial")
        if reduced and cc.prior_ssthresh:
            # Linux restores max(cwnd before this ACK, prior_cwnd), the prior
            # one while reduced, and then grows it for this ACK (Open state).
            # Without SACK acked_segs is already what the ACK delivered
            # (input._newreno_ack: not the segments duplicate ACKs counted).
            _regrow(conn, now, acked_segs if sack is None else _delivered(conn, sack, acked_segs))
        return True
    return False


def episode_acked(conn: TcpConnection) -> bool:
    """Whether ``snd_una`` reached the episode's ``high_seq`` (then it ends)."""
    return conn.undo_episode != 0 and seq_ge(conn.snd_una, conn.high_seq)


def end_episode(conn: TcpConnection) -> None:
    """The episode's data is all acknowledged; ``undo_marker`` stays for late D-SACKs."""
    conn.undo_episode = 0
    conn.frto = FRTO_OFF
    conn.retrans_stamp = None
    rack = conn.rack
    if rack is not None:
        rack.on_recovery_end()


def undo(conn: TcpConnection, now: float, why: str) -> None:
    """Undo the episode's window reduction (Linux ``tcp_undo_cwnd_reduction``).

    The window and ssthresh come back (``CongestionControl.undo``), SACK
    recovery or the go-back-N pass after a timeout stops (Linux unmarks the
    lost segments), and the counter for ``why`` is bumped: ``dsack``
    (``TCPDSACKUndo``), ``loss`` (``TCPLossUndo``), ``frto``
    (``TCPLossUndo`` and ``TCPSpuriousRTOs``, Linux's ``frto_undo``),
    ``partial`` (``TCPPartialUndo``) or ``full`` (``TCPFullUndo``).
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
    conn.rtx_head = False
    conn.frto = FRTO_OFF
    if conn.loss_mode:
        conn.loss_mode = False
        conn.rtx_nxt = conn.snd_nxt
    counters = conn.counters
    if why == "dsack":
        counters.TcpExtTCPDSACKUndo += 1
    elif why == "loss":
        counters.TcpExtTCPLossUndo += 1
    elif why == "frto":
        counters.TcpExtTCPLossUndo += 1
        counters.TcpExtTCPSpuriousRTOs += 1
    elif why == "partial":
        counters.TcpExtTCPPartialUndo += 1
    else:
        counters.TcpExtTCPFullUndo += 1
    conn.undo_marker = None
    conn.undo_retrans = -1
    if conn.undo_episode:
        end_episode(conn)


# -- reordering degree (tp->reordering) ----------------------------------------


def set_reordering(conn: TcpConnection, segs: int) -> None:
    """Set ``tp->reordering`` and the DupThresh that follows it (RFC 6675 and NewReno).

    Linux's fast retransmit without RACK waits for ``tp->reordering``
    duplicate ACKs (``tcp_time_to_recover``); the scoreboard's ``IsLost``
    and the NewReno counter use the same number here.
    """
    segs = max(segs, 1)
    conn.reordering = segs
    sb = conn.sb
    if sb is not None:
        sb.dup_thresh = segs
    conn.recovery.dupthresh = segs


def sack_reordering(conn: TcpConnection, sb: SackScoreboard) -> None:
    """Reordering seen by the scoreboard's last update, without RACK's log (``tcp_recovery=0``).

    Linux ``tcp_sacktag_one``/``tcp_clean_rtx_queue``: data delivered for
    the first time below the highest SACKed byte, and never retransmitted
    (at or above ``rtx_high``, the end of the highest retransmission of
    this episode), arrived out of order; the distance to the highest SACKed
    byte (``tcp_highest_sack_seq``: ``snd_una`` when nothing is SACKed any
    more) goes to :func:`check_reordering`.
    """
    low = sb.reord_seq()
    if low is None:
        return
    if seq_lt(low, conn.rtx_high):
        low = conn.rtx_high
    fack = sb.high_sacked
    if fack is None:
        fack = conn.snd_una
    if seq_lt(low, fack):
        check_reordering(conn, seq_diff(fack, low), ts=False)


def reno_reordering(conn: TcpConnection) -> None:
    """A duplicate ACK without SACK (Linux ``tcp_add_reno_sack`` -> ``tcp_check_reno_reordering``).

    More duplicate ACKs than segments beyond the hole (``sacked_out + 1 >
    packets_out``) cannot be losses: the network reordered or duplicated.
    Linux then sets the degree to the segments in flight (which may lower
    it), capped by ``tcp_max_reordering``, and counts ``TCPRenoReorder``.
    """
    if conn.undo_episode == EPISODE_LOSS and not seq_gt(conn.snd_nxt, conn.high_seq):
        return  # tcp_process_loss counts duplicates only after F-RTO's new data
    mss = conn.snd_mss
    out = seq_diff(conn.snd_nxt, conn.snd_una)
    if mss <= 0 or out <= 0:
        return
    packets_out = (out + mss - 1) // mss
    if conn.recovery.dupacks + 1 > packets_out:
        set_reordering(conn, min(packets_out, conn.settings.tcp_max_reordering))
        conn.counters.TcpExtTCPRenoReorder += 1


def check_reordering(conn: TcpConnection, dist: int, *, ts: bool) -> None:
    """Reordering seen ``dist`` bytes deep (Linux ``tcp_check_sack_reordering``).

    A never-retransmitted segment was delivered ``dist`` bytes below the
    highest one delivered (SACK, ``TCPSACKReorder``), or a partial ACK in
    recovery was for a delayed original (timestamps, ``TCPTSReorder``).
    When that is more than ``tp->reordering`` segments the degree is raised
    to it, capped by ``tcp_max_reordering``.
    """
    mss = conn.snd_mss
    if mss > 0 and dist > conn.reordering * mss:
        segs = min((dist + mss - 1) // mss, conn.settings.tcp_max_reordering)
        if segs > conn.reordering:
            set_reordering(conn, segs)
    if ts:
        conn.counters.TcpExtTCPTSReorder += 1
    else:
        conn.counters.TcpExtTCPSACKReorder += 1


# -- F-RTO (RFC 5682, Linux tcp_frto) ------------------------------------------


def frto_enter_loss(conn: TcpConnection, *, recovering: bool) -> None:
    """A retransmission timeout: arm F-RTO or not (RFC 5682 3.1 step 1, ``tcp_enter_loss``).

    Call before the timeout changes any state. Linux arms it when
    ``tcp_frto`` is set and either no recovery was under way (the state
    was below ``TCP_CA_Recovery``) or this is a repeated timeout of the
    same ``snd_una`` (``icsk_retransmits``, RFC 5682 3.2). A timeout after
    a reordering-free stretch also shrinks a learnt reordering degree back
    to ``tcp_reordering`` when DupThresh segments were SACKed.
    """
    new_recovery = not recovering and conn.undo_episode == 0
    st = conn.settings
    sb = conn.sb
    if (
        new_recovery
        and sb is not None
        and conn.reordering > st.tcp_reordering
        and sb.sacked_bytes >= st.tcp_reordering * conn.snd_mss
    ):
        set_reordering(conn, st.tcp_reordering)
    conn.rtx_high = conn.snd_una
    armed = bool(st.tcp_frto) and (new_recovery or conn.retransmits > 0)
    conn.frto = FRTO_ARMED if armed else FRTO_OFF


def _orig_acked(
    conn: TcpConnection, ack: int, advanced: bool, blocks: tuple[tuple[int, int], ...]
) -> bool:
    """Linux ``FLAG_ORIG_SACK_ACKED``: never-retransmitted data below ``high_seq`` was (S)ACKed.

    What was never retransmitted in this episode lies at or above
    ``rtx_high`` (the end of the highest retransmission). A cumulative ACK
    beyond it, or a SACK block reaching into ``[rtx_high, high_seq)``,
    delivered an original transmission.
    """
    high = conn.high_seq
    lo = conn.rtx_high
    if seq_lt(lo, conn.snd_una):
        lo = conn.snd_una
    if not seq_lt(conn.rtx_high, high):
        return False
    if advanced and seq_gt(ack, conn.rtx_high):
        return True
    for start, end in blocks:
        s = start if seq_gt(start, lo) else lo
        e = end if seq_lt(end, high) else high
        if seq_lt(s, e) and seq_gt(start, ack):
            return True
    return False


def frto_ack(
    conn: TcpConnection,
    now: float,
    ack: int,
    *,
    advanced: bool,
    dupack: bool,
    sack: SackUpdate | None,
    blocks: tuple[tuple[int, int], ...],
    tsecr: int | None,
    window: int,
    acked_segs: int = 0,
) -> None:
    """An ACK during an RTO episode with F-RTO armed (Linux ``tcp_process_loss``).

    In order: Eifel undo when ``snd_una`` advanced (``tcp_try_undo_loss``);
    F-RTO's spurious-timeout test (step 3b, SACK-enhanced: any
    never-retransmitted data below the old ``snd_nxt`` (S)ACKed: undo,
    ``TCPSpuriousRTOs``); once new data was sent, a SACK or duplicate ACK
    proves the loss real (step 3a: plain retransmission from then on);
    on the first ACK that advances ``snd_una`` without reaching
    ``high_seq``, new data goes out instead of retransmissions if the
    window allows (step 2b, ``high_seq`` moves to ``snd_nxt``), else F-RTO
    is off (step 2a); the ACK of ``high_seq`` ends the episode. An ACK
    after step 2b that decides nothing resumes the retransmissions.
    ``blocks`` are the ACK's SACK blocks, ``dupack`` whether it was a
    duplicate ACK (no data, no window change, ``snd_una`` unmoved, no
    D-SACK: Linux's ``FLAG_DSACKING_ACK`` is not one).
    ``sack`` is the scoreboard's reading of the ACK (``None`` without
    SACK). ``window`` is the ACK's window (scaled), which Linux has taken by
    then (``tcp_ack_update_window`` runs first); ``acked_segs`` is what the
    ACK delivered cumulatively, in segments.
    """
    recovered = seq_ge(conn.snd_una, conn.high_seq)
    newly_sacked = sack is not None and sack.newly_sacked > 0
    delivered = acked_segs if sack is None else _delivered(conn, sack, acked_segs)
    if (
        advanced
        and conn.undo_marker is not None
        and (conn.undo_retrans == 0 or _packet_delayed(conn, tsecr))
    ):
        undo(conn, now, "loss")
        _regrow(conn, now, delivered)
        return
    new_sent = conn.frto == FRTO_NEW
    if conn.frto:
        if _orig_acked(conn, ack, advanced, blocks if newly_sacked else ()):
            undo(conn, now, "frto")
            _regrow(conn, now, delivered)
            return
        if seq_gt(conn.snd_nxt, conn.high_seq):
            if newly_sacked or dupack:
                conn.frto = FRTO_OFF  # step 3a: the loss was real
        elif advanced and not recovered:
            conn.high_seq = conn.snd_nxt
            wnd_end = (ack + window) & 0xFFFFFFFF  # an ACK of new data: its window counts
            if seq_gt(conn.data_end, conn.snd_nxt) and seq_gt(wnd_end, conn.snd_nxt):
                conn.frto = FRTO_NEW  # step 2b: send new data, wait for the next ACK
                conn.loss_mode = False
                return
            conn.frto = FRTO_OFF
    if recovered:
        end_episode(conn)
        return
    if new_sent:
        # REXMIT_LOST after step 2b: back to resending what the timeout
        # marked lost, from the first segment not yet resent.
        if conn.frto:
            conn.frto = FRTO_RESUMED
        nxt = conn.rtx_high if seq_gt(conn.rtx_high, conn.snd_una) else conn.snd_una
        if seq_lt(nxt, conn.snd_nxt):
            conn.rtx_nxt = nxt
            conn.loss_mode = True


def _delivered(conn: TcpConnection, sack: SackUpdate, acked_segs: int) -> int:
    """Segments an ACK delivered for cwnd (Linux ``tp->delivered``'s step).

    Cumulatively ACKed ones not SACKed before, newly SACKed ones, and one
    for a D-SACK ("a spurious retransmission is delivered").
    """
    mss = conn.snd_mss
    if mss <= 0:
        return acked_segs
    n = acked_segs - sack.sacked_acked // mss + (sack.newly_sacked + mss - 1) // mss
    if sack.dsack is not None:
        n += 1
    return max(n, 0)


def _regrow(conn: TcpConnection, now: float, segs: int) -> None:
    """Let the undoing ACK grow the restored window, as it does in Linux.

    Linux undoes in ``tcp_fastretrans_alert`` and only then lets
    ``tcp_cong_control`` grow cwnd for the same ACK, in the Open state.
    Here the window already grew for it from the reduced value (which the
    undo's ``max(cwnd, prior_cwnd)`` then discarded), so the growth is
    applied again to the restored window.
    """
    if segs > 0:
        conn.cc.on_ack(now, segs, snd_una=conn.snd_una, snd_nxt=conn.snd_nxt)


def frto_in_flight(conn: TcpConnection) -> int:
    """Bytes in flight during F-RTO step 2b without SACK (``tcp_packets_in_flight``).

    The timeout marked the whole old flight lost, so only what was sent
    since (above ``high_seq``) counts, as in Linux after ``tcp_enter_loss``.
    """
    return max(seq_diff(conn.snd_nxt, conn.high_seq), 0)
