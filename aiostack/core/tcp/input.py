"""Segment arrival for one connection (RFC 9293 3.10.7, Linux ``tcp_input.c``).

:func:`segment_arrives` is ``TcpConnection.on_segment``. It follows RFC
9293's "SEGMENT ARRIVES" steps in order, with Linux's refinements named
where they apply:

- SYN-SENT (3.10.7.3): ACK check, RST check, SYN processing, including the
  simultaneous open;
- synchronized states (3.10.7.4): PAWS (RFC 7323 5.3), then the
  acceptability test (Linux's ``tcp_sequence``), RST (RFC 5961 3.2: exact
  match resets, in-window draws a challenge ACK), security (nothing to do:
  no IP security compartments), SYN (RFC 5961 4.2: challenge ACK), ACK
  (RFC 5961 5.2 range check, then ``tcp_ack``: RTT, congestion control,
  loss detection with RACK-TLP or DupThresh, D-SACK and undo (the glue is
  :mod:`.loss`), the send window, FIN acknowledgement), URG (Linux's
  ``tcp_urg``, in :mod:`.urgent`), segment text (with the delayed-ACK
  estimator and the receiver's RTT for auto-tuning), FIN.

The only value returned is an *immediate* reply (RST or challenge ACK);
every other answer is requested by setting ``ack_now`` or the delayed-ACK
timer and is sent, merged with whatever else is due, by ``poll_transmit``.

Header prediction is off while an announced urgent byte has not arrived,
so the segment that brings it takes the slow path (Linux clears
``pred_flags`` in ``tcp_check_urg``).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from aiostack.core.tcp.congestion.newreno import RecoveryAction
from aiostack.core.tcp.isn import tcp_time_stamp
from aiostack.core.tcp.loss import (
    EPISODE_RECOVERY,
    end_episode,
    enter_sack_recovery,
    frto_ack,
    on_dsack,
    rack_ack,
    reno_reordering,
    sack_reordering,
    schedule_loss_probe,
    start_episode,
    tlp_ack,
    ts_undo,
)
from aiostack.core.tcp.output import TS_OPTION_LEN, Segment, build, reset_for
from aiostack.core.tcp.rack import TCP_RACK_LOSS_DETECTION
from aiostack.core.tcp.rtt import ts_rtt
from aiostack.core.tcp.sack import SackScoreboard, SackUpdate
from aiostack.core.tcp.state import EV_READABLE, EV_WRITABLE, Event, TcpState
from aiostack.core.tcp.timers import TCP_ATO_MIN, TCP_DELACK_MAX, TCP_MAX_QUICKACKS
from aiostack.core.tcp.urgent import URG_NOTYET, urg
from aiostack.wire import tcp as wtcp
from aiostack.wire.seqnum import seq_add, seq_ge, seq_gt, seq_le, seq_lt, seq_sub

if TYPE_CHECKING:
    from aiostack.core.tcp.connection import TcpConnection

__all__ = ["segment_arrives"]

_SYN = wtcp.SYN
_ACK = wtcp.ACK
_FIN = wtcp.FIN
_RST = wtcp.RST
#: Control bits that must read exactly ACK for header prediction (PSH, ECE,
#: CWR and AE may be anything: the slow path ignores them as well).
_PREDICT_MASK = _SYN | _FIN | _RST | wtcp.URG | _ACK
_ESTABLISHED = TcpState.ESTABLISHED
_SEQ_MASK = 0xFFFFFFFF
_HALF = 1 << 31
_ATO_HALF = TCP_ATO_MIN / 2
#: tcp_measure_rcv_mss's constants: TCP_MSS_DEFAULT, TCP_MIN_MSS, sizeof(struct
#: tcphdr), and TCP_REMNANT (FIN, URG, SYN, PSH: a segment that may be short).
_TCP_MSS_DEFAULT = 536
_TCP_MIN_MSS = 88
_TH_LEN = 20
_TCP_REMNANT = _FIN | wtcp.URG | _SYN | wtcp.PSH


def segment_arrives(
    conn: TcpConnection, now: float, header: wtcp.TcpHeader, payload: memoryview | bytes
) -> Segment | None:
    """Process one arriving segment; return an immediate reply (RST, challenge ACK) or None."""
    conn.segs_in += 1
    st = conn.state
    if (
        st is _ESTABLISHED
        and header.flags & _PREDICT_MASK == _ACK
        and header.seq == conn.rcv_nxt
        and conn.urg_data != URG_NOTYET
    ):
        # Header prediction (Van Jacobson's, Linux's tcp_rcv_established fast
        # path): the next segment in order, flags just ACK, an acknowledgment
        # within [snd_una, snd_nxt] and (with timestamps) no PAWS failure.
        # For such a segment every check of _synchronized before the ACK step
        # is known to pass: seq == rcv_nxt is always acceptable (rcv_wup <=
        # rcv_nxt), there is no RST or SYN, and an ACK in [snd_una, snd_nxt]
        # passes RFC 5961 5.2. What is left is exactly _synchronized's tail,
        # the same functions: timestamps, _process_ack, then the text.
        ack = header.ack
        una = conn.snd_una
        # snd_una <= ack <= snd_nxt, as two unsigned offsets from snd_una.
        if (ack - una) & _SEQ_MASK <= (conn.snd_nxt - una) & _SEQ_MASK:
            ts = header.options.timestamps if conn.ts_ok else None
            if ts is None or (ts[0] - conn.ts_recent) & _SEQ_MASK < _HALF:
                conn.last_recv = now
                seq = header.seq
                if ts is not None and seq == conn.rwnd.rcv_wup:
                    # RFC 7323 4.3 (seq <= rcv_wup, and seq == rcv_nxt >= rcv_wup).
                    conn.ts_recent = ts[0]
                plen = len(payload)
                if ack == una and una == conn.snd_nxt and not header.options.sack_blocks:
                    # _process_ack's first branch, without the call (every
                    # segment of a one-way transfer reaches its receiver so):
                    # nothing outstanding and nothing acknowledged, so only
                    # the send window can change. Keep the two equal.
                    conn.last_ack_recv = now
                    conn.probes = 0
                    conn.more = False
                    _update_send_window(conn, seq, ack, header.window << conn.snd_wscale, False)
                else:
                    _process_ack(conn, now, header, seq, plen, False)
                if plen and conn.state is _ESTABLISHED:
                    if ts is not None and conn.rcvbuf_auto:
                        conn.rcv_rtt_tsecr = ts[1]
                    _text_and_fin(conn, now, seq, payload, False, header.flags, header.header_len)
                return None
    if st is TcpState.CLOSE:
        # RFC 9293 3.10.7.1: CLOSED answers everything but an RST with an RST.
        rst = reset_for(header, len(payload))
        if rst is not None:
            conn.counters.TcpOutRsts += 1
        return rst
    if st is TcpState.LISTEN:
        return None
    if st is TcpState.SYN_SENT:
        return _syn_sent(conn, now, header, payload)
    return _synchronized(conn, now, header, payload)


def _rst_for_ack(conn: TcpConnection, ack: int) -> Segment:
    """``<SEQ=SEG.ACK><CTL=RST>`` for an unacceptable ACK (RFC 9293 3.10.7.3/3.10.7.4)."""
    conn.counters.TcpOutRsts += 1
    conn.counters.TcpOutSegs += 1
    return Segment(conn.local_port, conn.remote_port, ack, 0, _RST, 0)


def _established(conn: TcpConnection, now: float) -> None:
    """The handshake completed (Linux ``tcp_init_transfer``/``tcp_finish_connect``).

    The RTO falls back to 3 s without a handshake sample (RFC 6298 5.7),
    the initial window is set (IW10, RFC 6928; one segment after more than
    one lost SYN), and the keepalive timer starts.
    """
    syn_retransmits = conn.total_retrans
    conn.retransmits = 0
    conn.rtx_start = None
    conn.rtt.on_established()
    conn.cc.init_transfer(syn_retransmits=syn_retransmits)
    conn.events |= EV_WRITABLE
    if conn.keepalive:
        conn.timers.keepalive = now + conn.keepidle
    # Linux tcp_init_buffer_space: the first RTT's expected reading.
    rw = conn.rwnd
    conn.rcvq_space = min(rw.rcv_ssthresh, rw.rcv_wnd, 10 * conn.advmss)
    conn.rcvq_time = now
    if conn.snd_una == conn.snd_nxt:
        conn.timers.retransmit = None
    if conn.sack_ok and conn.sb is None:
        sb = conn.sb = SackScoreboard(
            conn.snd_una, conn.snd_nxt, mss=conn.snd_mss, dup_thresh=conn.reordering
        )
        if conn.settings.tcp_recovery & TCP_RACK_LOSS_DETECTION:
            # RACK-TLP (RFC 8985) decides what is lost; RFC 6675's IsLost is
            # off. The Rack itself comes with the first segment sent
            # (output.start_rack): an idle connection does not carry one.
            sb.rack_mode = True


def _syn_sent(
    conn: TcpConnection, now: float, hdr: wtcp.TcpHeader, payload: memoryview | bytes
) -> Segment | None:
    """RFC 9293 3.10.7.3: the SYN-SENT state."""
    flags = hdr.flags
    ack_ok = False
    if flags & _ACK:
        # First: SEG.ACK =< ISS or SEG.ACK > SND.NXT is unacceptable.
        if seq_le(hdr.ack, conn.iss) or seq_gt(hdr.ack, conn.snd_nxt):
            if flags & _RST:
                return None
            return _rst_for_ack(conn, hdr.ack)
        ack_ok = True
    if flags & _RST:
        # Second: an RST is acceptable only with an acceptable ACK (RFC 5961 3.2
        # for SYN-SENT); the connection is refused (Linux: ECONNREFUSED).
        if ack_ok:
            conn.reset_received()
        return None
    if not flags & _SYN:
        # Fifth: neither SYN nor RST: drop.
        return None
    conn.accept_syn_options(hdr)
    conn.last_recv = now
    if not ack_ok:
        # Simultaneous open (RFC 9293 figure 8): SYN-RECEIVED, answer SYN,ACK
        # with our original ISS; Linux tcp_rcv_synsent_state_process does the same.
        conn.set_state(TcpState.SYN_RECV, Event.RCV_SYN)
        conn.syn_pending = True
        return None
    conn.snd_una = conn.rtx_nxt = hdr.ack
    sample_ts = None
    ts = hdr.options.timestamps
    if conn.ts_ok and ts is not None and ts[1]:
        sample_ts = ts_rtt(tcp_time_stamp(now, conn.ts_offset), ts[1])
    seq_rtt = now - conn.rtt_time if conn.rtt_time is not None else None
    conn.rtt_time = None
    conn.rtt.on_ack(
        now,
        snd_una=conn.snd_una,
        snd_nxt=conn.snd_nxt,
        seq_rtt=seq_rtt,
        retrans_acked=conn.retransmits > 0,
        ts_rtt=sample_ts,
    )
    conn.timers.retransmit = None
    conn.set_state(TcpState.ESTABLISHED, Event.RCV_SYN_ACK)
    _established(conn, now)
    # Linux tcp_rcv_synsent_state_process sends the ACK at once (no data queued yet).
    conn.ack_now = True
    fin = bool(flags & _FIN)
    if len(payload) or fin:
        _text_and_fin(conn, now, seq_add(hdr.seq, 1), payload, fin, flags, hdr.header_len)
    return None


def _challenge_ack(conn: TcpConnection, now: float) -> Segment | None:
    """An RFC 5961 challenge ACK, rate-limited per socket like Linux's ``tcp_send_challenge_ack``.

    Linux allows one out-of-window answer per ``tcp_invalid_ratelimit``
    milliseconds per socket (``__tcp_oow_rate_limited``), so a blind
    attacker cannot turn us into an ACK amplifier.
    """
    limit = conn.settings.tcp_invalid_ratelimit / 1000.0
    if conn.chal_time is not None and now - conn.chal_time < limit:
        return None
    conn.chal_time = now
    conn.counters.TcpExtTCPChallengeACK += 1
    conn.counters.TcpOutSegs += 1
    return build(conn, now, conn.snd_nxt, _ACK, b"")


def _synchronized(
    conn: TcpConnection, now: float, hdr: wtcp.TcpHeader, payload: memoryview | bytes
) -> Segment | None:
    """RFC 9293 3.10.7.4: SYN-RECEIVED and every later state."""
    flags = hdr.flags
    seq = hdr.seq
    plen = len(payload)
    st = conn.state
    syn = bool(flags & _SYN)
    if syn and st is TcpState.SYN_RECV:
        if not flags & _ACK and seq == conn.irs:
            # A retransmitted SYN: our SYN-ACK was lost; send it again (Linux tcp_check_req).
            conn.syn_pending = True
            return None
        if (
            not conn.passive
            and flags & _ACK
            and plen == 0
            and seq_add(seq, 1) == conn.rcv_nxt
            and hdr.ack == conn.snd_nxt
        ):
            # Simultaneous open: the peer's SYN-ACK answers our SYN. Linux's
            # tcp_validate_incoming lets exactly this SYN through as an ACK.
            syn = False
            flags &= ~_SYN
            seq = conn.rcv_nxt
    ts = hdr.options.timestamps if conn.ts_ok else None
    fin = bool(flags & _FIN)
    if st is TcpState.TIME_WAIT:
        return _time_wait(conn, now, hdr, seq, plen, fin, syn)
    if ts is not None and not flags & _RST and seq_lt(ts[0], conn.ts_recent):
        # PAWS (RFC 7323 5.3, Linux tcp_paws_discard): an old duplicate; ACK and drop.
        conn.counters.TcpExtPAWSEstab += 1
        conn.ack_now = True
        return None
    # First: the acceptability test, Linux's tcp_sequence: the segment must
    # end at or after the last window edge we advertised from (rcv_wup)
    # and start no later than the right edge of the window.
    seg_len = plen + syn + fin
    rcv_nxt = conn.rcv_nxt
    wnd = conn.rwnd.receive_window(rcv_nxt)
    if seq_lt(seq_add(seq, seg_len), conn.rwnd.rcv_wup) or seq_gt(seq, seq_add(rcv_nxt, wnd)):
        if not flags & _RST:
            if plen and seq_le(seq_add(seq, plen), rcv_nxt) and conn.sack_ok:
                conn.rcvbuf.dsack = (seq, seq_add(seq, plen))  # RFC 2883 duplicate report
            conn.ack_now = True
        return None
    conn.last_recv = now
    # Second: RST (RFC 5961 3.2).
    if flags & _RST:
        if seq == rcv_nxt:
            conn.reset_received()
            return None
        return _challenge_ack(conn, now)
    # Third (security) has nothing to check. Fourth: SYN (RFC 5961 4.2).
    if syn:
        return _challenge_ack(conn, now)
    # Fifth: ACK.
    if not flags & _ACK:
        return None
    ack = hdr.ack
    if st is TcpState.SYN_RECV:
        if not (seq_gt(ack, conn.snd_una) and seq_le(ack, conn.snd_nxt)):
            return _rst_for_ack(conn, ack)
        conn.set_state(TcpState.ESTABLISHED, Event.RCV_ACK_OF_SYN)
    if seq_gt(ack, conn.snd_nxt) or seq_lt(ack, seq_sub(conn.snd_una, max(conn.max_window, 1))):
        # RFC 5961 5.2: an ACK for data never sent, or older than the
        # largest window: challenge ACK, drop (Linux tcp_ack returns -1).
        return _challenge_ack(conn, now)
    if ts is not None and seq_le(seq, conn.rwnd.rcv_wup):
        # RFC 7323 4.3, for an acceptable ACK only (Linux FLAG_UPDATE_TS_RECENT).
        conn.ts_recent = ts[0]
    if st is TcpState.SYN_RECV and conn.passive:
        # Linux tcp_create_openreq_child: the child's largest window is the
        # one the handshake's ACK offers, not the SYN's.
        conn.max_window = 0
    _process_ack(conn, now, hdr, seq, plen, fin)
    if st is TcpState.SYN_RECV:
        _established(conn, now)
    if conn.state is TcpState.CLOSE:
        return None
    # Sixth: URG (Linux tcp_urg; see .urgent). Seventh and eighth:
    if flags & wtcp.URG or conn.urg_data == URG_NOTYET:
        urg(conn, seq, hdr.urgent if flags & wtcp.URG else None, payload)
    if (
        (plen or fin)
        and conn.shut_rd
        and conn.state in (TcpState.FIN_WAIT1, TcpState.FIN_WAIT2)
        and seq_gt(seq_add(seq, plen), conn.rcv_nxt)
    ):
        # Linux tcp_rcv_state_process (RFC 1122 4.2.2.13: new data for a
        # socket that will never read it MUST draw a reset): tcp_reset, then
        # tcp_v4_send_reset built from the segment alone: <SEQ=SEG.ACK><CTL=RST>.
        conn.counters.TcpExtTCPAbortOnData += 1
        conn.fail(errno.ECONNRESET, Event.ABORT)
        rst = reset_for(hdr, plen)
        if rst is not None:
            conn.counters.TcpOutRsts += 1
            conn.counters.TcpOutSegs += 1
        return rst
    if plen or fin:
        if ts is not None and conn.rcvbuf_auto:
            conn.rcv_rtt_tsecr = ts[1]
        _text_and_fin(conn, now, seq, payload, fin, hdr.flags, hdr.header_len)
    return None


def _time_wait(
    conn: TcpConnection, now: float, hdr: wtcp.TcpHeader, seq: int, plen: int, fin: bool, syn: bool
) -> Segment | None:
    """TIME-WAIT, as Linux's ``tcp_timewait_state_process`` (RFC 9293 3.10.7.4, RFC 1337).

    Only an RST or a bare ACK at exactly ``rcv_nxt`` is "in window": the RST
    ends TIME-WAIT (unless ``tcp_rfc1337`` protects it; Linux's default is
    not to), the ACK restarts the 2MSL timer, and neither is answered.
    Everything else but an RST (old data, a retransmitted FIN, an old bare
    ACK, a SYN that may not reopen the pair, a PAWS reject) is out of window
    and answered with an ACK of what we have (RFC 9293: "acknowledge it"),
    restarting the timer if it carried an ACK or failed PAWS. Like Linux's
    ``tcp_timewait_check_oow_rate_limit`` those answers are rate-limited to
    one per ``tcp_invalid_ratelimit`` when the segment carries no data or
    FIN (a bare ACK or a SYN: what an ACK loop is made of). A SYN that may
    reopen the connection never gets here: the demux hands it to the
    listener (``TCP_TW_SYN``).
    """
    flags = hdr.flags
    rst = bool(flags & _RST)
    ts = hdr.options.timestamps if conn.ts_ok else None
    # tcp_paws_reject: an RST is exempt (its cleanup takes precedence).
    paws_reject = ts is not None and not rst and seq_lt(ts[0], conn.ts_recent)
    if not paws_reject and seq == conn.rcv_nxt and (rst or not (plen or fin or syn)):
        if rst:
            if not conn.settings.tcp_rfc1337:
                conn.reset_received()
                return None
        else:
            conn.timers.time_wait = now + conn.time_wait_len()
        if ts is not None:
            conn.ts_recent = ts[0]
        return None
    if rst:
        return None
    if paws_reject:
        conn.counters.TcpExtPAWSEstab += 1
    if paws_reject or flags & _ACK:
        conn.timers.time_wait = now + conn.time_wait_len()
    if not (plen or fin) or syn:
        # tcp_oow_rate_limited: only segments without data (or with a SYN).
        limit = conn.settings.tcp_invalid_ratelimit / 1000.0
        if conn.chal_time is not None and 0 <= now - conn.chal_time < limit:
            return None
        conn.chal_time = now
    conn.ack_now = True
    return None


def _cwnd_limited(conn: TcpConnection, prior_flight: int) -> bool:
    """Linux ``tcp_is_cwnd_limited``: did the flight fill the window (half of it in slow start)?"""
    cc = conn.cc
    mss = conn.mss_clamp - (TS_OPTION_LEN if conn.ts_ok else 0)  # conn.snd_mss
    cwnd_bytes = cc.cwnd * mss
    if cc.cwnd < cc.ssthresh:  # cc.in_slow_start, without the property call
        return 2 * prior_flight >= cwnd_bytes
    return prior_flight + mss > cwnd_bytes


def _process_ack(
    conn: TcpConnection, now: float, hdr: wtcp.TcpHeader, seq: int, plen: int, fin: bool
) -> None:
    """The ACK step (Linux ``tcp_ack``): acknowledged data, RTT, congestion, loss, window, FIN.

    With SACK negotiated the scoreboard sees every acceptable ACK first
    (RFC 6675 ``Update``); loss recovery is then SACK-based, else NewReno.
    The distance from ``snd_una`` is written out (what :func:`seq_diff`
    computes) because this runs for every ACK and the call cost more than
    the arithmetic.
    """
    ack = hdr.ack
    opts = hdr.options
    window = hdr.window << conn.snd_wscale
    conn.last_ack_recv = now
    conn.probes = 0
    # tcp_data_snd_check pushes with the socket's own Nagle/cork mode: a
    # MSG_MORE hold lasts only until the next ACK.
    conn.more = False
    snd_una = conn.snd_una
    sb = conn.sb
    if ack == snd_una and snd_una == conn.snd_nxt and not opts.sack_blocks:
        # (segment_arrives's header prediction repeats this branch in line;
        # fastpath.rcv_ack writes out the path of a pure ACK of new data
        # outside recovery: keep them equal.)
        # Nothing outstanding and nothing new acknowledged (a receiver's
        # incoming data): the scoreboard update, RTT, congestion control and
        # duplicate-ACK logic below all do nothing for such an ACK (no data
        # in flight means no dupack, no recovery, no loss), so go straight
        # to the send window.
        _update_send_window(conn, seq, ack, window, False)
        return
    sack_update: SackUpdate | None = None
    was_sack_recovery = False
    if sb is not None and not conn.loss_mode:
        # conn.in_flight_bytes() with SACK outside loss_mode, without the
        # call (once per ACK): RFC 6675's pipe, after recording HighData.
        sb.on_send(conn.snd_nxt)
        prior_flight = sb.pipe()
        if prior_flight < 0:
            prior_flight = 0
    else:
        prior_flight = conn.in_flight_bytes()
    if sb is not None:
        was_sack_recovery = sb.in_recovery
        sack_update = sb.update(ack, opts.sack_blocks)
    rack = conn.rack
    acked_segs = 0
    sample = None
    acked = ((ack - snd_una + _HALF) & _SEQ_MASK) - _HALF  # seq_diff(ack, snd_una)
    if acked > 0:
        data_ack = ack
        fin_acked = False
        if conn.fin_sent and seq_gt(ack, conn.fin_seq):
            data_ack = conn.fin_seq
            fin_acked = True
        freed = conn.sndbuf.ack(data_ack)  # 0 unless data_ack is beyond its snd_una
        conn.snd_una = ack
        if ((conn.rtx_nxt - ack + _HALF) & _SEQ_MASK) - _HALF < 0:  # seq_lt(rtx_nxt, ack)
            conn.rtx_nxt = ack
        snd_nxt = conn.snd_nxt
        if conn.loss_mode and conn.rtx_nxt == snd_nxt:
            conn.loss_mode = False
        if freed:
            conn.bytes_acked += freed
            conn.events |= EV_WRITABLE
        # RTT (RFC 6298 with Karn's rule; RFC 7323 4.1 RTTM with timestamps).
        sample_ts = None
        ts = opts.timestamps
        if ts is not None and ts[1] and conn.ts_ok:
            sample_ts = ts_rtt(tcp_time_stamp(now, conn.ts_offset), ts[1])
        seq_rtt = None
        rtt_time = conn.rtt_time
        # seq_gt(ack, conn.rtt_seq), written out.
        if rtt_time is not None and ((ack - conn.rtt_seq + _HALF) & _SEQ_MASK) - _HALF > 0:
            seq_rtt = now - rtt_time
            conn.rtt_time = None
        if seq_rtt is not None or sample_ts is not None:
            sample = conn.rtt.on_ack(
                now, snd_una=ack, snd_nxt=snd_nxt, seq_rtt=seq_rtt, ts_rtt=sample_ts
            )
        conn.retransmits = 0
        conn.rtx_start = None
        mss = conn.mss_clamp - (TS_OPTION_LEN if conn.ts_ok else 0)  # conn.snd_mss
        acked_segs = (acked + mss - 1) // mss  # at least 1, as acked > 0
        if sb is None:
            # Segments delivered: on a partial ACK, not those duplicate ACKs counted.
            acked_segs = _newreno_ack(conn, now, ack, acked_segs, sample, prior_flight)
        # RFC 6298 5.2/5.3: restart the timer only because new data was acknowledged.
        if ack == snd_nxt:
            conn.timers.retransmit = None
            conn.timers.loss_probe = None
        else:
            conn.arm_retransmit(now)
            if rack is not None:
                # RFC 8985 7.2: the PTO restarts with each ACK of new data (lazily).
                rack.pto_base = now
                if conn.timers.loss_probe is None:
                    schedule_loss_probe(conn, now)
        if fin_acked:
            _our_fin_acked(conn, now)
            if conn.state is TcpState.CLOSE:
                return
    elif (
        sb is None
        and ack == snd_una
        and plen == 0
        and not fin
        and window == conn.snd_wnd
        and snd_una != conn.snd_nxt
    ):
        _dupack(conn, now)
    if sb is not None and sack_update is not None:
        rack_lost = False
        if rack is not None:
            if sb.new_ranges or rack.special or sb.in_recovery or conn.timers.reorder is not None:
                rack_lost = rack_ack(conn, now, ack, sb, rack)
            else:
                rack.on_clean_ack(now, ack)  # no loss: the log alone
        elif sb.reord_low is not None:
            sack_reordering(conn, sb)  # RACK's log does this itself (rack_ack)
        dsack = sack_update.dsack
        if dsack is not None:
            on_dsack(conn, now, dsack, ack)
        _sack_recovery(
            conn,
            now,
            sb,
            sack_update,
            acked_segs,
            was_sack_recovery,
            sample,
            prior_flight,
            rack_lost,
        )
        if rack is not None and rack.tlp_high_seq is not None:
            tlp_ack(
                conn,
                now,
                rack,
                ack,
                advanced=acked > 0,
                sacked=sack_update.newly_sacked > 0,
                dsack=dsack,
            )
    if conn.undo_episode:
        if conn.frto:
            # F-RTO (RFC 5682) decides on every ACK of the RTO episode (loss.frto_ack).
            ts = opts.timestamps
            frto_ack(
                conn,
                now,
                ack,
                advanced=acked > 0,
                dupack=acked <= 0
                and not plen
                and not fin
                and window == conn.snd_wnd
                and (sack_update is None or sack_update.dsack is None),
                sack=sack_update,
                blocks=opts.sack_blocks,
                tsecr=ts[1] if ts is not None and conn.ts_ok else None,
                window=window,
                acked_segs=acked_segs,
            )
        elif acked > 0:
            _episode_ack(conn, now, opts.timestamps, snd_una, sack_update, acked_segs)
    _update_send_window(conn, seq, ack, window, acked > 0)


def _episode_ack(
    conn: TcpConnection,
    now: float,
    ts: tuple[int, int] | None,
    prior_una: int,
    sack: SackUpdate | None,
    acked_segs: int,
) -> None:
    """An ACK of new data during a recovery or RTO episode: Eifel undo, the episode's end."""
    full = seq_ge(conn.snd_una, conn.high_seq)
    tsecr = ts[1] if ts is not None and conn.ts_ok else None
    if ts_undo(conn, now, tsecr, full=full, prior_una=prior_una, sack=sack, acked_segs=acked_segs):
        return
    if full:
        end_episode(conn)


