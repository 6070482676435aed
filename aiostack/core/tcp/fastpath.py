"""The ESTABLISHED fast path: a bulk transfer's segments without the general machinery.

Linux splits TCP's hot path from its rules: ``tcp_rcv_established`` first
tries *header prediction* (the next in-order segment, flags just ACK, the
window unchanged, timestamps passing PAWS) and handles it in a few lines;
``tcp_ack`` has a fast branch for a pure in-order ACK; ``tcp_write_xmit``
cuts the next full-sized skb with little more than a cwnd and window test.
This module is aiostack's version of the three, for the control block of
:mod:`.connection`:

:func:`on_segment`
    *Receiver*: in-order data on a connection with nothing outstanding
    (every data segment of a one-way transfer): the payload is queued,
    ``rcv_nxt``, ``ts_recent``, the delayed-ACK estimator (``ato``,
    ``rcv_mss``, quick-ACK credits, an ACK for every two full segments),
    the receiver's RTT for auto-tuning and the window growth run, and
    nothing else. *Sender*: a pure ACK of new data outside recovery: the
    send buffer is freed, the RTT sampled, the RTO and PTO re-armed,
    RACK's log and the SACK scoreboard advanced, congestion control (CUBIC
    with HyStart++, or Reno) grows the window and the writer is woken
    (:func:`rcv_ack`).
:func:`transmit`
    The next full-sized segment of new data when the windows allow it, a
    pure ACK when one is owed, or nothing.

Each function checks its entry conditions first and hands anything else,
unchanged, to the general path (:func:`.input.segment_arrives`,
:func:`.output.transmit`); nothing is changed before that decision. The
entry conditions exclude every recovery and loss state (``loss_mode``,
SACK or NewReno recovery, an undo or F-RTO episode, RACK's flagged
segments or reordering timer, an outstanding tail loss probe), urgent data, a FIN on
either side, SACK blocks and D-SACK, TSO and partial segments (Nagle, SWS
avoidance, cork), so those stay with the general rules alone. Where the
fast path needs a rule it calls the same function the general path calls
(the window choice and :func:`.output.build`, PSH marking, the accounting
of a segment sent, the RTT estimator, congestion control, RACK, the
scoreboard, the loss probe, the receive window's growth), and where it
writes a rule out in line, the general function is named next to it:
keep the two equal. ``tests/core/tcp/test_fast_path.py`` runs random
transfers over a lossy, reordering channel with :data:`ENABLED` on and
off and asserts the same segments, ``tcp_info``, counters and bytes.
"""

from __future__ import annotations

from math import floor as _floor
from typing import TYPE_CHECKING

from aiostack.core.tcp import output
from aiostack.core.tcp.input import (
    _newreno_ack,
    _rcv_rtt_measure,
    _schedule_ack,
    estimate_ato,
    measure_rcv_mss,
    segment_arrives,
)
from aiostack.core.tcp.isn import TCP_TS_HZ
from aiostack.core.tcp.loss import schedule_loss_probe
from aiostack.core.tcp.output import build, mark_push, sent_new_data
from aiostack.core.tcp.state import EV_READABLE, EV_WRITABLE
from aiostack.wire import tcp as wtcp

if TYPE_CHECKING:
    from aiostack.core.tcp.connection import TcpConnection
    from aiostack.core.tcp.output import Segment
    from aiostack.wire.tcp import TcpHeader

__all__ = ["ENABLED", "on_segment", "rcv_ack", "transmit"]

#: The switch: False sends every segment through the general path (the
#: keep-equal tests compare the two; it is read on every call).
ENABLED = True

_ACK = wtcp.ACK
_ACK_PSH = wtcp.ACK | wtcp.PSH
_SEQ_MASK = 0xFFFFFFFF
_HALF = 1 << 31
#: ``output.TS_OPTION_LEN``: the ``nop, nop, TS`` block.
_TS_LEN = output.TS_OPTION_LEN
_general_transmit = output.transmit


