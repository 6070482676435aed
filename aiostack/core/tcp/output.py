"""What one TCP connection should send now (Linux ``tcp_output.c``).

Output is pulled (smoltcp's ``dispatch``): :func:`transmit` looks at the
connection's state and returns at most one :class:`Segment`, so an ACK owed
for received data, a window update and new data merge into one segment on
their own. The order of preference, highest first:

1. an RST owed by ``abort``/``close`` (``tcp_send_active_reset``);
2. the SYN or SYN-ACK (first transmission or retransmission);
3. a keepalive or zero-window probe (``tcp_xmit_probe_skb``, ``tcp_write_wakeup``),
   then a tail loss probe once the PTO fired (RFC 8985 7.3,
   ``tcp_send_loss_probe``: new data beyond cwnd, else the last segment);
4. a retransmission: NewReno's fast retransmission of the first
   unacknowledged segment, in SACK recovery a retransmission RACK found
   lost or RFC 6675's ``NextSeg``, or, after a timeout, the next segment of
   the pass from ``snd_una``;
5. new data, segmented to the MSS actually usable after this segment's
   options, subject to the receive window, the congestion window, sender
   silly-window avoidance (RFC 9293 3.8.6.2.1), Nagle (RFC 896 with
   Minshall's variant, as Linux's ``tcp_nagle_test``), ``TCP_NODELAY`` and
   ``TCP_CORK``; PSH on the segment that empties the send buffer (the last
   segment of a write, Linux's ``tcp_mark_push``); the FIN rides on the
   last data segment when it fits (``tcp_send_fin``);
6. a FIN alone;
7. a pure ACK, when one is owed now (quick ACK, out-of-order data, the
   delayed-ACK timer, a window update after a read).

Every segment with ACK set clears the owed ACK and the delayed-ACK timer
(Linux ``tcp_event_ack_sent``), because it carries the same information.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from aiostack.core.tcp.isn import tcp_time_stamp
from aiostack.core.tcp.loss import note_retransmit, schedule_loss_probe
from aiostack.core.tcp.pacing import open_chunk
from aiostack.core.tcp.rack import Rack
from aiostack.core.tcp.sack import NextSeg, NextSegRule, SackScoreboard
from aiostack.core.tcp.state import TcpState
from aiostack.wire import tcp as wtcp
from aiostack.wire.seqnum import seq_add, seq_diff, seq_ge, seq_gt, seq_le, seq_lt, seq_sub

if TYPE_CHECKING:
    from aiostack.core.tcp.connection import TcpConnection

__all__ = ["Segment", "build", "mark_push", "reset_for", "sent_new_data", "start_rack", "transmit"]

_SYN = wtcp.SYN
_ACK = wtcp.ACK
_FIN = wtcp.FIN
_RST = wtcp.RST
_PSH = wtcp.PSH
_SEQ_MASK = 0xFFFFFFFF
_HALF = 1 << 31
_new_segment = object.__new__
#: ``connection.TS_OPTION_LEN`` (``nop, nop, TS``), for snd_mss written out
#: (connection imports this module, so it cannot be imported from there).
TS_OPTION_LEN = 12
# Module-level aliases: a global lookup instead of an enum attribute per test.
_CLOSE = TcpState.CLOSE
_LISTEN = TcpState.LISTEN
_SYN_SENT = TcpState.SYN_SENT
_SYN_RECV = TcpState.SYN_RECV
_TIME_WAIT = TcpState.TIME_WAIT

#: States in which new data may still be sent (RFC 9293 3.10.2: SEND is
#: allowed in ESTABLISHED and CLOSE-WAIT; data queued before the FIN still
#: goes out in FIN-WAIT-1, CLOSING and LAST-ACK).
_DATA_STATES = frozenset(
    (
        TcpState.ESTABLISHED,
        TcpState.CLOSE_WAIT,
        TcpState.FIN_WAIT1,
        TcpState.CLOSING,
        TcpState.LAST_ACK,
    )
)


class Segment:
    """One segment to send: the shell builds the packet with :func:`aiostack.wire.tcp.emit_into`.

    ``window`` is the 16-bit header field (already scaled down by our
    window scale); ``options`` is encoded in Linux's order; ``payload`` is
    ``bytes`` or a read-only ``memoryview`` into the send buffer.
    """

    __slots__ = (
        "ack",
        "dst_port",
        "flags",
        "options",
        "payload",
        "seq",
        "src_port",
        "urgent",
        "window",
    )

    def __init__(
        self,
        src_port: int,
        dst_port: int,
        seq: int,
        ack: int,
        flags: int,
        window: int,
        options: bytes = b"",
        payload: bytes | memoryview = b"",
        urgent: int = 0,
    ) -> None:
        self.src_port = src_port
        self.dst_port = dst_port
        self.seq = seq
        self.ack = ack
        self.flags = flags
        self.window = window
        self.options = options
        self.payload = payload
        #: The urgent pointer field (meaningful with URG in ``flags``).
        self.urgent = urgent

    @property
    def seg_len(self) -> int:
        """Sequence space used: payload plus one each for SYN and FIN (RFC 9293 3.4)."""
        return len(self.payload) + (1 if self.flags & _SYN else 0) + (self.flags & _FIN)

    def parsed_options(self) -> wtcp.TcpOptions:
        """The options decoded again (for tests and logs)."""
        return wtcp.parse_options(self.options)

    def to_header(self) -> wtcp.TcpHeader:
        """This segment as a parsed header, as the peer would see it (tests, loopback)."""
        return wtcp.TcpHeader(
            self.src_port,
            self.dst_port,
            self.seq,
            self.ack,
            wtcp.HEADER_LEN + len(self.options),
            self.flags,
            self.window,
            0,
            self.urgent,
            self.parsed_options(),
        )

    def __repr__(self) -> str:
        opts = f" opts={self.options.hex()}" if self.options else ""
        return (
            f"<Segment {self.src_port}>{self.dst_port} [{wtcp.flags_str(self.flags)}] "
            f"seq={self.seq} ack={self.ack} win={self.window} len={len(self.payload)}{opts}>"
        )


def reset_for(header: wtcp.TcpHeader, payload_len: int) -> Segment | None:
    """The RST answering a segment that has no connection (RFC 9293 3.10.7.1).

    Never for an RST (answering RSTs with RSTs lets two stacks loop). If the
    segment had ACK: ``<SEQ=SEG.ACK><CTL=RST>``; otherwise
    ``<SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>``. Window 0, no options,
    like Linux's ``tcp_v4_send_reset``.
    """
    flags = header.flags
    if flags & _RST:
        return None
    if flags & _ACK:
        return Segment(header.dst_port, header.src_port, header.ack, 0, _RST, 0)
    seg_len = payload_len + (1 if flags & _SYN else 0) + (flags & _FIN)
    ack = seq_add(header.seq, seg_len)
    return Segment(header.dst_port, header.src_port, 0, ack, _RST | _ACK, 0)


def _option_blocks(conn: TcpConnection) -> int:
    """How many SACK blocks the next ACK will carry (without consuming a D-SACK)."""
    if not conn.sack_ok:
        return 0
    rb = conn.rcvbuf
    if not rb.has_out_of_order and rb.dsack is None:
        return 0
    limit = 3 if conn.ts_ok else 4
    n = 1 if rb.dsack is not None else 0
    return min(limit, n + len(rb.sack_blocks(limit)))


def option_len(conn: TcpConnection) -> int:
    """Bytes of options on the next non-SYN segment (Linux ``tcp_established_options``)."""
    n = 12 if conn.ts_ok else 0
    rb = conn.rcvbuf
    if rb.dsack is None and not rb.has_out_of_order:
        return n  # nothing to SACK (what _option_blocks would find, without the call)
    blocks = _option_blocks(conn)
    if blocks:
        n += 4 + 8 * blocks
    return n


def _bound_to_half_wnd(conn: TcpConnection, maxp: int) -> int:
    """Cap a segment at half the peer's largest window (Linux ``tcp_bound_to_half_wnd``).

    RFC 1122 4.2.3.4 sender SWS avoidance: against a peer offering small
    windows, segments of half its window keep data flowing; a window of at
    most 536 bytes is used whole.
    """
    mw = conn.max_window
    cutoff = mw >> 1 if mw > 536 else mw
    if cutoff and maxp > cutoff:
        return max(cutoff, 48)  # 68 - the 20-byte header, as Linux
    return maxp


#: The last ``nop, nop, TS`` block built and what it was built from:
#: ``(now, ts_offset, ts_recent, block)``. The block is a pure function of
#: those three, and the segments of a batch share ``now`` (and the TSval ticks
#: once per millisecond), so a connection's consecutive segments reuse it
#: instead of computing the TSval and packing the bytes again. One tuple,
#: replaced whole, so a reader never sees a half-updated entry.
_ts_block: tuple[float, int, int, bytes] = (-1.0, 0, 0, b"")


def _ts_option(now: float, ts_offset: int, ts_recent: int) -> bytes:
    """The ``nop, nop, TS`` block for these inputs, built and remembered in ``_ts_block``."""
    global _ts_block
    block = wtcp.encode_timestamps(tcp_time_stamp(now, ts_offset), ts_recent)
    _ts_block = (now, ts_offset, ts_recent, block)
    return block


def _options(conn: TcpConnection, now: float) -> bytes:
    """Options of a non-SYN segment: ``nop, nop, TS`` then ``nop, nop, SACK`` (RFC 7323, 2018)."""
    rb = conn.rcvbuf
    # rb._ooo is None: rb.has_out_of_order without the property call (per segment).
    if rb.dsack is None and rb._ooo is None:
        # Nothing to SACK, the usual segment: timestamps alone, or nothing.
        if conn.ts_ok:
            off = conn.ts_offset
            recent = conn.ts_recent
            memo = _ts_block
            if memo[0] == now and memo[1] == off and memo[2] == recent:
                return memo[3]
            return _ts_option(now, off, recent)
        return b""
    ts = (tcp_time_stamp(now, conn.ts_offset), conn.ts_recent) if conn.ts_ok else None
    blocks: tuple[tuple[int, int], ...] = ()
    if conn.sack_ok and (rb.has_out_of_order or rb.dsack is not None):
        if not conn.settings.tcp_dsack:
            rb.dsack = None
        dsack = rb.dsack
        blocks = tuple(rb.ack_blocks(3 if ts is not None else 4))
        if dsack is not None:
            # RFC 2883: the duplicate goes first, once (Linux tcp_dsack_set's counters).
            if seq_lt(dsack[0], conn.rcv_nxt):
                conn.counters.TcpExtTCPDSACKOldSent += 1
            else:
                conn.counters.TcpExtTCPDSACKOfoSent += 1
    elif rb.dsack is not None:
        rb.dsack = None
    if ts is None and not blocks:
        return b""
    return wtcp.encode_options(timestamps=ts, sack_blocks=blocks)


def build(
    conn: TcpConnection,
    now: float,
    seq: int,
    flags: int,
    payload: bytes | memoryview,
    options: bytes | None = None,
) -> Segment:
    """Assemble a non-SYN segment of ``conn`` and account for it.

    The window is chosen now (Linux ``tcp_select_window``, which also
    records ``rcv_wup``); an ACK-bearing segment discharges any owed or
    delayed ACK.
    """
    if options is None:
        # _options's usual case written out (once per segment sent): nothing
        # to SACK and the remembered timestamps block still right.
        rb = conn.rcvbuf
        memo = _ts_block
        if (
            rb.dsack is None
            and rb._ooo is None
            and conn.ts_ok
            and memo[0] == now
            and memo[1] == conn.ts_offset
            and memo[2] == conn.ts_recent
        ):
            options = memo[3]
        else:
            options = _options(conn, now)
    if flags & _RST:
        window = 0
    else:
        # conn.window_field(), written out (once per segment sent), with
        # rb.free_space: the memory not in use, as window (tcp_space).
        rb = conn.rcvbuf
        free = ((rb.rcvbuf - rb.rmem) * rb.scaling_ratio) >> 8
        window = conn.rwnd.select(conn.rcv_nxt, free if free > 0 else 0, rb.capacity, conn.rcv_mss)
    ack = conn.rcv_nxt if flags & _ACK else 0
    if flags & _ACK:
        conn.ack_now = False
        conn.timers.delack = None
        conn.last_ack_sent = ack
    conn.segs_out += 1
    if flags & _RST:
        conn.counters.TcpOutRsts += 1
    urgent = 0
    if conn.snd_up is not None:
        flags, urgent = _urgent_pointer(conn, seq, flags)
    # Segment(...) with the fields stored here: no __init__ frame (every
    # segment sent; keep the field list equal to Segment.__init__).
    seg = _new_segment(Segment)
    seg.src_port = conn.local_port
    seg.dst_port = conn.remote_port
    seg.seq = seq
    seg.ack = ack
    seg.flags = flags
    seg.window = window
    seg.options = options
    seg.payload = payload
    seg.urgent = urgent
    return seg


def _urgent_pointer(conn: TcpConnection, seq: int, flags: int) -> tuple[int, int]:
    """URG and the pointer for a segment sent in urgent mode (Linux ``__tcp_transmit_skb``).

    Urgent mode lasts until ``snd_una`` reaches ``snd_up`` (``tcp_ack``);
    every segment starting before ``snd_up`` points at it, or at 0xFFFF
    when it is further than the 16-bit field reaches.
    """
    up = conn.snd_up
    assert up is not None
    if flags & _RST or seq_ge(conn.snd_una, up):
        if not flags & _RST:
            conn.snd_up = None
        return flags, 0
    if not seq_lt(seq, up):
        return flags, 0
    dist = seq_sub(up, seq)
    if dist < 0x10000:
        return flags | wtcp.URG, dist
    if seq_gt(seq_add(seq, 0xFFFF), conn.snd_nxt):
        return flags | wtcp.URG, 0xFFFF
    return flags, 0


def _syn(conn: TcpConnection, now: float) -> Segment:
    """The SYN (SYN-SENT) or SYN-ACK (SYN-RECEIVED), with options in Linux's order.

    A SYN-ACK carries only the options the SYN offered (negotiated in
    :meth:`TcpConnection.accept_syn_options`); the window in either is
    never scaled (RFC 7323 2.2).
    """
    conn.syn_pending = False
    ts = None
    if conn.ts_ok:
        ts = (tcp_time_stamp(now, conn.ts_offset), conn.ts_recent)
    active = conn.state is TcpState.SYN_SENT
    if active and ts is not None:
        ts = (ts[0], 0)
    options = wtcp.encode_options(
        mss=conn.advmss,
        sack_permitted=conn.sack_ok,
        timestamps=ts,
        wscale=conn.rcv_wscale if conn.wscale_ok else None,
    )
    flags = _SYN if active else _SYN | _ACK
    ack = 0 if active else conn.rcv_nxt
    if not active:
        conn.ack_now = False
        conn.timers.delack = None
        conn.last_ack_sent = ack
    first = conn.retransmits == 0
    conn.snd_nxt = conn.rtx_nxt = seq_add(conn.iss, 1)
    if first:
        conn.rtt_time, conn.rtt_seq = now, conn.iss
        conn.counters.TcpOutSegs += 1
    else:
        conn.rtt_time = None
    if conn.timers.retransmit is None:
        conn.arm_retransmit(now)
    conn.segs_out += 1
    window = min(conn.rwnd.rcv_wnd, 0xFFFF)
    return Segment(conn.local_port, conn.remote_port, conn.iss, ack, flags, window, options)


def _data_segment(conn: TcpConnection, now: float, seq: int, limit: int) -> Segment:
    """A segment of sent-before data starting at ``seq`` (a retransmission)."""
    options = _options(conn, now)
    maxp = _bound_to_half_wnd(conn, conn.mss_clamp - len(options))
    sent_end = conn.data_end if seq_lt(conn.data_end, conn.snd_nxt) else conn.snd_nxt
    n = min(maxp, seq_diff(sent_end, seq), limit)
    payload = conn.sndbuf.peek(seq, n) if n > 0 else b""
    n = len(payload)
    flags = _ACK
    end = seq_add(seq, n)
    marks = conn.psh_marks
    if marks and n:
        # Linux tcp_retransmit_skb resends the skb with its flags: PSH when
        # this piece ends data first sent with PSH (marks at or below
        # snd_una are acknowledged and dropped).
        una = conn.snd_una
        while marks and seq_le(marks[0], una):
            marks.popleft()
        for mark in marks:
            if seq_gt(mark, end):
                break
            if seq_gt(mark, seq):
                flags |= _PSH
                break
    if conn.fin_sent and end == conn.fin_seq and n < maxp:
        flags |= _FIN
    return build(conn, now, seq, flags, payload, options)


def _skip_sacked(sb: SackScoreboard, seq: int, limit: int) -> int:
    """The first sequence number at or after ``seq`` that the peer has not SACKed."""
    for start, end in sb.blocks():
        if seq_le(start, seq) and seq_lt(seq, end):
            seq = end
    return seq if seq_lt(seq, limit) else limit


def _retransmit(conn: TcpConnection, now: float) -> Segment | None:
    """The next retransmission, if one is due and allowed.

    NewReno: the head after three duplicate ACKs or a partial ACK
    (``rtx_head``). SACK: RFC 6675's first retransmission, then ``NextSeg``
    while the pipe leaves room in cwnd. After a timeout: the next segment of
    the pass from ``snd_una`` (SACKed ranges skipped).
    """
    sb = conn.sb
    ns: NextSeg | None = None
    timeout_pass = conn.loss_mode
    if conn.rtx_head:
        if (
            sb is None
            and conn.recovery.in_recovery
            and conn.in_flight_bytes() >= conn.cc.cwnd * conn.snd_mss
        ):
            # NewReno: the lost head waits for cwnd (tcp_xmit_retransmit_queue).
            return None
        conn.rtx_head = False
        seg = _data_segment(conn, now, conn.snd_una, 1 << 30)
    elif conn.loss_mode and seq_lt(conn.rtx_nxt, conn.snd_nxt):
        if conn.in_flight_bytes() >= conn.cc.cwnd * conn.snd_mss:
            return None
        if sb is not None:
            conn.rtx_nxt = _skip_sacked(sb, conn.rtx_nxt, conn.snd_nxt)
            if conn.rtx_nxt == conn.snd_nxt:
                conn.loss_mode = False
                return None
        seg = _data_segment(conn, now, conn.rtx_nxt, 1 << 30)
        end = seq_add(seg.seq, seg.seg_len)
        if seq_gt(end, conn.rtx_nxt):
            conn.rtx_nxt = end
        if sb is not None:
            conn.rtx_nxt = _skip_sacked(sb, conn.rtx_nxt, conn.snd_nxt)
        if conn.rtx_nxt == conn.snd_nxt:
            conn.loss_mode = False
    elif sb is not None and sb.in_recovery and not conn.loss_mode:
        rack = conn.rack
        if conn.sack_head is not None:
            ns, conn.sack_head = conn.sack_head, None
        elif rack is not None and rack.lost_rtx:
            # A retransmission RACK found lost (RFC 8985 6.2): send it again.
            if conn.in_flight_bytes() + conn.snd_mss > conn.cc.cwnd * conn.snd_mss:
                return None
            seq, length = rack.lost_rtx.pop(0)
            una = conn.snd_una
            if seq_lt(seq, una):  # partly acknowledged since it was found lost
                length -= seq_diff(una, seq)
                seq = una
            if length <= 0 or sb.is_sacked(seq, length):
                return None if not rack.lost_rtx else _retransmit(conn, now)
            seg = _data_segment(conn, now, seq, length)
            return _account_retransmit(conn, now, seg, None, sb)
        else:
            if conn.in_flight_bytes() + conn.snd_mss > conn.cc.cwnd * conn.snd_mss:
                return None
            ns = sb.next_seg(new_data=seq_diff(conn.data_end, conn.snd_nxt) > 0)
            if ns is None or ns.rule is NextSegRule.NEW:
                return None
        seg = _data_segment(conn, now, ns.seq, ns.length)
    else:
        return None
    if seg.seq == conn.snd_una and not timeout_pass:
        # Linux tcp_xmit_retransmit_queue re-arms the RTO when fast recovery
        # resends the head: the timer counts from that resend. (After a
        # timeout the timer handler armed it, clamped to any user timeout.)
        conn.timers.retransmit = None
    return _account_retransmit(conn, now, seg, ns, sb)


def _account_retransmit(
    conn: TcpConnection, now: float, seg: Segment, ns: NextSeg | None, sb: SackScoreboard | None
) -> Segment | None:
    """Book a retransmission: scoreboard, Karn, counters, PRR, undo, RACK's log, the timer."""
    n = seg.seg_len
    if n == 0:
        return None
    if ns is not None and sb is not None:
        sb.on_transmit(ns._replace(length=n))
    conn.rtt_time = None  # Karn: no timing across a retransmission (RFC 6298 3)
    conn.total_retrans += 1
    conn.counters.TcpRetransSegs += 1
    conn.cc.on_transmit(1)
    note_retransmit(conn, now, seg.seq, n)
    if conn.timers.retransmit is None:
        conn.arm_retransmit(now)
    return seg