def _update_send_window(conn: TcpConnection, seq: int, ack: int, window: int, acked: bool) -> None:
    """The send window (Linux ``tcp_may_update_window``, RFC 9293 SND.WL1/SND.WL2).

    With SEG.SEQ unchanged Linux takes a larger window, or a zero one (a
    receiver closing its window on a duplicate ACK), but never a smaller
    non-zero one.
    """
    wl1 = conn.snd_wl1
    if (
        acked
        or ((seq - wl1 + _HALF) & _SEQ_MASK) - _HALF > 0  # seq_gt(seq, snd_wl1), per segment
        or (seq == wl1 and (window > conn.snd_wnd or not window))
    ):
        conn.snd_wnd = window
        conn.snd_wl1 = seq
        conn.snd_wl2 = ack
        if window > conn.max_window:
            conn.max_window = window
        if window > 0 and conn.timers.persist is not None:
            conn.timers.persist = None
            conn.persist_backoff = 0


def _newreno_ack(
    conn: TcpConnection,
    now: float,
    ack: int,
    segs: int,
    sample: float | None,
    prior_flight: int,
) -> int:
    """Congestion control for an ACK of new data without SACK (RFC 5681, 6582, 6937).

    Returns the segments it delivered (Linux ``tp->delivered``'s step): ``segs``,
    but on a partial ACK only those no duplicate ACK counted already (at least 1).
    """
    rec = conn.recovery
    was_recovering = rec.in_recovery
    dupacks = rec.dupacks
    action = rec.on_new_ack(ack)
    if was_recovering:
        if action is RecoveryAction.FULL_ACK:
            conn.cc.exit_recovery(now)
        else:
            # A partial ACK, as Linux handles it without SACK: the ACK filled
            # one hole and the rest of what it covers was already counted by
            # duplicate ACKs (tcp_remove_reno_sacks: sacked_out -= acked - 1;
            # delivered max(acked - sacked_out, 1)). The new head is marked
            # lost (tcp_newreno_mark_lost) and leaves the flight until it is
            # resent; PRR (tcp_cwnd_reduction, newly_lost 1) then decides
            # whether it goes now or on a later ACK (tcp_xmit_retransmit_queue
            # stops at cwnd): output._retransmit keeps rtx_head until cwnd allows.
            rec.dupacks = max(dupacks - (segs - 1), 0)
            delivered = max(segs - dupacks, 1)
            conn.rtx_head = True
            mss = conn.snd_mss
            flight = (conn.in_flight_bytes() + mss - 1) // mss
            conn.cc.on_recovery_ack(
                now, delivered, flight, snd_una_advanced=True, newly_lost=1, rtt=sample
            )
            conn.limited_transmit = 0
            return delivered
    else:
        conn.cc.on_ack(
            now,
            segs,
            rtt=sample,
            cwnd_limited=_cwnd_limited(conn, prior_flight),
            snd_una=ack,
            snd_nxt=conn.snd_nxt,
        )
    conn.limited_transmit = 0
    return segs


