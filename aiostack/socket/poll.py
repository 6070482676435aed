"""Readiness masks as Linux's ``tcp_poll`` and ``datagram_poll`` compute them.

Why a mask and not just "readable": event-driven code asks *which* call
would complete before making it, and code written against the kernel
relies on Linux's corners. A fresh TCP socket is ``POLLOUT | POLLHUP``; a
connection that ended (RST, timeout, TIME_WAIT) is readable *and* writable,
so the next call reports its error or end-of-file instead of blocking; an
urgent byte that arrived sets ``POLLPRI`` (the readiness side of SIGURG)
and an out-of-line byte at the read position does not count as readable.
:meth:`aiostack.socket.Socket.poll` returns these bits and
:meth:`aiostack.socket.Socket.wait` sleeps until one of them is set.

The bit values are poll(2)'s (``select.POLLIN`` ...), so masks compare
directly with what ``select.poll`` reports for a kernel socket; the
differential suite checks that they do.
"""

from __future__ import annotations

import select
from typing import TYPE_CHECKING

from aiostack.core.tcp import urgent
from aiostack.core.tcp.state import TcpState

if TYPE_CHECKING:
    from aiostack.core.dgram_queue import DatagramQueue
    from aiostack.core.tcp.buffers import SendBuffer
    from aiostack.core.udp import UdpEndpoint
    from aiostack.socket.socket import Socket
    from aiostack.socket.tcp import TcpSock

POLLIN = select.POLLIN
POLLPRI = select.POLLPRI
POLLOUT = select.POLLOUT
POLLERR = select.POLLERR
POLLHUP = select.POLLHUP
POLLNVAL = select.POLLNVAL
POLLRDNORM = select.POLLRDNORM
POLLRDBAND = select.POLLRDBAND
POLLWRNORM = select.POLLWRNORM
POLLWRBAND = select.POLLWRBAND
POLLRDHUP = select.POLLRDHUP
#: Every event a caller can ask for (poll(2) adds POLLERR, POLLHUP and POLLNVAL itself).
ALL_EVENTS = (
    POLLIN
    | POLLPRI
    | POLLOUT
    | POLLRDNORM
    | POLLRDBAND
    | POLLWRNORM
    | POLLWRBAND
    | POLLRDHUP
    | POLLERR
    | POLLHUP
    | POLLNVAL
)
#: Reported whether asked for or not, as poll(2) does.
ALWAYS = POLLERR | POLLHUP | POLLNVAL

#: ``sk_shutdown`` bits.
RCV_SHUTDOWN = 1
SEND_SHUTDOWN = 2
SHUTDOWN_MASK = RCV_SHUTDOWN | SEND_SHUTDOWN

_READABLE = POLLIN | POLLRDNORM
_WRITABLE = POLLOUT | POLLWRNORM
_CLOSE = TcpState.CLOSE
_TIME_WAIT = TcpState.TIME_WAIT
_OPENING = (TcpState.SYN_SENT, TcpState.SYN_RECV)


def tcp_poll(sock: Socket, st: TcpSock) -> int:
    """Linux ``tcp_poll`` for a socket whose TCP state is ``st``."""
    listener = st.listener
    if listener is not None:  # inet_csk_listen_poll
        return _READABLE if listener.acceptable else 0
    conn = st.conn
    shutdown = sock.shutdown_mask
    if conn is None:
        state = _CLOSE
    else:
        state = conn.state
        if state is _TIME_WAIT or state is _CLOSE:
            # tcp_done (RST, timeout, or tcp_time_wait handing the connection to
            # a timewait sock): the socket is CLOSE with both directions shut.
            state = _CLOSE
            shutdown = SHUTDOWN_MASK
        elif conn.fin_received:
            shutdown |= RCV_SHUTDOWN  # tcp_fin
    mask = 0
    if shutdown == SHUTDOWN_MASK or state is _CLOSE:
        mask |= POLLHUP
    if shutdown & RCV_SHUTDOWN:
        mask |= _READABLE | POLLRDHUP
    if state not in _OPENING:
        avail = len(st.pushback)
        target = 1  # sock_rcvlowat: SO_RCVLOWAT is 1
        if conn is not None:
            avail += len(conn.rcvbuf)
            if conn.urg_data and not conn.urginline and conn.urg_seq == urgent.copied_seq(conn):
                target += 1  # the out-of-line byte at the read position is not data
        if avail >= target:
            mask |= _READABLE
        if shutdown & SEND_SHUTDOWN or conn is None or _stream_writeable(conn.sndbuf):
            mask |= _WRITABLE
        if conn is not None and conn.urg_data & urgent.URG_VALID:
            mask |= POLLPRI
    if conn is not None and conn.error:
        mask |= POLLERR
    return mask


def _stream_writeable(sndbuf: SendBuffer) -> bool:
    """``__sk_stream_is_writeable``: free space at least half of what is queued.

    Linux counts ``sk_wmem_queued`` in skb truesize against a doubled
    SO_SNDBUF; here both sides are payload bytes, the same proportion.
    """
    return sndbuf.free >= len(sndbuf) >> 1


def datagram_poll(sock: Socket, ep: DatagramQueue | UdpEndpoint) -> int:
    """Linux ``datagram_poll`` (UDP, raw and ping sockets; nothing is queued for sending)."""
    mask = _WRITABLE | POLLWRBAND  # sock_writeable: sends never wait for memory here
    if ep.error:
        mask |= POLLERR
    shutdown = sock.shutdown_mask
    if shutdown & RCV_SHUTDOWN:
        mask |= POLLRDHUP | _READABLE
    if shutdown == SHUTDOWN_MASK:
        mask |= POLLHUP
    if ep.queue:
        mask |= _READABLE
    return mask


__all__ = [
    "ALL_EVENTS",
    "ALWAYS",
    "POLLERR",
    "POLLHUP",
    "POLLIN",
    "POLLNVAL",
    "POLLOUT",
    "POLLPRI",
    "POLLRDBAND",
    "POLLRDHUP",
    "POLLRDNORM",
    "POLLWRBAND",
    "POLLWRNORM",
    "datagram_poll",
    "tcp_poll",
]