def _new_data(
    conn: TcpConnection, now: float, *, force: bool = False, loss_probe: bool = False
) -> Segment | None:
    """The next new-data segment if the windows, SWS avoidance and Nagle allow one.

    ``force`` is the zero-window probe of an open but small window
    (``tcp_write_wakeup``): send what fits, whatever SWS and Nagle say, with
    PSH when cut from a larger piece. A tail loss probe (``loss_probe``) is
    forced the same way but keeps the ordinary PSH rule: Linux sends it with
    ``tcp_write_xmit``, which pushes only where the skb ends.
    """
    if conn.state not in _DATA_STATES or conn.loss_mode:
        return None
    snd_nxt = conn.snd_nxt
    sbuf = conn.sndbuf
    data_end = (sbuf._una + sbuf._end - sbuf._base) & _SEQ_MASK  # sbuf.end_seq, per segment
    # seq_diff(data_end, snd_nxt) and the window room, written out (per segment).
    unsent = ((data_end - snd_nxt + _HALF) & _SEQ_MASK) - _HALF
    if unsent <= 0:
        return None
    snd_una = conn.snd_una
    rb = conn.rcvbuf
    ts_ok = conn.ts_ok
    if rb.dsack is None and rb._ooo is None:  # not rb.has_out_of_order
        # option_len(conn) when there is nothing to SACK, without the call.
        maxp = conn.mss_clamp - (TS_OPTION_LEN if ts_ok else 0)
    else:
        maxp = conn.mss_clamp - option_len(conn)
    if conn.max_window < maxp << 1:
        maxp = _bound_to_half_wnd(conn, maxp)
    wnd_room = ((snd_una + conn.snd_wnd - snd_nxt + _HALF) & _SEQ_MASK) - _HALF
    # TSO: up to gso_max_size bytes, whole MSS-sized segments (tcp_tso_autosize);
    # a probe (forced) stays one segment.
    gso = conn.gso_max_size
    limit = gso - gso % maxp if gso > maxp and not force else maxp
    n = unsent if unsent < limit else limit
    if wnd_room < n:
        n = wnd_room
    nothing_in_flight = snd_una == snd_nxt
    if n <= 0:
        if nothing_in_flight and conn.timers.persist is None:
            conn.timers.persist = now + conn.rtt.rto
        return None
    if not force:
        # RFC 3042 limited transmit: each of the first two duplicate ACKs lets
        # the flight exceed cwnd by one more segment.
        snd_mss = conn.mss_clamp - (TS_OPTION_LEN if ts_ok else 0)  # conn.snd_mss
        cwnd_bytes = (conn.cc.cwnd + conn.limited_transmit) * snd_mss
        sb = conn.sb
        if sb is not None:
            # conn.in_flight_bytes() with SACK and outside loss_mode (tested
            # above): RFC 6675's pipe, after recording HighData.
            sb.on_send(snd_nxt)
            in_flight = sb.pipe()
            if in_flight < 0:
                in_flight = 0
        else:
            in_flight = conn.in_flight_bytes()
        if in_flight >= cwnd_bytes:
            return None
        if n > maxp:
            # A TSO super-segment: what cwnd still allows (at least one MSS, as
            # without TSO), cut at a segment boundary unless it ends the data
            # (Linux tcp_tso_segs / tcp_mss_split_point).
            room = cwnd_bytes - in_flight
            if n > room:
                n = room if room > maxp else maxp
            # A super-segment is one skb: no more than the burst's chunk
            # (:mod:`.pacing`), so the device's last segment of each carries
            # the chunk's PSH as Linux's does.
            chunk = conn.tso_chunk
            if chunk is None or not (seq_le(chunk[0], snd_nxt) and seq_lt(snd_nxt, chunk[1])):
                chunk = open_chunk(conn, snd_nxt, data_end, maxp)
            room = seq_diff(chunk[1], snd_nxt)
            if n > room:
                n = room if room > maxp else maxp
            if n < unsent:
                n -= n % maxp
        elif n < maxp:
            if n < unsent:
                # Window-limited piece: RFC 9293 3.8.6.2.1 sender SWS avoidance.
                if n < (conn.max_window >> 1):
                    if nothing_in_flight and conn.timers.persist is None:
                        conn.timers.persist = now + conn.rtt.rto
                    return None
            elif not conn.fin_queued:
                if conn.cork or conn.more:
                    # TCP_CORK's 200 ms ceiling is Linux's probe timer
                    # (tcp_push -> tcp_check_probe_timer): with nothing in
                    # flight, the corked data goes out one RTO later.
                    if nothing_in_flight and conn.timers.persist is None:
                        conn.timers.persist = now + conn.rtt.rto
                    return None
                # Nagle, Minshall's variant (Linux tcp_nagle_check/tcp_minshall_check):
                # hold a small segment while an earlier small one is unacknowledged.
                small_unacked = seq_gt(conn.snd_sml, snd_una)
                if not conn.nodelay and not nothing_in_flight and small_unacked:
                    return None
    if nothing_in_flight and conn.settings.tcp_slow_start_after_idle and conn.last_data_sent:
        conn.cc.restart_after_idle(now, conn.last_data_sent, conn.rtt.rto)
    if now - conn.lrcvtime < conn.ato:
        # Linux tcp_event_data_sent: a reply within ato of the last data
        # received makes the connection interactive (pingpong mode).
        conn.pingpong = True
    seq = snd_nxt
    payload = conn.sndbuf.peek(seq, n)
    end = (seq + n) & _SEQ_MASK
    flags = _ACK | mark_push(conn, end, data_end, snd_una, force and not loss_probe)
    if end == data_end and conn.fin_queued and not conn.fin_sent and n < maxp:
        flags |= _FIN
    seg = build(conn, now, seq, flags, payload)
    if flags & _FIN:
        conn.fin_sent = True
        end = seq_add(end, 1)
    sent_new_data(conn, now, seq, end, n, maxp)
    return seg