def _sack_recovery(
    conn: TcpConnection,
    now: float,
    sb: SackScoreboard,
    upd: SackUpdate,
    acked_segs: int,
    was_recovering: bool,
    sample: float | None,
    prior_flight: int,
    rack_lost: bool = False,
) -> None:
    """RFC 6675 loss recovery for one ACK, with PRR (RFC 6937) setting cwnd.

    An ACK that SACKs new data counts as a duplicate ACK (RFC 6675 2);
    recovery starts on the third, or as soon as ``IsLost(snd_una)``; with
    RACK (``conn.rack``) it starts when RACK marked a loss (``rack_lost``,
    RFC 8985 6.2 step 6) instead. It ends when the recovery point is
    acknowledged. The first retransmission is queued in ``sack_head`` and
    sent regardless of the pipe.
    """
    mss = conn.mss_clamp - (TS_OPTION_LEN if conn.ts_ok else 0)  # conn.snd_mss, once per ACK
    newly = acked_segs + (upd.newly_sacked + mss - 1) // mss
    if acked_segs:
        conn.sack_dupacks = 0
    if upd.newly_sacked and conn.sack_dupacks < 0xFFFF:
        conn.sack_dupacks += 1
    cc = conn.cc
    if was_recovering and not sb.in_recovery:
        cc.exit_recovery(now)
        conn.sack_head = None
        return
    if sb.in_recovery:
        pipe = (conn.in_flight_bytes() + mss - 1) // mss
        cc.on_recovery_ack(
            now,
            newly,
            pipe,
            snd_una_advanced=acked_segs > 0,
            newly_lost=int(rack_lost),
            rtt=sample,
        )
        return
    if acked_segs:
        cc.on_ack(
            now,
            acked_segs,
            rtt=sample,
            cwnd_limited=_cwnd_limited(conn, prior_flight),
            snd_una=conn.snd_una,
            snd_nxt=conn.snd_nxt,
        )
    if conn.rack is not None:
        lost = rack_lost
    else:
        # DupThresh is the reordering degree (Linux tcp_time_to_recover).
        lost = conn.sack_dupacks >= sb.dup_thresh or sb.is_lost(conn.snd_una)
    if lost and not conn.loss_mode and conn.snd_una != conn.snd_nxt and sb.can_enter_recovery:
        enter_sack_recovery(conn, now, sb, newly)