def on_segment(
    conn: TcpConnection, now: float, hdr: TcpHeader, payload: memoryview | bytes
) -> Segment | None:
    """``on_segment`` in ESTABLISHED: the fast path when it applies, else the general one.

    In-order data with nothing outstanding is handled here (the receiver's
    every segment, so without a further call); a pure ACK of new data
    outside recovery in :func:`rcv_ack`.
    """
    flags = hdr.flags
    seq = hdr.seq
    # Header prediction (Linux tcp_rcv_established): flags ACK (+PSH), the
    # next sequence number, no urgent data, no FIN seen.
    if (
        (flags != _ACK and flags != _ACK_PSH)
        or seq != conn.rcv_nxt
        or conn.urg_data
        or conn.peer_fin_seq is not None
    ):
        return segment_arrives(conn, now, hdr, payload)
    opts = hdr.options
    ts: tuple[int, int] | None = None
    if conn.ts_ok:
        ts = opts.timestamps
        # PAWS (RFC 7323 5.3): TSval not older than ts_recent.
        if ts is None or (ts[0] - conn.ts_recent) & _SEQ_MASK >= _HALF:
            return segment_arrives(conn, now, hdr, payload)
    if opts.sack_blocks:
        return segment_arrives(conn, now, hdr, payload)
    ack = hdr.ack
    una = conn.snd_una
    plen = len(payload)
    if not plen:
        return rcv_ack(conn, now, hdr, ts, seq, ack, una)
    # In-order data, nothing outstanding, the peer's window unchanged:
    # segment_arrives's header prediction with _process_ack's first branch
    # and _text_and_fin's in-order branch, written out. The segment goes to
    # the general path (nothing changed yet) unless the payload fits the
    # window and the receive buffer takes it as the next bytes in order.
    rwnd = conn.rwnd
    rb = conn.rcvbuf
    # rwnd.receive_window(seq) (seq == rcv_nxt), as _text_and_fin's trim;
    # a distance from rcv_wup that reads negative fails the test (general path).
    if (
        ack != una
        or una != conn.snd_nxt
        or hdr.window << conn.snd_wscale != conn.snd_wnd
        or plen > rwnd.rcv_wnd - ((seq - rwnd.rcv_wup) & _SEQ_MASK)
        or not rb.append_next(seq, payload)
    ):
        return segment_arrives(conn, now, hdr, payload)
    conn.segs_in += 1
    conn.last_recv = now
    if ts is not None:
        if seq == rwnd.rcv_wup:
            conn.ts_recent = ts[0]  # RFC 7323 4.3
        if conn.rcvbuf_auto:
            conn.rcv_rtt_tsecr = ts[1]
    conn.last_ack_recv = now
    conn.probes = 0
    conn.more = False
    # _update_send_window(conn, seq, ack, window, False) with the window
    # unchanged (an entry condition): SND.WL1/WL2 move on a newer segment.
    wl1 = conn.snd_wl1
    if 0 < (seq - wl1) & _SEQ_MASK < _HALF or (seq == wl1 and not conn.snd_wnd):
        window = conn.snd_wnd
        conn.snd_wl1 = seq
        conn.snd_wl2 = ack
        if window > conn.max_window:
            conn.max_window = window
        if window > 0 and conn.timers.persist is not None:
            conn.timers.persist = None
            conn.persist_backoff = 0
    # _text_and_fin's delivered branch.
    if plen != conn.rcv_mss or conn.last_seg_size:
        # (A full-sized segment after another changes nothing: no call.)
        measure_rcv_mss(conn, plen, flags, hdr.header_len)
    rcv_nxt = conn.rcv_nxt = rb._nxt
    conn.bytes_received += plen
    conn.last_data_recv = now
    conn.events |= EV_READABLE
    estimate_ato(conn, now)
    if conn.rcvbuf_auto:
        # _rcv_rtt_measure's early return with timestamps, tested here.
        tsecr = conn.rcv_rtt_tsecr
        if not (conn.ts_ok and tsecr) or (plen >= conn.rcv_mss and tsecr != conn.rcv_rtt_seq):
            _rcv_rtt_measure(conn, now, plen)
    if rwnd.rcv_ssthresh < rwnd.window_clamp:
        free = ((rb.rcvbuf - rb.rmem) * rb.scaling_ratio) >> 8  # rb.free_space
        rwnd.grow(plen, conn.advmss, free if free > 0 else 0)
    # _schedule_ack: quick ACK, or an ACK for more than one full segment
    # unacknowledged (Linux __tcp_ack_snd_check), else the delayed ACK.
    if conn.quickack > 0 and not conn.pingpong:
        conn.quickack -= 1
        conn.ack_now = True
    elif conn.rcv_mss < (rcv_nxt - conn.last_ack_sent) & _SEQ_MASK < _HALF:
        conn.ack_now = True
    elif conn.timers.delack is None:
        _schedule_ack(conn, now)
    return None


