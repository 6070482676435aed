"""A listening socket: SYN queue, accept queue, SYN cookies (Linux ``inet_connection_sock.c``).

RFC 9293 3.10.7.2 (LISTEN) with Linux's queueing:

- A SYN creates a child connection in SYN-RECEIVED (Linux's request sock,
  here a full :class:`TcpConnection` so the SYN-ACK is retransmitted by the
  child's own timer, ``tcp_synack_retries`` times). Children live in the
  *SYN queue*, keyed by the peer's address and port, until the ACK that
  completes the handshake arrives.
- The completed child moves to the *accept queue*, which holds
  ``backlog + 1`` connections, as Linux's ``sk_acceptq_is_full`` (``>``,
  not ``>=``) allows. When it is full, a SYN is dropped and the completing
  ACK is dropped too (the child stays in SYN-RECEIVED and its SYN-ACK is
  retransmitted later, which gives the application time to accept), both
  counted as ``ListenOverflows`` and ``ListenDrops``; with
  ``tcp_abort_on_overflow`` the completing ACK is answered with an RST
  instead (Linux ``tcp_check_req``'s ``listen_overflow``).
- When the SYN queue is full (more than ``backlog`` children, capped by
  ``tcp_max_syn_backlog``) and ``tcp_syncookies`` is 1 (or always when it
  is 2), the SYN is answered statelessly with a SYN cookie (RFC 4987 3.6,
  Linux ``tcp_conn_request`` with ``want_cookie``): the MSS is encoded in
  the ISN and, with timestamps, window scale and SACK in the TSval
  (:mod:`.syncookies`); a valid cookie ACK creates the connection directly
  in ESTABLISHED. Cookie ACKs are only checked within two minutes of the
  last overflow (``tcp_synq_no_recent_overflow``).
- With ``TCP_DEFER_ACCEPT`` (:attr:`TcpListener.defer_accept`, in SYN-ACK
  timeouts) the handshake's bare ACK is dropped and the child stays in
  SYN-RECEIVED until data arrives; its timer then resends nothing until
  the deferral's last period (Linux ``tcp_check_req`` and
  ``syn_ack_recalc``).
- A SYN that reopens a pair in TIME-WAIT brings the ISN the demux computed
  (``tcp_tw_isn``); it never gets a cookie and skips the SYN-queue limit.
- An ACK that matches nothing is answered with ``<SEQ=SEG.ACK><CTL=RST>``;
  an RST is ignored; a SYN with ECE and CWR set is an ordinary SYN (RFC
  3168 ECN setup; aiostack does not negotiate ECN, but must not refuse it).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from aiostack.core.counters import Counters
from aiostack.core.tcp.buffers import select_initial_window
from aiostack.core.tcp.connection import TcpConnection
from aiostack.core.tcp.isn import IsnGenerator, tcp_time_stamp
from aiostack.core.tcp.output import Segment, reset_for
from aiostack.core.tcp.rtt import TCP_RTO_MAX, TCP_TIMEOUT_INIT
from aiostack.core.tcp.state import TcpState
from aiostack.core.tcp.syncookies import (
    SynCookies,
    cookie_init_timestamp,
    cookie_timestamp_decode,
    recent_overflow,
)
from aiostack.settings import Settings
from aiostack.wire import tcp as wtcp
from aiostack.wire.seqnum import seq_ge, seq_sub

__all__ = ["TcpListener", "retrans_to_secs", "secs_to_retrans"]

_SYN = wtcp.SYN
_ACK = wtcp.ACK
_RST = wtcp.RST
_FIN = wtcp.FIN


def secs_to_retrans(seconds: int) -> int:
    """TCP_DEFER_ACCEPT seconds as SYN-ACK timeouts (Linux ``secs_to_retrans``).

    The smallest number of backed-off SYN-ACK periods (1, 2, 4... s, each at
    most ``TCP_RTO_MAX``) that covers ``seconds``; 0 or less turns it off,
    and the count saturates at 255 (a ``u8``).
    """
    if seconds <= 0:
        return 0
    timeout = int(TCP_TIMEOUT_INIT)
    period = timeout
    res = 1
    while seconds > period and res < 255:
        res += 1
        timeout = min(timeout * 2, int(TCP_RTO_MAX))
        period += timeout
    return res


def retrans_to_secs(retrans: int) -> int:
    """What ``getsockopt(TCP_DEFER_ACCEPT)`` reads back (Linux ``retrans_to_secs``).

    The seconds ``retrans`` SYN-ACK periods last: setting 5 reads back 7.
    """
    if retrans <= 0:
        return 0
    timeout = int(TCP_TIMEOUT_INIT)
    period = timeout
    for _ in range(retrans - 1):
        timeout = min(timeout * 2, int(TCP_RTO_MAX))
        period += timeout
    return period


class TcpListener:
    """One listening socket on ``(local_addr, local_port)``; ``local_addr`` 0 is INADDR_ANY.

    :meth:`on_segment` returns ``(conn, reply)``: ``conn`` is a connection
    the shell must now poll (a new child whose SYN-ACK is due, or one that
    just completed), ``reply`` an immediate segment (RST or cookie SYN-ACK).
    :meth:`accept` pops a completed connection.
    """

    __slots__ = (
        "accept_queue",
        "backlog",
        "child_options",
        "cookies",
        "counters",
        "defer_accept",
        "isn",
        "last_overflow",
        "local_addr",
        "local_port",
        "mtu",
        "settings",
        "syn_queue",
        "user_mss",
    )

    def __init__(
        self,
        *,
        local_addr: int,
        local_port: int,
        backlog: int,
        isn: IsnGenerator,
        cookies: SynCookies | None = None,
        settings: Settings | None = None,
        counters: Counters | None = None,
        mtu: int = 1500,
    ) -> None:
        self.local_addr = local_addr
        self.local_port = local_port
        self.settings = settings if settings is not None else Settings()
        #: ``listen(backlog)`` clamped by ``net.core.somaxconn`` as Linux does.
        self.backlog = max(0, min(backlog, self.settings.somaxconn))
        self.counters = counters if counters is not None else Counters()
        self.isn = isn
        self.cookies = cookies
        self.mtu = mtu
        self.syn_queue: dict[tuple[int, int], TcpConnection] = {}
        self.accept_queue: deque[TcpConnection] = deque()
        #: What children inherit from the listening socket (``sk_clone_lock``):
        #: ``sndbuf``/``rcvbuf``/``congestion_control`` keyword arguments of
        #: :meth:`TcpConnection.from_syn`, set by the socket layer.
        self.child_options: dict[str, Any] = {}
        #: The listening socket's TCP_MAXSEG (``rx_opt.user_mss``), 0 if unset: it caps
        #: the MSS each child advertises (SYN-ACK included) and sends with.
        self.user_mss = 0
        #: TCP_DEFER_ACCEPT as a count of SYN-ACK timeouts (``rskq_defer_accept``,
        #: see :func:`secs_to_retrans`); 0: off.
        self.defer_accept = 0
        self.last_overflow: float | None = None

    def _clamp_mss(self, child: TcpConnection) -> None:
        """``tcp_mss_clamp``/``tcp_parse_options`` with the listener's ``user_mss``."""
        if self.user_mss:
            child.advmss = min(child.advmss, self.user_mss)
            child.mss_clamp = min(child.mss_clamp, self.user_mss)

    @property
    def acceptable(self) -> bool:
        """A completed connection is waiting for :meth:`accept` (the listener is readable)."""
        return bool(self.accept_queue)

    def accept_queue_full(self) -> bool:
        """Linux ``sk_acceptq_is_full``: more than ``backlog`` completed connections wait."""
        return len(self.accept_queue) > self.backlog

    def syn_queue_full(self) -> bool:
        """Linux ``inet_csk_reqsk_queue_is_full``: more than ``backlog`` requests wait.

        ``>`` as in Linux 6.x (like ``sk_acceptq_is_full``); the backlog is
        also capped by ``tcp_max_syn_backlog``.
        """
        self.reap()
        limit = min(self.backlog, self.settings.tcp_max_syn_backlog)
        return len(self.syn_queue) > limit

    def reap(self) -> None:
        """Forget children that died in SYN-RECEIVED (RST, SYN-ACK retries exhausted)."""
        dead = [k for k, c in self.syn_queue.items() if c.state is TcpState.CLOSE]
        for k in dead:
            del self.syn_queue[k]

    def accept(self) -> TcpConnection | None:
        """Pop the oldest completed connection, or None (the socket layer maps that to EAGAIN)."""
        return self.accept_queue.popleft() if self.accept_queue else None

    def on_segment(
        self,
        now: float,
        src_addr: int,
        dst_addr: int,
        header: wtcp.TcpHeader,
        payload: memoryview | bytes,
        tw_isn: int = 0,
    ) -> tuple[TcpConnection | None, Segment | None]:
        """A segment to this listener's port that matched no connection.

        ``tw_isn`` is nonzero for a SYN that reopens a pair in TIME-WAIT: the
        ISN the demux computed from the old connection (Linux's
        ``tcp_tw_isn``), used instead of a fresh one.
        """
        flags = header.flags
        key = (src_addr, header.src_port)
        child = self.syn_queue.get(key)
        if child is not None and child.state is not TcpState.CLOSE:
            return self._to_child(now, key, child, header, payload)
        if flags & _RST:
            return None, None
        if flags & _ACK:
            if (
                not flags & _SYN
                and self.cookies is not None
                and self.settings.tcp_syncookies
                and recent_overflow(now, self.last_overflow)
            ):
                return self._cookie_ack(now, src_addr, dst_addr, header, payload)
            return None, self._rst(header, payload)
        if not flags & _SYN:
            return None, None
        return self._syn(now, src_addr, dst_addr, header, tw_isn)

    def _rst(self, header: wtcp.TcpHeader, payload: memoryview | bytes) -> Segment | None:
        rst = reset_for(header, len(payload))
        if rst is not None:
            self.counters.TcpOutRsts += 1
            self.counters.TcpOutSegs += 1
        return rst

    def _overflow(self) -> None:
        self.counters.TcpExtListenOverflows += 1
        self.counters.TcpExtListenDrops += 1

    def _to_child(
        self,
        now: float,
        key: tuple[int, int],
        child: TcpConnection,
        header: wtcp.TcpHeader,
        payload: memoryview | bytes,
    ) -> tuple[TcpConnection | None, Segment | None]:
        flags = header.flags
        if (
            child.defer_accept
            and child.retransmits < child.defer_accept
            and flags & (_ACK | _SYN | _RST | _FIN) == _ACK
            and not payload
            and header.seq == child.rcv_nxt
            and header.ack == child.snd_nxt
            and child.state is TcpState.SYN_RECV
        ):
            # Linux tcp_check_req: while TCP_DEFER_ACCEPT is active a bare ACK
            # (end_seq == rcv_isn + 1) that would complete the handshake is
            # dropped and the request remembered as acked; data completes it.
            ts = header.options.timestamps
            if not child.ts_ok or ts is None or seq_ge(ts[0], child.ts_recent):
                if ts is not None and child.ts_ok:
                    child.ts_recent = ts[0]
                child.defer_acked = True
                return None, None
        completing = flags & _ACK and not flags & (_RST | _SYN)
        if completing and self.accept_queue_full():
            # Linux tcp_check_req -> listen_overflow.
            self._overflow()
            if self.settings.tcp_abort_on_overflow:
                del self.syn_queue[key]
                child.abort(now)
                child.rst_pending = False
                return None, self._rst(header, payload)
            return None, None
        reply = child.on_segment(now, header, payload)
        if child.state is TcpState.CLOSE:
            del self.syn_queue[key]
            return None, reply
        if child.state is not TcpState.SYN_RECV:
            del self.syn_queue[key]
            self.accept_queue.append(child)
        return child, reply

    def _syn(
        self, now: float, src_addr: int, dst_addr: int, header: wtcp.TcpHeader, tw_isn: int = 0
    ) -> tuple[TcpConnection | None, Segment | None]:
        st = self.settings
        if self.accept_queue_full():
            # Linux tcp_conn_request: no room to ever accept it; drop the SYN.
            self._overflow()
            return None, None
        # tcp_conn_request: a SYN reopening TIME-WAIT (isn != 0) is never a
        # cookie and is not held to the SYN-queue limit.
        want_cookie = st.tcp_syncookies == 2 and not tw_isn
        if not want_cookie and not tw_isn and self.syn_queue_full():
            self.last_overflow = now
            if st.tcp_syncookies and self.cookies is not None:
                want_cookie = True
            else:
                self.counters.TcpExtListenDrops += 1
                return None, None
        ts_offset = self.isn.ts_offset(dst_addr, src_addr) if st.tcp_timestamps == 1 else 0
        if want_cookie and self.cookies is not None:
            return None, self._cookie_syn_ack(now, src_addr, dst_addr, header, ts_offset)
        iss = tw_isn or self.isn.isn(now, dst_addr, header.dst_port, src_addr, header.src_port)
        child = TcpConnection.from_syn(
            now,
            header,
            local_addr=dst_addr,
            remote_addr=src_addr,
            iss=iss,
            ts_offset=ts_offset,
            settings=st,
            counters=self.counters,
            mtu=self.mtu,
            **self.child_options,
        )
        self._clamp_mss(child)
        child.defer_accept = self.defer_accept
        self.counters.TcpPassiveOpens += 1
        self.syn_queue[(src_addr, header.src_port)] = child
        return child, None

    def _cookie_syn_ack(
        self,
        now: float,
        src_addr: int,
        dst_addr: int,
        header: wtcp.TcpHeader,
        ts_offset: int,
    ) -> Segment | None:
        """A stateless SYN-ACK whose ISN is a SYN cookie (Linux ``cookie_v4_init_sequence``)."""
        assert self.cookies is not None
        opts = header.options
        peer_mss = opts.mss if opts.mss is not None else 536
        # Our SYN-ACK still advertises our own MSS; the peer's (rounded to the
        # cookie table) is what the cookie remembers.
        cookie, _ = self.cookies.init_sequence(
            now,
            src_addr,
            dst_addr,
            header.src_port,
            header.dst_port,
            header.seq,
            min(peer_mss, self.mtu - 40, self.user_mss or peer_mss),
        )
        probe = TcpConnection.from_syn(
            now,
            header,
            local_addr=dst_addr,
            remote_addr=src_addr,
            iss=cookie,
            settings=self.settings,
            counters=Counters(),
            mtu=self.mtu,
            **self.child_options,
        )
        self._clamp_mss(probe)
        if probe.ts_ok:
            tsval = cookie_init_timestamp(
                now,
                wscale=opts.wscale if probe.wscale_ok else None,
                sack=probe.sack_ok,
                ecn=False,
            )
            # Make the probe's clock read exactly the cookie TSval (plus offset).
            probe.ts_offset = (tsval + ts_offset - tcp_time_stamp(now)) & 0xFFFFFFFF
        elif probe.sack_ok or probe.wscale_ok:
            # Without timestamps a cookie has no room for these: Linux drops them.
            probe.sack_ok = probe.wscale_ok = False
        seg = probe.poll_transmit(now)
        # Linux cookie_init_sequence -> tcp_synq_overflow: every cookie sent (even
        # forced by tcp_syncookies=2, with no overflow) opens the window in which
        # cookie ACKs are checked, or the completing ACK would find it shut.
        self.last_overflow = now
        self.counters.TcpExtSyncookiesSent += 1
        self.counters.TcpOutSegs += 1
        return seg

    def _cookie_ack(
        self,
        now: float,
        src_addr: int,
        dst_addr: int,
        header: wtcp.TcpHeader,
        payload: memoryview | bytes,
    ) -> tuple[TcpConnection | None, Segment | None]:
        """An ACK that may complete a cookie handshake (Linux ``cookie_v4_check``)."""
        assert self.cookies is not None
        st = self.settings
        mss = self.cookies.check(
            now, src_addr, dst_addr, header.src_port, header.dst_port, header.seq, header.ack
        )
        ts_offset = self.isn.ts_offset(dst_addr, src_addr) if st.tcp_timestamps == 1 else 0
        ts = header.options.timestamps
        decoded = cookie_timestamp_decode(
            None if ts is None else (ts[1] - ts_offset) & 0xFFFFFFFF,
            timestamps_enabled=bool(st.tcp_timestamps),
            sack_enabled=bool(st.tcp_sack),
            window_scaling_enabled=bool(st.tcp_window_scaling),
        )
        if not mss or decoded is None:
            self.counters.TcpExtSyncookiesFailed += 1
            return None, self._rst(header, payload)
        if self.accept_queue_full():
            self._overflow()
            return None, None
        self.counters.TcpExtSyncookiesRecv += 1
        syn = wtcp.TcpHeader(
            header.src_port,
            header.dst_port,
            seq_sub(header.seq, 1),
            0,
            header.header_len,
            _SYN,
            header.window,
            0,
            0,
            wtcp.TcpOptions(
                mss=mss,
                wscale=decoded.wscale,
                sack_permitted=decoded.sack,
                timestamps=(ts[0], 0) if ts is not None else None,
            ),
        )
        child = TcpConnection.from_syn(
            now,
            syn,
            local_addr=dst_addr,
            remote_addr=src_addr,
            iss=seq_sub(header.ack, 1),
            ts_offset=ts_offset,
            settings=st,
            counters=self.counters,
            mtu=self.mtu,
            **self.child_options,
        )
        self._clamp_mss(child)
        # cookie_v4_check runs tcp_select_initial_window with req->mss, the MSS
        # the cookie encoded, not our advmss: the window is whole cookie-MSS
        # segments (65392 = 122 * 536, where a normal child offers 64240).
        rcv_wnd, _, _ = select_initial_window(
            child.rcvbuf.capacity,
            mss,
            max_space=max(st.tcp_rmem[2], st.rmem_max),
            window_clamp=child.rwnd.window_clamp,
            wscale_ok=False,
        )
        child.rwnd.rcv_wnd = child.rwnd.rcv_ssthresh = rcv_wnd
        # The SYN-ACK went out statelessly; the child starts just after it.
        child.syn_pending = False
        child.snd_nxt = child.rtx_nxt = header.ack
        self.counters.TcpPassiveOpens += 1
        reply = child.on_segment(now, header, payload)
        if child.state is TcpState.CLOSE:
            return None, reply
        self.accept_queue.append(child)
        return child, reply