def _dupack(conn: TcpConnection, now: float) -> None:
    """A duplicate ACK (RFC 5681 2): limited transmit, fast retransmit, RFC 6582/6937 recovery."""
    rec = conn.recovery
    action = rec.on_dupack(conn.snd_una, conn.snd_nxt)
    reno_reordering(conn)  # Linux tcp_add_reno_sack -> tcp_check_reno_reordering
    if action is RecoveryAction.LIMITED_TRANSMIT:
        conn.limited_transmit = min(conn.limited_transmit + 1, 2)
    elif action is RecoveryAction.FAST_RETRANSMIT:
        conn.cc.on_congestion_event(now)
        counters = conn.counters
        counters.TcpExtTCPFastRetrans += 1
        counters.TcpExtTCPRenoRecovery += 1
        start_episode(conn, EPISODE_RECOVERY)
        conn.rtx_head = True
        conn.rtt_time = None
        conn.limited_transmit = 0
    if rec.in_recovery:
        mss = conn.snd_mss
        flight = (conn.in_flight_bytes() + mss - 1) // mss
        conn.cc.on_recovery_ack(now, 1, flight, snd_una_advanced=False)


def _our_fin_acked(conn: TcpConnection, now: float) -> None:
    """Our FIN was acknowledged: FIN-WAIT-1, CLOSING and LAST-ACK move on (RFC 9293 3.10.7.4)."""
    st = conn.state
    if st is TcpState.FIN_WAIT1:
        conn.set_state(TcpState.FIN_WAIT2, Event.RCV_ACK_OF_FIN)
        if conn.orphan:
            conn.timers.fin_wait2 = now + conn.settings.tcp_fin_timeout
    elif st is TcpState.CLOSING:
        conn.set_state(TcpState.TIME_WAIT, Event.RCV_ACK_OF_FIN)
        conn.enter_time_wait(now)
    elif st is TcpState.LAST_ACK:
        conn.set_state(TcpState.CLOSE, Event.RCV_ACK_OF_FIN)