def rcv_ack(
    conn: TcpConnection,
    now: float,
    hdr: TcpHeader,
    ts: tuple[int, int] | None,
    seq: int,
    ack: int,
    una: int,
) -> Segment | None:
    """A pure ACK of new data outside recovery: _process_ack for that case, written out."""
    snd_nxt = conn.snd_nxt
    acked = (ack - una) & _SEQ_MASK  # seq_diff(ack, snd_una) when in [1, snd_nxt - snd_una]
    sb = conn.sb
    rack = conn.rack
    if (
        not acked
        or acked > (snd_nxt - una) & _SEQ_MASK  # old, or beyond snd_nxt
        or conn.loss_mode
        or conn.undo_episode
        or conn.frto
        or conn.fin_sent
        or (
            conn.recovery.in_recovery
            if sb is None
            else (
                rack is None
                or sb.in_recovery
                or rack.special
                or rack.tlp_high_seq is not None
                or conn.timers.reorder is not None
            )
        )
    ):
        return segment_arrives(conn, now, hdr, b"")
    window = hdr.window << conn.snd_wscale
    conn.segs_in += 1
    conn.last_recv = now
    if ts is not None and seq == conn.rwnd.rcv_wup:
        conn.ts_recent = ts[0]  # RFC 7323 4.3
    conn.last_ack_recv = now
    conn.probes = 0
    conn.more = False
    if sb is not None:
        # The scoreboard's HighData is already snd_nxt: every sender of new
        # data records it (sb.on_send), so _process_ack's call is skipped.
        # RFC 6675 pipe before the ACK (conn.in_flight_bytes() outside loss_mode).
        prior_flight = sb.pipe()
        if prior_flight < 0:
            prior_flight = 0
        sb.update(ack, hdr.options.sack_blocks)  # the cumulative ACK; no blocks
    else:
        # conn.in_flight_bytes() outside loss_mode and NewReno recovery.
        prior_flight = (snd_nxt - una) & _SEQ_MASK
    freed = conn.sndbuf.ack(ack)
    conn.snd_una = ack
    if (conn.rtx_nxt - ack) & _SEQ_MASK >= _HALF:  # seq_lt(rtx_nxt, ack)
        conn.rtx_nxt = ack
    if freed:
        conn.bytes_acked += freed
        conn.events |= EV_WRITABLE
    # RTT (RFC 6298 with Karn's rule; RFC 7323 4.1 RTTM), as _process_ack.
    sample_ts = None
    if ts is not None and ts[1]:
        # ts_rtt(tcp_time_stamp(now, conn.ts_offset), ts[1]) written out
        # (once per ACK): the echo's age in ticks, None from the future.
        delta = (_floor(now * TCP_TS_HZ) + conn.ts_offset - ts[1]) & _SEQ_MASK
        if delta < _HALF:
            sample_ts = (delta if delta > 1 else 1) / TCP_TS_HZ
    seq_rtt = None
    rtt_time = conn.rtt_time
    if rtt_time is not None and 0 < (ack - conn.rtt_seq) & _SEQ_MASK < _HALF:  # seq_gt
        seq_rtt = now - rtt_time
        conn.rtt_time = None
    sample = None
    if seq_rtt is not None or sample_ts is not None:
        sample = conn.rtt.on_ack(
            now, snd_una=ack, snd_nxt=snd_nxt, seq_rtt=seq_rtt, ts_rtt=sample_ts
        )
    conn.retransmits = 0
    conn.rtx_start = None
    mss = conn.mss_clamp - (_TS_LEN if conn.ts_ok else 0)  # conn.snd_mss
    acked_segs = (acked + mss - 1) // mss
    if sb is None:
        _newreno_ack(conn, now, ack, acked_segs, sample, prior_flight)
    if ack == snd_nxt:
        conn.timers.retransmit = None
        conn.timers.loss_probe = None
    else:
        conn.arm_retransmit(now)
        if rack is not None:
            rack.pto_base = now  # RFC 8985 7.2: the PTO restarts with each ACK of new data
            if conn.timers.loss_probe is None:
                schedule_loss_probe(conn, now)
    if rack is not None:
        rack.on_clean_ack(now, ack)
        # _sack_recovery outside recovery, with acked_segs >= 1 and nothing SACKed.
        conn.sack_dupacks = 0
        cc = conn.cc
        # _cwnd_limited(conn, prior_flight), written out.
        cwnd_bytes = cc.cwnd * mss
        if cc.cwnd < cc.ssthresh:
            limited = 2 * prior_flight >= cwnd_bytes
        else:
            limited = prior_flight + mss > cwnd_bytes
        cc.on_ack(now, acked_segs, rtt=sample, cwnd_limited=limited, snd_una=ack, snd_nxt=snd_nxt)
    # _update_send_window(conn, seq, ack, window, True): an ACK of new data
    # always takes the window.
    conn.snd_wnd = window
    conn.snd_wl1 = seq
    conn.snd_wl2 = ack
    if window > conn.max_window:
        conn.max_window = window
    if window > 0 and conn.timers.persist is not None:
        conn.timers.persist = None
        conn.persist_backoff = 0
    return None


