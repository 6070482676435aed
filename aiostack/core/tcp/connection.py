"""The TCP control block: one connection's state and its sans-I/O interface.

**Heads up!** Before changing this package read RFC 9293 (3.3 to 3.10),
RFC 1122 4.2, RFC 5961, RFC 6298, RFC 7323, RFC 2018/2883, RFC 6675 and
RFC 8985, and keep Linux's ``net/ipv4/tcp_input.c``/``tcp_output.c``/
``tcp_timer.c``/``tcp_recovery.c`` at hand:
where the RFCs leave room, aiostack does what Linux does.

The interface (smoltcp's triad, DESIGN.md principle 1). Every entry point
takes ``now``, the stack's monotonic time in float seconds; nothing here
reads a clock or does I/O.

``on_segment(now, header, payload) -> Segment | None``
    A segment for this connection arrived (the demux chose it). The return
    value is an *immediate* reply that must go out now and bypasses
    :meth:`poll_transmit`: an RST, or an RFC 5961 challenge ACK. Ordinary
    ACKs are not returned; they are merged into what ``poll_transmit`` sends.
``poll_transmit(now) -> Segment | None``
    At most one segment to send now; the shell calls it until ``None`` after
    every ``on_segment``, every application operation and whenever
    :meth:`poll_at` is reached (expired timers are handled first).
``poll_at() -> float | None``
    The next deadline (the earliest armed timer), ``None`` if idle.

Call grammar: ``connect | from_syn -> (on_segment | app op | poll_transmit*)*``;
after any call the shell checks :meth:`take_events` to wake sockets.

Application operations: :meth:`send`, :meth:`recv`, :meth:`shutdown`,
:meth:`close`, :meth:`abort`. Errors follow Linux's ``sk_err``: a fatal
error (RST, timeout) is stored in :attr:`TcpConnection.error` as an errno
and reported once by the next ``recv``/``send`` (or :meth:`take_error`,
``SO_ERROR``), raised as the stdlib ``OSError`` subclass from
:func:`aiostack.errors.os_error`. The mapping is Linux's ``tcp_reset``: RST
in SYN-SENT gives ECONNREFUSED, in CLOSE-WAIT EPIPE, otherwise ECONNRESET;
retransmission, SYN and keepalive timeouts give ETIMEDOUT.

The input side lives in :mod:`.input` (``tcp_input.c``), the output side in
:mod:`.output` (``tcp_output.c``); this module holds the record, the timer
handling (``tcp_timer.c``) and the application side (``tcp.c``).
"""

from __future__ import annotations

import errno
from collections import deque

from aiostack.core.counters import Counters
from aiostack.core.tcp import congestion, fastpath, urgent
from aiostack.core.tcp.buffers import (
    ReceiveBuffer,
    ReceiveWindow,
    SendBuffer,
    select_initial_window,
)
from aiostack.core.tcp.congestion.newreno import NewRenoRecovery
from aiostack.core.tcp.input import segment_arrives
from aiostack.core.tcp.loss import (
    EPISODE_LOSS,
    FRTO_NEW,
    frto_enter_loss,
    frto_in_flight,
    on_loss_probe_timer,
    on_reorder_timer,
    start_episode,
)
from aiostack.core.tcp.output import Segment, transmit
from aiostack.core.tcp.rack import Rack
from aiostack.core.tcp.rmem import space_from_win
from aiostack.core.tcp.rtt import TCP_RTO_MAX, RttEstimator
from aiostack.core.tcp.sack import NextSeg, SackScoreboard
from aiostack.core.tcp.state import (
    EV_ERROR,
    EV_READABLE,
    EV_STATE,
    EV_WRITABLE,
    EVENTS,
    TRANSITIONS,
    ConnEvent,
    Event,
    TcpState,
)
from aiostack.core.tcp.timers import (
    TCP_ATO_MIN,
    TCP_MAX_QUICKACKS,
    Timers,
    clamp_probe0_to_user_timeout,
    clamp_to_user_timeout,
    keepalive_expired,
    user_timeout_expired,
)
from aiostack.errors import os_error
from aiostack.settings import Settings
from aiostack.wire import tcp as wtcp
from aiostack.wire.seqnum import seq_add, seq_diff, seq_sub

__all__ = [
    "DEFAULT_MSS",
    "TCP_ATO_MIN",
    "TCP_TIMEWAIT_LEN",
    "ConnEvent",
    "Segment",
    "TcpConnection",
]

#: RFC 9293 3.7.1 / RFC 1122 4.2.2.6: the peer's MSS when it sent no option.
DEFAULT_MSS = 536
#: Linux ``TCP_MIN_MSS``: the smallest MSS accepted from a peer.
TCP_MIN_MSS = 88
#: Linux ``TCP_TIMEWAIT_LEN``: TIME-WAIT lasts 60 s (2MSL with MSL 30 s).
TCP_TIMEWAIT_LEN = 60.0
#: Longest zero-window probe interval: Linux's ``tcp_probe0_when`` caps at ``TCP_RTO_MAX``.
TCP_PROBE_MAX = TCP_RTO_MAX
#: Bytes of IPv4 + TCP header without options (MSS = MTU - 40).
IP_TCP_HEADERS = 40
#: Length of the timestamp option as Linux lays it out (``nop, nop, TS``).
TS_OPTION_LEN = 12

_ACK = wtcp.ACK
_ESTABLISHED = TcpState.ESTABLISHED