def _schedule_ack(conn: TcpConnection, now: float) -> None:
    """Delay the ACK for in-order data, or send it now (Linux ``__tcp_ack_snd_check``).

    At once in quick-ACK mode (the first segments of a connection) and
    when more than one full-sized segment is unacknowledged (RFC 1122
    4.2.3.2, RFC 5681 4.2); otherwise after the adaptive ``ato`` (Linux
    ``tcp_send_delayed_ack``): at least ``TCP_DELACK_MIN`` (40 ms), at most
    ``TCP_DELACK_MAX`` (200 ms) and never more than the SRTT.
    """
    if conn.quickack > 0 and not conn.pingpong:
        # tcp_in_quickack_mode: quick-ACK credits count only outside pingpong mode.
        conn.quickack -= 1
        conn.ack_now = True
    elif ((conn.rcv_nxt - conn.last_ack_sent + _HALF) & _SEQ_MASK) - _HALF > conn.rcv_mss:
        # seq_diff(rcv_nxt, last_ack_sent): more than one full segment unacknowledged.
        conn.ack_now = True
    elif conn.timers.delack is None:
        ato = conn.ato
        if ato > TCP_ATO_MIN:
            limit = TCP_DELACK_MAX
            srtt = conn.rtt.srtt
            if srtt:
                srtt = max(srtt, TCP_ATO_MIN)
                if srtt < limit:
                    limit = srtt
            if ato > limit:
                ato = limit
        # Else ato as it is: TCP_ATO_MIN once data arrived; 0 before (a FIN
        # on a connection that never received data is ACKed at once).
        conn.timers.delack = now + ato