def mark_push(conn: TcpConnection, end: int, data_end: int, snd_una: int, force: bool) -> int:
    """PSH (or 0) for a new-data segment ending at ``end``; a PSH is recorded in ``psh_marks``.

    The one home of the rule, for :func:`_new_data` and the fast path
    (:mod:`.fastpath`) alike: PSH on the segment that empties the send buffer
    (``tcp_push`` -> ``tcp_mark_push``), on a probe cut from a larger piece
    (Linux ``tcp_write_wakeup``), and on the last segment of each chunk of
    two segments or more of a burst (:mod:`.pacing`: Linux sends a burst as
    skbs of at most ``min(tcp_tso_segs, tcp_cwnd_test)`` segments, and each
    such skb ends with PSH on the wire); ``conn.snd_nxt`` is the segment's
    start. Linux's ``forced_push`` (more than half the largest window
    written since the last push) is not modelled: no trace on 6.18 shows it
    (docs/tcp.md). The fast path tests the usual "inside the chunk, not its
    last segment: no PSH" answer itself before calling this: keep equal.
    """
    if end != data_end and not force:
        chunk = conn.tso_chunk
        start = conn.snd_nxt
        # start in [chunk start, chunk end), written out (once per segment).
        if chunk is None or (start - chunk[0]) & _SEQ_MASK >= (chunk[1] - chunk[0]) & _SEQ_MASK:
            chunk = open_chunk(conn, start, data_end, _bound_to_half_wnd(conn, conn.snd_mss))
        # seq_ge(end, chunk end), written out.
        if not (chunk[2] and (end - chunk[1]) & _SEQ_MASK < _HALF):
            return 0
    return _push(conn, end, snd_una)