class TcpConnection:
    """One TCP connection (Linux's ``struct tcp_sock``): state, sequence variables, buffers, timers.

    Sequence variables follow RFC 9293 3.3.1; ``snd_nxt`` is the highest
    sequence number sent so far (Linux's ``snd_nxt``, RFC 9293's SND.MAX):
    retransmissions do not move it back, they run at :attr:`rtx_nxt` from
    ``snd_una`` up to it. ``rcv_nxt`` includes the peer's FIN once it has
    been processed in order.
    """

    __slots__ = (
        "__weakref__",
        "ack_now",
        "advmss",
        "ato",
        "bytes_acked",
        "bytes_received",
        "cc",
        "chal_time",
        "cork",
        "counters",
        "defer_accept",
        "defer_acked",
        "error",
        "events",
        "fin_queued",
        "fin_received",
        "fin_sent",
        "fin_seq",
        "frto",
        "gso_max_size",
        "high_seq",
        "irs",
        "iss",
        "keepalive",
        "keepalive_probe",
        "keepcnt",
        "keepidle",
        "keepintvl",
        "last_ack_recv",
        "last_ack_sent",
        "last_data_recv",
        "last_data_sent",
        "last_recv",
        "last_seg_size",
        "limited_transmit",
        "local_addr",
        "local_port",
        "loss_mode",
        "lrcvtime",
        "max_window",
        "more",
        "mss_clamp",
        "mtu",
        "nodelay",
        "orphan",
        "passive",
        "peer_fin_seq",
        "persist_backoff",
        "pingpong",
        "probe_pending",
        "probes",
        "probes_tstamp",
        "psh_marks",
        "quickack",
        "rack",
        "rcv_mss",
        "rcv_nxt",
        "rcv_rtt",
        "rcv_rtt_seq",
        "rcv_rtt_time",
        "rcv_rtt_tsecr",
        "rcv_wscale",
        "rcvbuf",
        "rcvbuf_auto",
        "rcvq_seq",
        "rcvq_space",
        "rcvq_time",
        "recovery",
        "remote_addr",
        "remote_port",
        "reordering",
        "retrans_stamp",
        "retransmits",
        "rst_pending",
        "rtt",
        "rtt_seq",
        "rtt_time",
        "rtx_head",
        "rtx_high",
        "rtx_nxt",
        "rtx_start",
        "rwnd",
        "sack_dupacks",
        "sack_head",
        "sack_ok",
        "sb",
        "segs_in",
        "segs_out",
        "settings",
        "shut_rd",
        "snd_nxt",
        "snd_sml",
        "snd_una",
        "snd_up",
        "snd_wl1",
        "snd_wl2",
        "snd_wnd",
        "snd_wscale",
        "sndbuf",
        "sndbuf_auto",
        "soft_error",
        "state",
        "syn_pending",
        "timers",
        "tlp_enabled",
        "tlp_pending",
        "total_retrans",
        "ts_offset",
        "ts_ok",
        "ts_recent",
        "tso_chunk",
        "undo_episode",
        "undo_marker",
        "undo_retrans",
        "urg_data",
        "urg_seq",
        "urginline",
        "user_timeout",
        "wscale_ok",
    )

    def __init__(
        self,
        *,
        local_addr: int,
        local_port: int,
        remote_addr: int,
        remote_port: int,
        iss: int,
        ts_offset: int = 0,
        settings: Settings | None = None,
        counters: Counters | None = None,
        mtu: int = 1500,
        sndbuf: int | None = None,
        rcvbuf: int | None = None,
        congestion_control: str | None = None,
    ) -> None:
        """A connection in CLOSED; use :meth:`connect` or :meth:`from_syn` to open one.

        ``iss`` comes from :class:`aiostack.core.tcp.isn.IsnGenerator` (RFC
        6528) and ``ts_offset`` from its ``ts_offset``; ``mtu`` is the route
        MTU, from which our MSS is ``mtu - 40`` (Linux ``tcp_mtu_to_mss``).
        ``sndbuf``/``rcvbuf`` are ``SO_SNDBUF``/``SO_RCVBUF`` (default
        ``tcp_wmem[1]``/``tcp_rmem[1]``).
        """
        st = settings if settings is not None else Settings()
        self.settings = st
        self.counters = counters if counters is not None else Counters()
        self.local_addr = local_addr
        self.local_port = local_port
        self.remote_addr = remote_addr
        self.remote_port = remote_port
        self.state = TcpState.CLOSE
        self.passive = False
        self.iss = iss & 0xFFFFFFFF
        self.irs = 0
        self.snd_una = self.iss
        self.snd_nxt = self.iss
        self.rtx_nxt = self.iss
        self.rtx_head = False
        self.snd_sml = self.iss
        self.snd_wnd = 0
        self.snd_wl1 = 0
        self.snd_wl2 = 0
        self.max_window = 0
        self.snd_wscale = 0
        self.mtu = mtu
        self.advmss = mtu - IP_TCP_HEADERS
        self.mss_clamp = DEFAULT_MSS
        self.rcv_mss = DEFAULT_MSS
        #: ``icsk_ack.last_seg_size``: the last short segment's size, for
        #: input.measure_rcv_mss (two equal in a row lower ``rcv_mss``).
        self.last_seg_size = 0
        #: Payload bytes the device will cut into MSS-sized segments (TSO,
        #: Linux ``sk_gso_max_size``); 0: no TSO, one MSS per segment. Set by
        #: the shell from its device; output.py builds segments of up to this.
        self.gso_max_size = 0
        self.ts_offset = ts_offset
        self.ts_ok = False
        self.ts_recent = 0
        self.sack_ok = False
        self.wscale_ok = False
        self.sndbuf = SendBuffer(st.tcp_wmem[1] if sndbuf is None else sndbuf, seq_add(iss, 1))
        # sk_rcvbuf, accounted in skb truesize; window bytes are its
        # tcp_win_from_space (half of it until the first segment measures
        # scaling_ratio; see rmem.py).
        self.rcvbuf = ReceiveBuffer(0, rcvbuf=st.tcp_rmem[1] if rcvbuf is None else rcvbuf)
        self.rcvbuf.advmss = self.advmss
        rcv_payload = self.rcvbuf.capacity
        rcv_wnd, clamp, wscale = select_initial_window(
            rcv_payload,
            self.advmss,
            max_space=max(st.tcp_rmem[2], st.rmem_max),
            # A set SO_RCVBUF (SOCK_RCVBUF_LOCK) clamps the window to the
            # buffer's space, which also picks the scale (tcp_connect_init,
            # tcp_openreq_init_rwin: window_clamp = tcp_full_space).
            window_clamp=0 if rcvbuf is None else rcv_payload,
            wscale_ok=bool(st.tcp_window_scaling),
        )
        self.rcv_wscale = wscale
        #: Receive-buffer auto-tuning applies (``tcp_moderate_rcvbuf`` and no
        #: ``SO_RCVBUF``: Linux's ``SOCK_RCVBUF_LOCK`` unset).
        self.rcvbuf_auto = rcvbuf is None and bool(st.tcp_moderate_rcvbuf)
        #: The send buffer may grow with cwnd (no ``SO_SNDBUF``: Linux's
        #: ``SOCK_SNDBUF_LOCK`` unset); the shell grows it (tcp_sndbuf_expand).
        self.sndbuf_auto = sndbuf is None
        # tcp_rcv_space_adjust's measurement (rcvq_space: bytes read per RTT)
        # and the receiver's RTT estimate (rcv_rtt_est), seconds.
        self.rcvq_space = 0
        self.rcvq_seq = 0
        self.rcvq_time = 0.0
        self.rcv_rtt = 0.0
        self.rcv_rtt_seq = 0
        self.rcv_rtt_time: float | None = None
        self.rcv_rtt_tsecr = 0
        #: Delayed-ACK timeout estimate (Linux ``icsk_ack.ato``; 0: no data yet)
        #: and when the last data segment arrived (``icsk_ack.lrcvtime``).
        self.ato = 0.0
        self.lrcvtime = 0.0
        self.rwnd = ReceiveWindow(
            rcv_wscale=wscale, window_clamp=clamp, rcv_ssthresh=rcv_wnd, rcv_wnd=rcv_wnd
        )
        self.rwnd.buffer = self.rcvbuf  # tcp_grow_window's truesize test
        self.rcvbuf.window = self.rwnd  # the ratio moves the clamp
        self.rwnd.max_space = st.tcp_rmem[2]
        self.rcv_nxt = 0
        self.last_ack_sent = 0
        self.fin_queued = False
        self.fin_sent = False
        self.fin_seq = 0
        self.fin_received = False
        self.peer_fin_seq: int | None = None
        #: Urgent data (see .urgent): state and byte, the mark, SO_OOBINLINE.
        self.urg_data = 0
        self.urg_seq = 0
        self.urginline = False
        #: Linux ``snd_up`` while in urgent mode (after send(MSG_OOB)), else None.
        self.snd_up: int | None = None
        self.syn_pending = False
        self.ack_now = False
        self.rst_pending = False
        self.probe_pending = False
        self.keepalive_probe = False
        self.quickack = 0
        #: Interactive mode (Linux ``inet_csk_in_pingpong_mode``): entered when
        #: the application answers within ``ato`` of the last data received or
        #: on the peer's FIN; quick ACKs are off until the delayed-ACK timer fires.
        self.pingpong = False
        #: The last send() had MSG_MORE: its partial segment waits like a
        #: corked one until the next push (Linux tcp_push with TCP_NAGLE_CORK
        #: for that call only; an arriving ACK or a later send pushes again).
        self.more = False
        #: End sequence numbers of the segments sent with PSH, oldest first:
        #: the flag belongs to the data (Linux keeps it on the skb), so a
        #: retransmission covering one carries PSH again. Created on first use.
        self.psh_marks: deque[int] | None = None
        #: The chunk of the current burst, ``(start, end, psh)``: Linux sends
        #: a burst as skbs of ``min(tcp_tso_segs, tcp_cwnd_test)`` segments,
        #: PSH on each full one's last segment (see :mod:`.pacing`).
        self.tso_chunk: tuple[int, int, bool] | None = None
        self.chal_time: float | None = None
        self.cc = congestion.create(congestion_control or st.tcp_congestion_control)
        self.rtt = RttEstimator(min_rtt_window=float(st.tcp_min_rtt_wlen))
        self.recovery = NewRenoRecovery(self.iss, dupthresh=max(st.tcp_reordering, 1))
        self.limited_transmit = 0
        #: RFC 6675 scoreboard, created on ESTABLISHED when SACK was negotiated;
        #: while it exists, loss recovery is SACK-based instead of NewReno.
        self.sb: SackScoreboard | None = None
        self.sack_dupacks = 0
        self.sack_head: NextSeg | None = None
        #: RACK-TLP (RFC 8985), created with the scoreboard when
        #: ``tcp_recovery`` has bit 0x1; ``None`` leaves loss detection to
        #: RFC 6675's DupThresh (or NewReno without SACK).
        self.rack: Rack | None = None
        #: TLP is on (``tcp_early_retrans`` 3 or 4; it needs RACK and SACK).
        self.tlp_enabled = st.tcp_early_retrans in (3, 4)
        #: The PTO fired: the next ``poll_transmit`` sends a loss probe.
        self.tlp_pending = False
        # Undo of spurious reductions (Linux undo_marker, undo_retrans,
        # retrans_stamp, high_seq); see aiostack.core.tcp.loss.
        self.undo_marker: int | None = None
        self.undo_retrans = -1
        self.retrans_stamp: int | None = None
        self.undo_episode = 0
        self.high_seq = self.iss
        self.loss_mode = False
        #: F-RTO (RFC 5682) state of the current RTO episode (loss.FRTO_*),
        #: and the end of the highest retransmission of the episode (what
        #: was never retransmitted lies above it).
        self.frto = 0
        self.rtx_high = self.iss
        #: Reordering degree in segments (Linux ``tp->reordering``).
        self.reordering = st.tcp_reordering
        self.rtt_seq = 0
        self.rtt_time: float | None = None
        self.retransmits = 0
        self.total_retrans = 0
        self.rtx_start: float | None = None
        self.probes = 0
        #: When zero-window probing started (Linux ``icsk_probes_tstamp``).
        self.probes_tstamp: float | None = None
        self.persist_backoff = 0
        self.keepalive = False
        self.keepidle = float(st.tcp_keepalive_time)
        self.keepintvl = float(st.tcp_keepalive_intvl)
        self.keepcnt = st.tcp_keepalive_probes
        self.user_timeout = 0.0
        #: TCP_DEFER_ACCEPT of the listener that made this child, in SYN-ACK
        #: timeouts (Linux ``rskq_defer_accept``), and whether its bare ACK was
        #: already dropped for it (``inet_rsk(req)->acked``).
        self.defer_accept = 0
        self.defer_acked = False
        self.nodelay = False
        self.cork = False
        self.shut_rd = False
        self.orphan = False
        self.error = 0
        self.soft_error = 0
        self.events = 0  # ConnEvent bits as an int, see EV_READABLE
        self.timers = Timers()
        self.bytes_acked = 0
        self.bytes_received = 0
        self.segs_in = 0
        self.segs_out = 0
        self.last_data_sent = 0.0
        self.last_data_recv = 0.0
        self.last_ack_recv = 0.0
        self.last_recv = 0.0

    # -- opening ---------------------------------------------------------

    @classmethod
    def connect(
        cls,
        now: float,
        *,
        local_addr: int,
        local_port: int,
        remote_addr: int,
        remote_port: int,
        iss: int,
        ts_offset: int = 0,
        settings: Settings | None = None,
        counters: Counters | None = None,
        mtu: int = 1500,
        sndbuf: int | None = None,
        rcvbuf: int | None = None,
        congestion_control: str | None = None,
    ) -> TcpConnection:
        """Active open (RFC 9293 3.10.1, Linux ``tcp_connect``): SYN-SENT, SYN due.

        The SYN carries Linux's options in Linux's order (``mss, sackOK, TS,
        nop, wscale``), each present when its sysctl is on.
        """
        conn = cls(
            local_addr=local_addr,
            local_port=local_port,
            remote_addr=remote_addr,
            remote_port=remote_port,
            iss=iss,
            ts_offset=ts_offset,
            settings=settings,
            counters=counters,
            mtu=mtu,
            sndbuf=sndbuf,
            rcvbuf=rcvbuf,
            congestion_control=congestion_control,
        )
        st = conn.settings
        conn.ts_ok = bool(st.tcp_timestamps)
        conn.sack_ok = bool(st.tcp_sack)
        conn.wscale_ok = bool(st.tcp_window_scaling)
        conn.syn_pending = True
        conn.last_recv = now
        # Linux tcp_connect: retrans_stamp is the first SYN, what
        # TCP_USER_TIMEOUT counts from while the connection opens.
        conn.rtx_start = now
        conn.counters.TcpActiveOpens += 1
        conn.set_state(TcpState.SYN_SENT, Event.CONNECT)
        return conn

    @classmethod
    def from_syn(
        cls,
        now: float,
        header: wtcp.TcpHeader,
        *,
        local_addr: int,
        remote_addr: int,
        iss: int,
        ts_offset: int = 0,
        settings: Settings | None = None,
        counters: Counters | None = None,
        mtu: int = 1500,
        sndbuf: int | None = None,
        rcvbuf: int | None = None,
        congestion_control: str | None = None,
    ) -> TcpConnection:
        """Passive open from a SYN (RFC 9293 3.10.7.2; Linux ``tcp_openreq_init``): SYN-RECEIVED.

        Options are negotiated from what the SYN offered: an option the SYN
        lacks is neither used nor echoed in the SYN-ACK (RFC 7323 1.3,
        RFC 2018 2), and one our sysctls turn off is not used either.
        """
        conn = cls(
            local_addr=local_addr,
            local_port=header.dst_port,
            remote_addr=remote_addr,
            remote_port=header.src_port,
            iss=iss,
            ts_offset=ts_offset,
            settings=settings,
            counters=counters,
            mtu=mtu,
            sndbuf=sndbuf,
            rcvbuf=rcvbuf,
            congestion_control=congestion_control,
        )
        conn.passive = True
        conn.state = TcpState.LISTEN
        conn.accept_syn_options(header)
        conn.syn_pending = True
        conn.last_recv = now
        conn.set_state(TcpState.SYN_RECV, Event.RCV_SYN)
        return conn

    def accept_syn_options(self, header: wtcp.TcpHeader) -> None:
        """Record the peer's ISN and the options its SYN (or SYN-ACK) offered.

        MSS: absent means 536 (RFC 9293 3.7.1), clamped to at least
        ``TCP_MIN_MSS`` and at most our route's MTU - 40. Window scale:
        only when both sides offer it (RFC 7323 2.2); a shift above 14 is
        used as 14 (RFC 7323 2.3, Linux logs and clamps). SACK-permitted
        and timestamps: only when both offer them. The peer's window in a
        SYN is never scaled (RFC 7323 2.2).
        """
        st = self.settings
        opts = header.options
        self.irs = header.seq
        self.rcv_nxt = seq_add(header.seq, 1)
        self.rcvbuf.reset(self.rcv_nxt)
        self.rwnd.rcv_wup = self.rcv_nxt
        self.last_ack_sent = self.rcv_nxt
        peer_mss = DEFAULT_MSS if opts.mss is None else max(opts.mss, TCP_MIN_MSS)
        self.mss_clamp = min(peer_mss, self.advmss)
        self.rcv_mss = min(DEFAULT_MSS, self.advmss)
        if opts.wscale is not None and st.tcp_window_scaling:
            self.wscale_ok = True
            self.snd_wscale = min(opts.wscale, wtcp.MAX_WSCALE)
        else:
            self.wscale_ok = False
            self.snd_wscale = 0
            self.rcv_wscale = self.rwnd.rcv_wscale = 0
            self.rwnd.window_clamp = min(self.rwnd.window_clamp, 0xFFFF)
            self.rwnd.rcv_wnd = min(self.rwnd.rcv_wnd, 0xFFFF)
        self.sack_ok = opts.sack_permitted and bool(st.tcp_sack)
        self.ts_ok = opts.timestamps is not None and bool(st.tcp_timestamps)
        self.rcvbuf.header_len = 52 if self.ts_ok else 40  # IP, TCP (+ nop, nop, TS)
        if self.ts_ok and opts.timestamps is not None:
            self.ts_recent = opts.timestamps[0]
        self.snd_wnd = header.window
        self.max_window = max(self.max_window, self.snd_wnd)
        self.snd_wl1 = header.seq
        self.snd_wl2 = header.ack
        # Linux's first data segment starts quick-ACK mode (tcp_event_data_recv
        # -> tcp_incr_quickack) for rcv_wnd / (2 * rcv_mss) segments (2 if that
        # is 0, at most TCP_MAX_QUICKACKS); rcv_mss is that segment's length,
        # estimated here as the peer's MSS. A small buffer gets one quick ACK.
        quick = self.rwnd.rcv_wnd // (2 * self.mss_clamp)
        self.quickack = min(quick or 2, TCP_MAX_QUICKACKS)

    # -- state -------------------------------------------------------------

    def set_state(self, new: TcpState, event: Event) -> None:
        """The only place the state changes (Linux ``tcp_set_state``); checks TRANSITIONS.

        Keeps ``TcpCurrEstab`` (a gauge: connections in ESTABLISHED or
        CLOSE-WAIT, RFC 4022) and clears the timers on CLOSED.
        """
        old = self.state
        if __debug__ and TRANSITIONS.get((old, event)) is not new:
            raise AssertionError(f"TCP: no transition {old.name} --{event.value}--> {new.name}")
        est = (TcpState.ESTABLISHED, TcpState.CLOSE_WAIT)
        if old in est and new not in est:
            self.counters.TcpCurrEstab -= 1
        elif new in est and old not in est:
            self.counters.TcpCurrEstab += 1
            if old is TcpState.SYN_SENT or old is TcpState.SYN_RECV:
                # tcp_init_transfer -> tcp_init_buffer_space.
                self.rwnd.init_buffer_space(self.rcvbuf.capacity, self.advmss)
        self.state = new
        self.events |= EV_STATE
        if new is TcpState.CLOSE:
            self.timers.clear()
            self.events |= EV_READABLE | EV_WRITABLE

    def fail(self, err: int, event: Event) -> None:
        """End the connection with an error for the application (``tcp_done`` with ``sk_err``).

        A timeout reports the last soft error (an ICMP unreachable) if there
        was one, as Linux's ``tcp_write_err`` does: EHOSTUNREACH says more
        than ETIMEDOUT.
        """
        if err == errno.ETIMEDOUT and self.soft_error:
            err = self.soft_error
        if err:
            self.error = err
            self.events |= EV_ERROR
        if self.state is not TcpState.CLOSE:
            self.set_state(TcpState.CLOSE, event)

    def reset_received(self) -> None:
        """An acceptable RST arrived: Linux's ``tcp_reset`` errno mapping, then CLOSED."""
        st = self.state
        if st is TcpState.SYN_SENT:
            err = errno.ECONNREFUSED
        elif st is TcpState.CLOSE_WAIT:
            err = errno.EPIPE
        elif st is TcpState.SYN_RECV and self.passive:
            # RFC 9293 3.10.7.4: a passive open returns to LISTEN; the
            # listener forgets the embryonic child and nobody sees an error.
            err = 0
        elif st is TcpState.TIME_WAIT:
            err = 0
        else:
            err = errno.ECONNRESET
        if st in (TcpState.ESTABLISHED, TcpState.CLOSE_WAIT):
            self.counters.TcpEstabResets += 1
        if st in (TcpState.SYN_SENT, TcpState.SYN_RECV):
            self.counters.TcpAttemptFails += 1
        self.fail(err, Event.RCV_RST)

    @property
    def snd_mss(self) -> int:
        """Payload of a full segment with the usual options (Linux ``mss_cache``)."""
        return self.mss_clamp - (TS_OPTION_LEN if self.ts_ok else 0)

    @property
    def data_end(self) -> int:
        """Sequence number after the last byte written (Linux ``write_seq``, without FIN)."""
        return self.sndbuf.end_seq

    @property
    def is_established(self) -> bool:
        """Data may flow both ways or is draining (ESTABLISHED or a closing state after it)."""
        return self.state not in (
            TcpState.CLOSE,
            TcpState.LISTEN,
            TcpState.SYN_SENT,
            TcpState.SYN_RECV,
        )

    def take_events(self) -> ConnEvent:
        """Return and clear the accumulated :class:`ConnEvent` bits."""
        ev = self.events
        self.events = 0
        return EVENTS[ev]

    def take_error(self) -> int:
        """Return and clear the pending errno, else the soft one (``SO_ERROR``)."""
        err = self.error
        self.error = 0
        if not err:
            err, self.soft_error = self.soft_error, 0
        return err

    def on_icmp_error(
        self, now: float, err: int, fatal: bool, *, seq: int, mtu: int | None = None
    ) -> None:
        """An ICMP error quoting one of our segments arrived (Linux ``tcp_v4_err``).

        ``err``/``fatal`` come from :data:`aiostack.errors.ICMP_UNREACH_ERRNO`;
        ``seq`` is the sequence number in the quoted TCP header, which must
        lie in ``[snd_una, snd_nxt]`` or the message is ignored (a blind
        attacker cannot guess it; RFC 5927 4.1). Fragmentation needed
        (EMSGSIZE with the next-hop ``mtu``) lowers the MSS and retransmits
        the head at once (``tcp_v4_mtu_reduced``). In SYN-SENT and
        SYN-RECEIVED a fatal error (port unreachable: ECONNREFUSED) ends the
        connection; otherwise the error is kept as a soft error for
        ``SO_ERROR`` and reported if the connection later times out.
        """
        st = self.state
        if st is TcpState.CLOSE or st is TcpState.LISTEN:
            return
        if seq_diff(seq, self.snd_una) < 0 or seq_diff(self.snd_nxt, seq) < 0:
            return
        if err == errno.EMSGSIZE and mtu is not None:
            new_mss = max(mtu - IP_TCP_HEADERS, TCP_MIN_MSS)
            if new_mss < self.mss_clamp:
                self.mtu = mtu
                self.mss_clamp = new_mss
                if self.sb is not None:
                    self.sb.mss = self.snd_mss
                if self.snd_una != self.snd_nxt and st.is_synchronized:
                    self.rtx_head = True
            return
        if (st is TcpState.SYN_SENT or st is TcpState.SYN_RECV) and fatal:
            self.counters.TcpAttemptFails += 1
            self.fail(err, Event.ABORT)
            return
        self.soft_error = err

    # -- the triad ---------------------------------------------------------

    def on_segment(
        self, now: float, header: wtcp.TcpHeader, payload: memoryview | bytes
    ) -> Segment | None:
        """A segment for this connection arrived (:func:`.input.segment_arrives`).

        In ESTABLISHED :func:`.fastpath.on_segment` takes it first (header
        prediction) and hands what it does not handle to the general path.
        """
        if self.state is _ESTABLISHED and fastpath.ENABLED:
            return fastpath.on_segment(self, now, header, payload)
        return segment_arrives(self, now, header, payload)

    def poll_transmit(self, now: float) -> Segment | None:
        """At most one segment to send now; expired timers are handled first."""
        # self.timers.poll_at() <= now, written out (the stack polls after
        # every segment in and out): true as soon as one armed timer is due.
        # Keep the list of timers equal to Timers.poll_at.
        t = self.timers
        if (
            ((d := t.delack) is not None and d <= now)
            or ((d := t.retransmit) is not None and d <= now)
            or ((d := t.loss_probe) is not None and d <= now)
            or ((d := t.reorder) is not None and d <= now)
            or ((d := t.persist) is not None and d <= now)
            or ((d := t.keepalive) is not None and d <= now)
            or ((d := t.fin_wait2) is not None and d <= now)
            or ((d := t.time_wait) is not None and d <= now)
        ):
            self.run_timers(now)
        if self.state is _ESTABLISHED and fastpath.ENABLED:
            return fastpath.transmit(self, now)  # falls back to output.transmit
        return transmit(self, now)

    def poll_at(self) -> float | None:
        """The next deadline; ``None`` when only input or the application can make progress."""
        return self.timers.poll_at()

    # -- timers (tcp_timer.c) ------------------------------------------------

    def run_timers(self, now: float) -> None:
        """Act on every expired timer (Linux ``tcp_*_timer`` handlers)."""
        for name in self.timers.expired(now):
            if name == "delack":
                self.ack_now = True
                self.counters.TcpExtDelayedACKs += 1
                if self.pingpong:
                    # Linux tcp_delack_timer_handler: the reply did not come in
                    # time; leave pingpong mode and deflate ato.
                    self.pingpong = False
                    self.ato = TCP_ATO_MIN
                else:
                    # Linux tcp_delack_timer_handler: the ACK was late; inflate ato.
                    self.ato = min(2 * self.ato, self.rtt.rto) if self.ato else TCP_ATO_MIN
            elif name == "reorder":
                on_reorder_timer(self, now)
            elif name == "loss_probe":
                on_loss_probe_timer(self, now)
            elif name == "retransmit":
                self.on_retransmit_timer(now)
            elif name == "persist":
                self.on_persist_timer(now)
            elif name == "keepalive":
                self.on_keepalive_timer(now)
            elif name == "fin_wait2":
                if self.state is TcpState.FIN_WAIT2:
                    self.set_state(TcpState.CLOSE, Event.TIMEOUT)
            elif name == "time_wait" and self.state is TcpState.TIME_WAIT:
                self.counters.TcpExtTW += 1
                self.set_state(TcpState.CLOSE, Event.TIMEOUT)
            if self.state is TcpState.CLOSE:
                return

    def time_wait_len(self) -> float:
        """How long TIME-WAIT lasts: Linux's fixed ``TCP_TIMEWAIT_LEN`` (60 s)."""
        return TCP_TIMEWAIT_LEN

    def enter_time_wait(self, now: float) -> None:
        """Start the 2MSL wait; nothing else is left to time (Linux ``tcp_time_wait``)."""
        t = self.timers
        t.retransmit = t.persist = t.keepalive = t.fin_wait2 = None
        t.reorder = t.loss_probe = None
        t.time_wait = now + self.time_wait_len()
        # The timewait sock starts a fresh out-of-window ACK rate limit
        # (tcp_time_wait: tw_last_oow_ack_time = 0).
        self.chal_time = None

    def arm_retransmit(self, now: float) -> None:
        """(Re)start the retransmission timer at the current RTO (RFC 6298 5.1/5.3)."""
        self.timers.retransmit = now + self.rtt.rto

    def on_retransmit_timer(self, now: float) -> None:
        """The retransmission timer fired (Linux ``tcp_retransmit_timer``, RFC 6298 5.4-5.6).

        SYN and SYN-ACK are retried ``tcp_syn_retries``/``tcp_synack_retries``
        times; data ``tcp_retries2`` times (or until ``TCP_USER_TIMEOUT``),
        then the connection fails with ETIMEDOUT without an RST (Linux
        ``tcp_write_err``). Otherwise the RTO doubles and keeps doubling
        until a valid RTT sample (Karn); everything outstanding is
        considered lost and retransmitted from ``snd_una`` (as Linux's
        ``tcp_enter_loss`` marks every segment lost; with SACK, SACKed
        ranges are skipped), with the congestion window collapsed to one
        segment.
        """
        st = self.state
        if st is TcpState.SYN_SENT or st is TcpState.SYN_RECV:
            limit = self.settings.tcp_syn_retries
            # Linux 6.5+ tcp_syn_linear_timeouts: the first SYN retransmissions
            # keep the initial RTO, and come on top of tcp_syn_retries
            # (tcp_write_timeout's max_retransmits for SYN-SENT).
            linear = self.settings.tcp_syn_linear_timeouts if st is TcpState.SYN_SENT else 0
            limit += linear
            if st is TcpState.SYN_RECV and self.passive:
                limit = self.settings.tcp_synack_retries
            expire = self.retransmits >= limit
            if not expire and not self.passive and self.retransmits > 0:
                # Linux tcp_write_timeout: retransmits_timed_out with the user timeout.
                expire = user_timeout_expired(now, self.rtx_start, self.user_timeout)
            resend = True
            if self.defer_accept and self.passive:
                # Linux syn_ack_recalc: a request whose bare ACK TCP_DEFER_ACCEPT
                # dropped lives until the deferral is over, and gets no SYN-ACK
                # until its last period (a last chance for data or an ACK).
                acked = self.defer_acked
                expire = expire and (not acked or self.retransmits >= self.defer_accept)
                resend = not acked or self.retransmits >= self.defer_accept - 1
            if expire:
                self.counters.TcpAttemptFails += 1
                self.fail(0 if self.passive else errno.ETIMEDOUT, Event.TIMEOUT)
                return
            self.retransmits += 1
            if resend:
                self.total_retrans += 1
                self.counters.TcpRetransSegs += 1
                self.syn_pending = True
            if self.retransmits > linear:
                self.rtt.backoff_rto()
            self.arm_retransmit(now)
            if self.user_timeout > 0 and not self.passive:
                self.timers.retransmit = now + clamp_to_user_timeout(
                    now, self.rtt.rto, self.rtx_start, self.user_timeout
                )
            return
        if self.snd_una == self.snd_nxt:
            return
        if self.rtx_start is None:
            self.rtx_start = now
        timed_out = self.retransmits >= self.settings.tcp_retries2
        if self.user_timeout > 0:
            timed_out = now - self.rtx_start >= self.user_timeout
        if timed_out:
            self.counters.TcpExtTCPAbortOnTimeout += 1
            self.fail(errno.ETIMEDOUT, Event.TIMEOUT)
            return
        self.counters.TcpExtTCPTimeouts += 1
        first = self.retransmits == 0
        sb = self.sb
        recovering = self.recovery.in_recovery or (sb is not None and sb.in_recovery)
        frto_enter_loss(self, recovering=recovering)
        new_episode = first and not recovering
        self.cc.on_rto(now, 0, reduce_ssthresh=new_episode)
        if new_episode or self.undo_marker is None:
            start_episode(self, EPISODE_LOSS)
        else:
            # Linux tcp_enter_loss: a timeout inside an episode keeps its
            # undo_marker (an undo restores the window before the episode).
            self.undo_episode = EPISODE_LOSS
            self.high_seq = self.snd_nxt
        t = self.timers
        t.reorder = t.loss_probe = None
        self.tlp_pending = False
        if self.rack is not None:
            self.rack.on_rto()
        self.recovery.on_rto(self.snd_nxt)
        if sb is not None:
            sb.on_send(self.snd_nxt)
            sb.on_rto()
            self.sack_head = None
            self.sack_dupacks = 0
        self.retransmits += 1
        self.rtt.backoff_rto()
        self.rtt_time = None
        self.loss_mode = True
        self.rtx_nxt = self.snd_una
        self.rtx_head = False
        self.limited_transmit = 0
        self.arm_retransmit(now)
        if self.user_timeout > 0 and self.rtx_start is not None:
            # Linux tcp_clamp_rto_to_user_timeout: never sleep past the user
            # timeout (counted from the first retransmission), so the abort
            # comes exactly when it expires, not at the next backed-off RTO.
            remaining = self.rtx_start + self.user_timeout - now
            self.timers.retransmit = now + min(self.rtt.rto, remaining)

    def on_persist_timer(self, now: float) -> None:
        """Zero-window probe (RFC 9293 3.8.6.1, Linux ``tcp_probe_timer``/``tcp_write_wakeup``).

        Unlike the retransmission timer, probes answered by ACKs never time
        out the connection (Linux resets ``icsk_probes_out`` on every ACK);
        ``tcp_retries2`` unanswered probes do.
        """
        if self.sndbuf.unsent(self.snd_nxt) <= 0 or self.snd_una != self.snd_nxt:
            self.persist_backoff = 0
            self.probes_tstamp = None
            return
        if self.persist_backoff == 0 or self.probes_tstamp is None:
            # A new zero-window episode (the backoff restarts when the window
            # opens or data is sent): Linux icsk_probes_tstamp.
            self.probes_tstamp = now
        elif user_timeout_expired(now, self.probes_tstamp, self.user_timeout):
            # Linux tcp_probe_timer: probing for longer than TCP_USER_TIMEOUT
            # aborts, even while the peer answers (tcp_write_err).
            self.counters.TcpExtTCPAbortOnTimeout += 1
            self.fail(errno.ETIMEDOUT, Event.TIMEOUT)
            return
        if self.probes >= self.settings.tcp_retries2:
            self.fail(errno.ETIMEDOUT, Event.TIMEOUT)
            return
        self.probes += 1
        self.probe_pending = True
        self.persist_backoff += 1
        when = min(self.rtt.rto * (1 << self.persist_backoff), TCP_PROBE_MAX)
        self.timers.persist = now + clamp_probe0_to_user_timeout(
            now, when, self.probes_tstamp, self.user_timeout
        )

    def on_keepalive_timer(self, now: float) -> None:
        """Keepalive (RFC 1122 4.2.3.6, Linux ``tcp_keepalive_timer``).

        After ``keepidle`` seconds without input and with nothing in flight,
        send a probe (``seq = snd_una - 1``, no data) every ``keepintvl``;
        ``keepcnt`` unanswered probes end the connection with ETIMEDOUT.
        """
        if not self.keepalive or self.state not in (
            TcpState.ESTABLISHED,
            TcpState.CLOSE_WAIT,
            TcpState.FIN_WAIT2,
        ):
            return
        if self.snd_una != self.snd_nxt or self.sndbuf.unsent(self.snd_nxt) > 0:
            self.timers.keepalive = now + self.keepidle
            return
        idle = now - self.last_recv
        if idle < self.keepidle:
            self.timers.keepalive = self.last_recv + self.keepidle
            return
        if keepalive_expired(
            idle=idle, probes_out=self.probes, keepcnt=self.keepcnt, user_timeout=self.user_timeout
        ):
            self.rst_pending = True
            # tcp_write_err counts TCPAbortOnTimeout for keepalive deaths too.
            self.counters.TcpExtTCPAbortOnTimeout += 1
            self.fail(errno.ETIMEDOUT, Event.TIMEOUT)
            return
        self.probes += 1
        self.probe_pending = True
        self.keepalive_probe = True
        self.counters.TcpExtTCPKeepAlive += 1
        self.timers.keepalive = now + self.keepintvl

    def set_keepalive(self, now: float, on: bool) -> None:
        """``SO_KEEPALIVE``: arm or disarm the keepalive timer."""
        self.keepalive = on
        self.timers.keepalive = (self.last_recv + self.keepidle) if on else None
        if on and self.timers.keepalive is not None and self.timers.keepalive < now:
            self.timers.keepalive = now

    # -- application side (tcp.c) -----------------------------------------------

    def send(
        self,
        now: float,
        data: bytes | bytearray | memoryview,
        *,
        more: bool = False,
        oob: bool = False,
    ) -> int:
        """Queue ``data``; return the bytes accepted (0: the send buffer is full).

        ``more`` is ``MSG_MORE``: hold a partial last segment for more data.
        ``oob`` is ``MSG_OOB`` (Linux ``tcp_mark_urg``): the urgent pointer
        moves to the end of what was queued; segments before it carry URG
        until the peer acknowledges it.

        Raises the pending error first (Linux ``sk_stream_error``), EPIPE
        after shutdown(SHUT_WR)/close or once closed, and BlockingIOError
        (EAGAIN) before the handshake completes (Linux waits in
        ``sk_stream_wait_connect``; a non-blocking caller gets EAGAIN).
        """
        if self.error:
            raise os_error(self.take_error())
        st = self.state
        if self.fin_queued or st is TcpState.CLOSE or st is TcpState.LISTEN:
            raise os_error(errno.EPIPE)
        if st is TcpState.SYN_SENT or st is TcpState.SYN_RECV:
            raise os_error(errno.EAGAIN)
        n = self.sndbuf.write(data)
        self.more = more
        if oob and n:
            self.snd_up = self.sndbuf.end_seq
        return n

    def recv(self, now: float, n: int = -1) -> bytes:
        """Take up to ``n`` bytes (all if negative); ``b""`` only at EOF.

        Raises the pending error (ECONNRESET, ECONNREFUSED, ETIMEDOUT, ...)
        once, like Linux's ``sock_error``, and BlockingIOError (EAGAIN) when
        nothing is readable yet. Reading may open the window enough to
        warrant an immediate window update (Linux ``tcp_cleanup_rbuf``), so
        a drained buffer never waits for the delayed-ACK timer.
        """
        if self.urg_data:
            # tcp_recvmsg at the mark: step over the out-of-line byte, then
            # read no further than the next mark.
            urgent.skip_mark(self, peek=False)
            n = urgent.limit(self, n, 0)
        if len(self.rcvbuf):
            data = self.rcvbuf.read(n)
            if self.urg_data:
                urgent.read_done(self)
            if self.rcvbuf_auto:
                self.rcv_space_adjust(now)
            if (
                self.is_established
                and not self.fin_received
                and self.rwnd.update_due(
                    self.rcv_nxt,
                    free_space=self.rcvbuf.free_space,
                    allowed_space=self.rcvbuf.capacity,
                    rcv_mss=self.rcv_mss,
                )
            ):
                self.ack_now = True
            return data
        if self.error:
            raise os_error(self.take_error())
        if self.fin_received or self.shut_rd or self.state is TcpState.CLOSE:
            return b""
        raise os_error(errno.EAGAIN)

    def peek(self, n: int = -1) -> bytes:
        """``recv(MSG_PEEK)`` of the readable bytes: like :meth:`recv`, stopping at the mark."""
        if not self.urg_data:
            return self.rcvbuf.peek(n)
        skip = urgent.skip_mark(self, peek=True)
        n = urgent.limit(self, n, skip)
        if skip:
            data = self.rcvbuf.peek(n + 1 if n >= 0 else -1)
            return data[1:]
        return self.rcvbuf.peek(n)

    def rcv_space_adjust(self, now: float) -> None:
        """Receive-buffer auto-tuning after a read (Linux ``tcp_rcv_space_adjust``).

        Once per receiver-estimated RTT, the bytes the application read in
        that RTT are compared with the previous RTT's; when the reader keeps
        up with a growing rate, the buffer is sized for twice the bytes per
        RTT plus 16 segments of slack (more while the rate is still rising,
        as in slow start), up to ``tcp_rmem[2]``. Half of it is window
        (``tcp_adv_win_scale=1``); the window grows into it as
        ``rcv_ssthresh`` rises with each segment. Never after ``SO_RCVBUF``.
        """
        rtt = self.rcv_rtt
        if not rtt or now - self.rcvq_time < rtt:
            return
        copied = self.bytes_received - len(self.rcvbuf)  # copied_seq, as a count
        got = copied - self.rcvq_seq
        space = self.rcvq_space
        if got > space > 0:
            rcvwin = 2 * got + 16 * self.advmss
            rcvwin += 2 * (rcvwin * (got - space) // space)
            rb = self.rcvbuf
            rcvbuf = min(space_from_win(rcvwin, rb.scaling_ratio), self.settings.tcp_rmem[2])
            if rcvbuf > rb.rcvbuf:
                rb.set_rcvbuf(rcvbuf)
                rb.max_ooo_pieces = max(rb.max_ooo_pieces, rb.capacity // 256)
                rw = self.rwnd
                top = 0xFFFF << rw.rcv_wscale
                rw.window_clamp = min(max(rw.window_clamp, rb.capacity), top)
            self.rcvq_space = got
        elif got > space:
            self.rcvq_space = got
        self.rcvq_seq = copied
        self.rcvq_time = now

    def rcv_rtt_sample(self, sample: float, *, win_dep: bool) -> None:
        """The receiver's RTT estimate (Linux ``tcp_rcv_rtt_update``).

        Timestamp samples are smoothed with gain 1/8; window-based ones
        (one window of data per round trip, an upper bound) only lower it.
        """
        if sample <= 0:
            return
        rtt = self.rcv_rtt
        if not rtt:
            self.rcv_rtt = sample
        elif not win_dep:
            self.rcv_rtt = rtt + (sample - rtt) / 8
        elif sample < rtt:
            self.rcv_rtt = sample

    @property
    def readable(self) -> bool:
        """``recv`` would not raise EAGAIN (data, EOF or an error is there)."""
        return bool(
            (urgent.readable_len(self) if self.urg_data else len(self.rcvbuf))
            or self.error
            or self.fin_received
            or self.shut_rd
            or self.state is TcpState.CLOSE
        )

    @property
    def writable(self) -> bool:
        """``send`` would accept bytes or report an error."""
        if self.error or self.state is TcpState.CLOSE or self.fin_queued:
            return True
        return self.is_established and self.sndbuf.free > 0

    def shutdown(self, now: float, how: int) -> None:
        """``shutdown(2)``: ``how`` is 0 (SHUT_RD), 1 (SHUT_WR) or 2 (SHUT_RDWR).

        SHUT_WR queues a FIN behind the data (Linux ``tcp_shutdown`` ->
        ``tcp_close_state``): ESTABLISHED or SYN-RECEIVED go to FIN-WAIT-1,
        CLOSE-WAIT to LAST-ACK. SHUT_RD makes ``recv`` return EOF.
        """
        if how not in (0, 1, 2):
            raise os_error(errno.EINVAL)
        if how in (0, 2):
            self.shut_rd = True
            self.events |= EV_READABLE
        if how in (1, 2):
            self._queue_fin()

    def _queue_fin(self) -> None:
        st = self.state
        if self.fin_queued:
            return
        if st in (TcpState.ESTABLISHED, TcpState.SYN_RECV):
            self.set_state(TcpState.FIN_WAIT1, Event.CLOSE)
        elif st is TcpState.CLOSE_WAIT:
            self.set_state(TcpState.LAST_ACK, Event.CLOSE)
        else:
            return
        self.fin_queued = True
        self.fin_seq = self.data_end

    def close(self, now: float, *, linger_zero: bool = False) -> None:
        """``close(2)`` (Linux ``__tcp_close``): orphan the connection and finish it.

        With unread data, or ``SO_LINGER`` with a zero timeout, the
        connection is aborted with an RST (RFC 2525 2.17, RFC 9293 3.10.4;
        Linux counts ``TCPAbortOnClose``/``TCPAbortOnLinger``). SYN-SENT just
        goes to CLOSED. Otherwise a FIN is queued and, once in FIN-WAIT-2,
        the orphan lingers at most ``tcp_fin_timeout`` seconds.
        """
        self.orphan = True
        self.shut_rd = True
        st = self.state
        if st is TcpState.CLOSE:
            return
        if st is TcpState.SYN_SENT or st is TcpState.LISTEN:
            self.set_state(TcpState.CLOSE, Event.CLOSE)
            return
        if len(self.rcvbuf) or linger_zero:
            if len(self.rcvbuf):
                self.counters.TcpExtTCPAbortOnClose += 1
            self.abort(now)
            return
        self._queue_fin()
        if self.state is TcpState.FIN_WAIT2:
            self.timers.fin_wait2 = now + self.settings.tcp_fin_timeout

    def abort(self, now: float) -> None:
        """ABORT (RFC 9293 3.10.5): send an RST if synchronized, then CLOSED at once."""
        st = self.state
        if st is TcpState.CLOSE:
            return
        if st.is_synchronized and st is not TcpState.TIME_WAIT:
            self.rst_pending = True
        if st in (TcpState.ESTABLISHED, TcpState.CLOSE_WAIT):
            self.counters.TcpEstabResets += 1
        self.set_state(TcpState.CLOSE, Event.ABORT if st.is_synchronized else Event.CLOSE)

    def set_nodelay(self, now: float, on: bool) -> None:
        """``TCP_NODELAY``: disable Nagle's algorithm (RFC 896)."""
        self.nodelay = on

    def set_quickack(self, now: float, on: bool) -> None:
        """``TCP_QUICKACK``: ACK the next segments at once (Linux ``tcp_enter_quickack_mode``).

        As in Linux the mode is not permanent: it lasts for up to
        ``TCP_MAX_QUICKACKS`` segments; setting it also sends an ACK owed now.
        """
        if on:
            # __tcp_sock_set_quickack: leave pingpong mode, send an owed ACK.
            self.pingpong = False
            self.quickack = TCP_MAX_QUICKACKS
            if self.timers.delack is not None:
                self.ack_now = True
        else:
            # __tcp_sock_set_quickack(0) enters pingpong mode: ACKs are delayed.
            self.quickack = 0
            self.pingpong = True

    def set_cork(self, now: float, on: bool) -> None:
        """``TCP_CORK``: hold partial segments until uncorked (Linux ``TCP_NAGLE_CORK``)."""
        self.cork = on

    # -- helpers shared by input and output --------------------------------------

    def in_flight_bytes(self) -> int:
        """Bytes (sequence space) considered in the network (``tcp_packets_in_flight``, in bytes).

        After a timeout everything outstanding counts as lost until it is
        retransmitted; with SACK it is RFC 6675's ``pipe``; in NewReno fast
        recovery each duplicate ACK counts one segment as having left the
        network (Linux's Reno ``sacked_out``).
        """
        if self.loss_mode:
            return max(seq_diff(self.rtx_nxt, self.snd_una), 0)
        sb = self.sb
        if sb is not None:
            sb.on_send(self.snd_nxt)
            return max(sb.pipe(), 0)  # RFC 6675 SetPipe
        if self.frto == FRTO_NEW:
            return frto_in_flight(self)
        out = seq_diff(self.snd_nxt, self.snd_una)
        if self.recovery.in_recovery:
            out -= min(self.recovery.dupacks, 0xFFFF) * self.snd_mss
            if self.rtx_head:
                # The head is marked lost and not resent yet (Linux lost_out).
                out -= self.snd_mss
        return max(out, 0)

    def window_field(self) -> int:
        """Choose the window for an outgoing non-SYN segment (records rcv_wnd/rcv_wup)."""
        rb = self.rcvbuf
        # Positional: this runs for every segment sent (free_space, allowed_space, rcv_mss).
        return self.rwnd.select(self.rcv_nxt, rb.free_space, rb.capacity, self.rcv_mss)

    def probe_seq(self) -> int:
        """Sequence number of a keepalive or zero-window probe: ``snd_una - 1`` (already acked)."""
        return seq_sub(self.snd_una, 1)