def measure_rcv_mss(conn: TcpConnection, n: int, flags: int, header_len: int) -> None:
    """Linux ``tcp_measure_rcv_mss``: the peer's segment size, from ``n`` payload bytes.

    A segment at least ``rcv_mss`` long sets it (capped by ``advmss``). A
    shorter one lowers it only when two in a row give the same size, and
    only when the segment looks full-sized: with its TCP header at least
    ``TCP_MSS_DEFAULT + 20`` bytes, or ``TCP_MIN_MSS + 20`` without FIN,
    URG, SYN or PSH (``TCP_REMNANT``: a sender marks the last, short piece
    of a write with PSH). The size kept is the header-length invariant
    one: ``n + header_len - tcp_header_len`` (20, or 32 with timestamps), so
    SACK blocks do not make it jitter. ``rcv_mss`` rounds the window
    offered (``__tcp_select_window``) and paces ACKs (one per two full
    segments), so a peer sending small segments gets Linux's window.
    ``header_len`` is the segment's data offset in bytes; ``flags`` its
    control bits. The fast path calls this too (keep one rule).
    """
    lss = conn.last_seg_size
    conn.last_seg_size = 0
    if n >= conn.rcv_mss:
        conn.rcv_mss = n if n < conn.advmss else conn.advmss
        return
    full = n + header_len
    if full >= _TCP_MSS_DEFAULT + _TH_LEN or (
        full >= _TCP_MIN_MSS + _TH_LEN and not flags & _TCP_REMNANT
    ):
        n = full - (_TH_LEN + TS_OPTION_LEN if conn.ts_ok else _TH_LEN)
        conn.last_seg_size = n
        if n == lss:
            conn.rcv_mss = n
            # The buffer's copy (the scaling-ratio measure and tcp_grow_window's
            # increment use icsk_ack.rcv_mss): a longer segment measures again.
            conn.rcvbuf.ratio_mss = n