def _push(conn: TcpConnection, end: int, snd_una: int) -> int:
    """Record a PSH at ``end`` in ``psh_marks`` (for retransmissions) and return the flag."""
    marks = conn.psh_marks
    if marks is None:
        marks = conn.psh_marks = deque()
    else:
        # Drop the acknowledged marks here too, so a transfer without
        # retransmissions keeps only the marks in flight (and the newest).
        while len(marks) > 1 and seq_le(marks[0], snd_una):
            marks.popleft()
    marks.append(end)
    return _PSH


def sent_new_data(conn: TcpConnection, now: float, seq: int, end: int, n: int, maxp: int) -> None:
    """Account for new data ``[seq, end)`` just sent (``n`` payload bytes, ``maxp`` per segment).

    Linux ``tcp_event_new_data_sent`` and what ``tcp_write_xmit`` does per
    skb: ``snd_nxt``, the scoreboard's HighData, RACK's log and the PTO,
    Nagle's ``snd_sml``, the RTT timing, counters, congestion control's
    PRR count and the retransmission timer. Shared by :func:`_new_data`
    and the fast path (:mod:`.fastpath`), so both account the same way.
    """
    conn.snd_nxt = conn.rtx_nxt = end
    sb = conn.sb
    if sb is not None:
        # sb.on_send(end) written out (once per segment sent): HighData
        # moves up; an end below snd_una is on_send's error to raise.
        ua = sb._ua
        off = ua + ((end - sb._una + _HALF) & _SEQ_MASK) - _HALF
        if off > sb._hd:
            sb._hd = off
        elif off < ua:
            sb.on_send(end)
        rack = conn.rack
        if rack is None and sb.rack_mode:
            rack = start_rack(conn, seq)
        if rack is not None:
            # Rack.on_send, written out (once per segment sent).
            ua = rack._ua
            una = rack._una
            start = ua + ((seq - una + _HALF) & _SEQ_MASK) - _HALF
            size = end - seq if end > seq else (end - seq) & _SEQ_MASK
            rec = [start, start + size, now, 0]
            rack._recs.append(rec)
            if rack._tq is not None:
                rack._tq.append((now, rec))
            # The PTO counts from the latest transmission (Linux re-arms it
            # after each tcp_write_xmit); lazily, see loss.on_loss_probe_timer.
            # Re-armed at once when it was computed for one segment in flight.
            rack.pto_base = now
            if conn.timers.loss_probe is None or rack.pto_one:
                schedule_loss_probe(conn, now)
    if n < conn.mss_clamp - (TS_OPTION_LEN if conn.ts_ok else 0):  # conn.snd_mss
        conn.snd_sml = end
    if conn.rtt_time is None:
        conn.rtt_time, conn.rtt_seq = now, seq
    segs = 1 if n <= maxp else -(-n // maxp)  # wire segments (TSO: tcp_skb_pcount)
    conn.counters.TcpOutSegs += segs
    cc = conn.cc
    if cc.in_cwnd_reduction:
        # on_transmit counts segments for PRR only during a reduction (its
        # own test, here to save the call for every other segment).
        cc.on_transmit(segs)
    conn.last_data_sent = now
    conn.timers.persist = None
    conn.persist_backoff = 0
    if conn.timers.retransmit is None:
        conn.arm_retransmit(now)


def start_rack(conn: TcpConnection, seq: int) -> Rack:
    """Create the connection's :class:`Rack` as its first segment (from ``seq``) goes out."""
    rack = conn.rack = Rack(seq, recovery=conn.settings.tcp_recovery)
    return rack


def _loss_probe(conn: TcpConnection, now: float) -> Segment | None:
    """The tail loss probe (RFC 8985 7.3, Linux ``tcp_send_loss_probe``).

    New data if the peer's window allows a segment (sent whatever cwnd and
    Nagle say), else the highest segment sent, again. Either way the probe
    is remembered in ``tlp_high_seq`` (the ACK that covers it tells whether
    it repaired a loss) and the RTO is re-armed from now.
    """
    conn.tlp_pending = False
    rack = conn.rack
    if rack is None or rack.tlp_high_seq is not None or conn.snd_una == conn.snd_nxt:
        return None
    rack.tlp_high_seq = conn.snd_nxt  # blocks re-arming the PTO while sending
    seg = None
    if conn.sndbuf.end_seq != conn.snd_nxt:
        seg = _new_data(conn, now, force=True, loss_probe=True)
    if seg is not None:
        rack.tlp_retrans = False
    else:
        last = rack.last_segment()
        if last is not None:
            seg = _data_segment(conn, now, last[0], last[1])
            seg = _account_retransmit(conn, now, seg, None, None)
        if seg is None:
            rack.tlp_high_seq = None
            conn.arm_retransmit(now)
            return None
        rack.tlp_retrans = True
    rack.tlp_start = seg.seq
    rack.tlp_high_seq = conn.snd_nxt
    conn.counters.TcpExtTCPLossProbes += 1
    conn.timers.loss_probe = None
    conn.arm_retransmit(now)
    return seg


def _fin(conn: TcpConnection, now: float) -> Segment | None:
    """A FIN alone, once every byte before it has been sent (RFC 9293 3.10.4)."""
    if not conn.fin_queued or conn.fin_sent or conn.snd_nxt != conn.fin_seq or conn.loss_mode:
        return None
    seg = build(conn, now, conn.snd_nxt, _FIN | _ACK, b"")
    conn.fin_sent = True
    conn.snd_nxt = conn.rtx_nxt = seq_add(conn.fin_seq, 1)
    sb = conn.sb
    if sb is not None:
        sb.on_send(conn.snd_nxt)
        rack = conn.rack
        if rack is None and sb.rack_mode:
            rack = start_rack(conn, conn.fin_seq)
        if rack is not None:
            rack.on_send(conn.fin_seq, conn.snd_nxt, now)
    conn.counters.TcpOutSegs += 1
    if conn.timers.retransmit is None:
        conn.arm_retransmit(now)
    return seg


def transmit(conn: TcpConnection, now: float) -> Segment | None:
    """At most one segment to send now; see the module docstring for the order."""
    if conn.rst_pending:
        # Linux tcp_send_active_reset: RST|ACK at snd_nxt.
        conn.rst_pending = False
        conn.counters.TcpOutSegs += 1
        return build(conn, now, conn.snd_nxt, _RST | _ACK, b"", b"")
    st = conn.state
    if st is _CLOSE or st is _LISTEN:
        return None
    if conn.syn_pending:
        return _syn(conn, now)
    if st is _SYN_SENT:
        return None
    if st is not _SYN_RECV and st is not _TIME_WAIT:
        if conn.probe_pending:
            conn.probe_pending = False
            seg = _new_data(conn, now, force=True) if conn.keepalive_probe is False else None
            conn.keepalive_probe = False
            if seg is not None:
                return seg
            conn.counters.TcpOutSegs += 1
            return build(conn, now, conn.probe_seq(), _ACK, b"")
        if conn.tlp_pending:
            seg = _loss_probe(conn, now)
            if seg is not None:
                return seg
        # Each candidate is called only when its own first test can pass
        # (the functions test again): _retransmit has work only with a
        # head to resend, after a timeout or in SACK recovery; _new_data only
        # with unsent bytes; _fin only with a FIN queued and not yet sent.
        sb = conn.sb
        if conn.rtx_head or conn.loss_mode or (sb is not None and sb.in_recovery):
            seg = _retransmit(conn, now)
            if seg is not None:
                return seg
        sbuf = conn.sndbuf
        # sbuf.end_seq written out: this test runs on every poll.
        if (sbuf._una + sbuf._end - sbuf._base) & _SEQ_MASK != conn.snd_nxt:
            seg = _new_data(conn, now)
            if seg is not None:
                return seg
        if conn.fin_queued and not conn.fin_sent:
            seg = _fin(conn, now)
            if seg is not None:
                return seg
    if conn.ack_now:
        conn.counters.TcpOutSegs += 1
        return build(conn, now, conn.snd_nxt, _ACK, b"")
    return None