def transmit(conn: TcpConnection, now: float) -> Segment | None:
    """``transmit`` in ESTABLISHED: a full segment of new data, an owed ACK, or nothing.

    Anything else (an RST, a probe, a retransmission, a partial segment, a
    window or cwnd that does not allow a full one, TSO) is the general
    :func:`.output.transmit`'s.
    """
    if (
        conn.rst_pending
        or conn.syn_pending
        or conn.probe_pending
        or conn.tlp_pending
        or conn.rtx_head
        or conn.loss_mode
        or conn.frto
        or conn.fin_queued
    ):
        return _general_transmit(conn, now)
    sb = conn.sb
    if sb is not None and sb.in_recovery:
        return _general_transmit(conn, now)
    sbuf = conn.sndbuf
    snd_nxt = conn.snd_nxt
    data_end = (sbuf._una + sbuf._end - sbuf._base) & _SEQ_MASK  # sbuf.end_seq
    if data_end == snd_nxt:
        # Nothing unsent: the general path's last step, an owed ACK.
        if conn.ack_now:
            conn.counters.TcpOutSegs += 1
            return build(conn, now, snd_nxt, _ACK, b"")
        return None
    rb = conn.rcvbuf
    if conn.gso_max_size or rb.dsack is not None or rb._ooo is not None:
        return _general_transmit(conn, now)
    # _new_data for a full segment: the TS block alone as options (nothing
    # to SACK), no half-window bound, a full segment unsent and in the window.
    maxp = conn.mss_clamp - (_TS_LEN if conn.ts_ok else 0)
    snd_una = conn.snd_una
    if (
        conn.max_window < maxp << 1
        or not maxp <= (data_end - snd_nxt) & _SEQ_MASK < _HALF  # unsent
        or not maxp <= (snd_una + conn.snd_wnd - snd_nxt) & _SEQ_MASK < _HALF  # window room
    ):
        return _general_transmit(conn, now)
    cc = conn.cc
    if sb is not None:
        # conn.in_flight_bytes() with SACK outside loss_mode: RFC 6675's pipe
        # (HighData is already snd_nxt, see rcv_ack).
        in_flight = sb.pipe()
        if in_flight < 0:
            in_flight = 0
    elif conn.recovery.in_recovery:
        return _general_transmit(conn, now)
    else:
        in_flight = (snd_nxt - snd_una) & _SEQ_MASK  # conn.in_flight_bytes()
    if in_flight >= (cc.cwnd + conn.limited_transmit) * maxp:
        return _general_transmit(conn, now)  # cwnd-limited: an owed ACK, or nothing
    if snd_una == snd_nxt and conn.settings.tcp_slow_start_after_idle and conn.last_data_sent:
        cc.restart_after_idle(now, conn.last_data_sent, conn.rtt.rto)
    if now - conn.lrcvtime < conn.ato:
        conn.pingpong = True  # Linux tcp_event_data_sent
    payload = sbuf.peek_next(snd_nxt, maxp)
    end = (snd_nxt + maxp) & _SEQ_MASK
    # mark_push's usual answer tested here (saves its call): not the last
    # bytes, inside the open pacing chunk and not its last segment: no PSH.
    # Anything else asks mark_push, which tests the same again.
    chunk = conn.tso_chunk
    if (
        end != data_end
        and chunk is not None
        and (snd_nxt - chunk[0]) & _SEQ_MASK < (chunk[1] - chunk[0]) & _SEQ_MASK
        and not (chunk[2] and (end - chunk[1]) & _SEQ_MASK < _HALF)
    ):
        flags = _ACK
    else:
        flags = _ACK | mark_push(conn, end, data_end, snd_una, False)
    seg = build(conn, now, snd_nxt, flags, payload)
    sent_new_data(conn, now, snd_nxt, end, maxp, maxp)
    return seg