def _text_and_fin(
    conn: TcpConnection,
    now: float,
    seq: int,
    payload: memoryview | bytes,
    fin: bool,
    flags: int,
    header_len: int,
) -> None:
    """Steps seven and eight: queue the text, then process a FIN (RFC 9293 3.10.7.4).

    ``flags`` and ``header_len`` (data offset, bytes) are the segment's, for
    :func:`measure_rcv_mss`.
    """
    st = conn.state
    plen = len(payload)
    if st not in (TcpState.ESTABLISHED, TcpState.FIN_WAIT1, TcpState.FIN_WAIT2):
        # CLOSE-WAIT, CLOSING, LAST-ACK: the peer's FIN was already
        # processed; this is a retransmission. Acknowledge it.
        conn.ack_now = True
        return
    rb = conn.rcvbuf
    if plen:
        rcv_nxt = conn.rcv_nxt
        # seq_diff(seq + plen, right edge of the window), written out, with
        # conn.rwnd.receive_window(rcv_nxt) (the window open from rcv_nxt).
        rwnd = conn.rwnd
        win = rwnd.rcv_wnd - (((rcv_nxt - rwnd.rcv_wup + _HALF) & _SEQ_MASK) - _HALF)
        edge = rcv_nxt + (win if win > 0 else 0)
        over = ((seq + plen - edge + _HALF) & _SEQ_MASK) - _HALF
        if over > 0:
            # Trim what lies beyond the window (RFC 9293 3.10.7.4 first step).
            fin = False
            payload = payload[: max(plen - over, 0)]
        n = len(payload)
        if n:
            had_ooo = rb._ooo is not None  # rb.has_out_of_order, without the call
            delivered, queued, dsack, dropped = rb.insert(seq, payload)
            if delivered:
                # Linux tcp_event_data_recv: in-order data only (not queued
                # out of order). The fast path calls it the same way.
                measure_rcv_mss(conn, n, flags, header_len)
                # (fastpath.on_segment writes this branch out for in-order data
                # on an idle sender: keep the two equal.)
                conn.rcv_nxt = rb._nxt  # rb.rcv_nxt, without the property call
                conn.bytes_received += delivered
                conn.last_data_recv = now
                conn.events |= EV_READABLE
                estimate_ato(conn, now)
                if conn.rcvbuf_auto:
                    _rcv_rtt_measure(conn, now, n)
                if rwnd.rcv_ssthresh < rwnd.window_clamp:  # else grow() has nothing to do
                    rwnd.grow(n, advmss=conn.advmss, free_space=rb.free_space)
            if queued or dsack is not None or dropped or had_ooo or rb._ooo is not None:
                # Out of order, duplicate, or a hole just filled: ACK at
                # once (RFC 5681 4.2; Linux enters quick-ACK mode).
                conn.ack_now = True
            else:
                _schedule_ack(conn, now)
        else:
            conn.ack_now = True
    if fin:
        conn.peer_fin_seq = seq_add(seq, plen)
    pf = conn.peer_fin_seq
    if pf is not None and not conn.fin_received and rb.rcv_nxt == pf:
        _fin_arrives(conn, now)


def estimate_ato(conn: TcpConnection, now: float) -> None:
    """Linux ``tcp_event_data_recv``: the delayed-ACK timeout from inter-arrival times.

    Runs for in-order data on both paths (the fast path calls it too). A gap
    under half the minimum keeps ato near the minimum, one under ato pulls
    it towards the gap (never above the RTO), and a pause longer than the
    RTO means the sender restarts, so the next segments are ACKed at once.
    """
    ato = conn.ato
    if not ato:
        conn.ato = TCP_ATO_MIN
    else:
        gap = now - conn.lrcvtime
        if gap <= _ATO_HALF:
            conn.ato = ato / 2 + _ATO_HALF
        elif gap < ato:
            ato = ato / 2 + gap
            rto = conn.rtt.rto
            conn.ato = ato if ato < rto else rto
        elif gap > conn.rtt.rto:
            conn.quickack = TCP_MAX_QUICKACKS
    conn.lrcvtime = now


def _rcv_rtt_measure(conn: TcpConnection, now: float, seg_len: int) -> None:
    """The receiver's RTT for auto-tuning (Linux ``tcp_rcv_rtt_measure``/``_ts``).

    With timestamps, a full-sized segment's echo of our TSval gives a
    sample; without, the time for ``rcv_nxt`` to advance by one window.
    """
    tsecr = conn.rcv_rtt_tsecr
    if conn.ts_ok and tsecr:
        # Each echo once (Linux rcv_rtt_last_tsecr, kept in rcv_rtt_seq):
        # later segments of a burst echo the same, older, value.
        if seg_len >= conn.rcv_mss and tsecr != conn.rcv_rtt_seq:
            conn.rcv_rtt_seq = tsecr
            delta = (tcp_time_stamp(now, conn.ts_offset) - tsecr) & _SEQ_MASK
            if delta < _HALF:
                conn.rcv_rtt_sample(max(delta, 1) / 1000, win_dep=False)
        return
    started = conn.rcv_rtt_time
    if started is not None and seq_lt(conn.rcv_nxt, conn.rcv_rtt_seq):
        return
    if started is not None:
        conn.rcv_rtt_sample(now - started, win_dep=True)
    conn.rcv_rtt_seq = seq_add(conn.rcv_nxt, conn.rwnd.rcv_wnd)
    conn.rcv_rtt_time = now


def _fin_arrives(conn: TcpConnection, now: float) -> None:
    """Step eight: the peer's FIN is next in sequence (RFC 9293 3.10.7.4)."""
    conn.fin_received = True
    conn.rcv_nxt = seq_add(conn.rcvbuf.rcv_nxt, 1)
    conn.events |= EV_READABLE
    st = conn.state
    if st is TcpState.ESTABLISHED:
        conn.set_state(TcpState.CLOSE_WAIT, Event.RCV_FIN)
        # Linux tcp_fin enters pingpong mode: the ACK is delayed, hoping
        # to ride on our own FIN or reply.
        conn.pingpong = True
        _schedule_ack(conn, now)
        return
    conn.ack_now = True
    if st is TcpState.FIN_WAIT1:
        # Our FIN is not yet acknowledged (else we would be in FIN-WAIT-2):
        # simultaneous close.
        conn.set_state(TcpState.CLOSING, Event.RCV_FIN)
    elif st is TcpState.FIN_WAIT2:
        conn.set_state(TcpState.TIME_WAIT, Event.RCV_FIN)
        conn.timers.fin_wait2 = None
        conn.enter_time_wait(now)
