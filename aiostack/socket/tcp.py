"""Stream socket operations for TCP: Linux's ``inet_stream_ops`` plus ``tcp_prot``.

Every call follows the kernel function named in its docstring, with the
checks in the same order and the same errno (the checklist is
``ref/linux-socket-semantics.md``). The TCP protocol itself is the sans-I/O
:class:`~aiostack.core.tcp.connection.TcpConnection`; this module keeps the
socket-level state Linux keeps in ``struct socket``/``struct inet_sock``
(:class:`TcpSock`: ``SS_*`` state, bound address and port, option values
that outlive a connection) and drives the shell (:mod:`aiostack.stack.tcp`)
after every operation that may have produced segments.

Blocking follows :mod:`aiostack.socket.socket`: blocking calls wait on the
socket's wait queues and re-check after every wake-up; non-blocking ones
(``setblocking(False)`` or MSG_DONTWAIT) raise ``BlockingIOError`` where
Linux returns EAGAIN/EINPROGRESS/EALREADY.

Time-outs: SO_RCVTIMEO bounds a blocking ``recv``/``accept`` and
SO_SNDTIMEO a blocking ``send``/``connect`` (EAGAIN; EINPROGRESS or EALREADY
for connect, whose attempt goes on); see :meth:`Socket.deadline`.
``connect(AF_UNSPEC)`` is ``tcp_disconnect``; SO_LINGER {1, t} is honoured
by ``Socket.aclose`` (:meth:`TcpOps.linger`), never by the synchronous
``close``. Listeners in one SO_REUSEPORT group share connections by 4-tuple
hash (:mod:`aiostack.core.tcp.demux`).

Cancellation: a cancelled ``recv`` takes nothing (bytes that a MSG_WAITALL
receive had already gathered go back to the front of the socket's
``pushback`` queue, read before the connection's buffer); a cancelled
``accept`` pops nothing (the connection is popped only after the wait); a
cancelled ``connect`` aborts the attempt (the socket is unconnected again);
a cancelled ``send`` leaves what it had queued queued, as a signal does on
Linux.
"""

from __future__ import annotations

import asyncio
import errno
import socket as _socket
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiostack.core.tcp import congestion, urgent
from aiostack.core.tcp.connection import TcpConnection
from aiostack.core.tcp.info import tcp_info
from aiostack.core.tcp.listener import TcpListener, retrans_to_secs, secs_to_retrans
from aiostack.core.tcp.state import TcpState
from aiostack.errors import os_error
from aiostack.socket import options
from aiostack.socket.address import Address, format_address, parse_address
from aiostack.socket.ops import ProtoOps
from aiostack.socket.poll import tcp_poll
from aiostack.wire.ipv4 import ANY, is_multicast
from aiostack.wire.seqnum import seq_diff

if TYPE_CHECKING:
    from aiostack.socket.socket import Socket
    from aiostack.stack.tcp import TcpLayer

MSG_PEEK = int(_socket.MSG_PEEK)
MSG_DONTWAIT = int(_socket.MSG_DONTWAIT)
MSG_MORE = int(_socket.MSG_MORE)
MSG_WAITALL = int(_socket.MSG_WAITALL)
MSG_OOB = int(_socket.MSG_OOB)
RCV_SHUTDOWN = 1
SEND_SHUTDOWN = 2

#: ``struct socket`` states (``include/uapi/linux/net.h``).
SS_UNCONNECTED = 1
SS_CONNECTING = 2
SS_CONNECTED = 3
SS_DISCONNECTING = 4

#: Linux ``TCP_MIN_MSS`` / ``MAX_TCP_WINDOW``: the TCP_MAXSEG range.
TCP_MIN_MSS = 88
MAX_TCP_WINDOW = 32767
MAX_TCP_KEEPIDLE = 32767
MAX_TCP_KEEPINTVL = 32767
MAX_TCP_KEEPCNT = 127

_SOL_SOCKET = _socket.SOL_SOCKET
_IPPROTO_TCP = _socket.IPPROTO_TCP
_LINGER = struct.Struct("ii")
#: ``struct tcp_info`` as Linux lays it out (native alignment), up to ``tcpi_rcv_wnd``.
_TCP_INFO = struct.Struct("@8B24I4Q6I4Q2I2Q2I3I")
_CONNECTING_STATES = (TcpState.SYN_SENT, TcpState.SYN_RECV)
#: ``tcp_need_reset``: states whose disconnect sends an RST.
_RESET_ON_DISCONNECT = (
    TcpState.ESTABLISHED,
    TcpState.CLOSE_WAIT,
    TcpState.FIN_WAIT1,
    TcpState.FIN_WAIT2,
    TcpState.SYN_RECV,
)
#: SO_LINGER {on, t > 0}: close waits while our FIN is unacknowledged (``sk_stream_wait_close``).
_LINGER_STATES = (TcpState.FIN_WAIT1, TcpState.CLOSING, TcpState.LAST_ACK)


@dataclass(slots=True, eq=False)
class TcpSock:
    """The socket-level TCP state: Linux's ``struct socket`` + ``inet_sock`` fields.

    Also the bind-table entry (:meth:`~aiostack.core.tcp.ports.TcpBindTable.conflict` reads
    ``bound_addr``, ``port``, the reuse flags and :meth:`tcp_state`).
    """

    bound_addr: int = ANY
    port: int = 0
    reuseaddr: bool = False
    reuseport: bool = False
    #: bind() chose the port / the address (SOCK_BINDPORT_LOCK / SOCK_BINDADDR_LOCK).
    port_locked: bool = False
    addr_locked: bool = False
    ss: int = SS_UNCONNECTED
    conn: TcpConnection | None = None
    listener: TcpListener | None = None
    #: Bytes taken from the connection but not yet given to the application
    #: (a MSG_WAITALL receive that was cancelled or timed out); read first.
    pushback: bytes = b""
    # Options that outlive a connection (and are inherited by accepted sockets).
    keepalive: bool = False
    #: SO_OOBINLINE (SOCK_URGINLINE): urgent bytes stay in the stream.
    oobinline: bool = False
    nodelay: bool = False
    cork: bool = False
    keepidle: int = 7200
    keepintvl: int = 75
    keepcnt: int = 9
    user_timeout_ms: int = 0
    congestion: str = "cubic"
    user_mss: int = 0
    #: TCP_DEFER_ACCEPT in SYN-ACK timeouts (``secs_to_retrans``); not inherited
    #: by accepted sockets (``inet_csk_clone_lock`` clears the accept queue).
    defer_accept: int = 0
    rcvbuf: int = 131072
    sndbuf: int = 16384
    rcvbuf_set: bool = False
    sndbuf_set: bool = False
    linger: tuple[int, int] = (0, 0)
    #: SO_ERROR left by a connection the socket no longer has (``connect(AF_UNSPEC)``).
    last_error: int = 0
    #: A port given back by a disconnect, still reported by getsockname (``inet_sport``).
    stale_port: int = 0

    def tcp_state(self) -> TcpState:
        """``sk_state``: LISTEN, the connection's state, or CLOSE."""
        if self.listener is not None:
            return TcpState.LISTEN
        conn = self.conn
        return conn.state if conn is not None else TcpState.CLOSE

    def inherit(self) -> TcpSock:
        """A child's state for ``accept``: the listener's options, nothing else."""
        return TcpSock(
            reuseaddr=self.reuseaddr,
            reuseport=self.reuseport,
            keepalive=self.keepalive,
            oobinline=self.oobinline,
            nodelay=self.nodelay,
            cork=self.cork,
            keepidle=self.keepidle,
            keepintvl=self.keepintvl,
            keepcnt=self.keepcnt,
            user_timeout_ms=self.user_timeout_ms,
            congestion=self.congestion,
            user_mss=self.user_mss,
            rcvbuf=self.rcvbuf,
            sndbuf=self.sndbuf,
            rcvbuf_set=self.rcvbuf_set,
            sndbuf_set=self.sndbuf_set,
            linger=self.linger,
        )


def _child_options(st: TcpSock) -> dict[str, Any]:
    """What a listener's children get at the SYN (``sk_clone_lock`` copies the listener)."""
    child: dict[str, Any] = {"congestion_control": st.congestion}
    if st.sndbuf_set:
        child["sndbuf"] = st.sndbuf
    if st.rcvbuf_set:
        child["rcvbuf"] = st.rcvbuf
    return child


def _apply_options(st: TcpSock, conn: TcpConnection, now: float) -> None:
    """Give a new connection the socket's protocol options."""
    conn.set_nodelay(now, st.nodelay)
    conn.set_cork(now, st.cork)
    conn.urginline = st.oobinline
    conn.keepidle = float(st.keepidle)
    conn.keepintvl = float(st.keepintvl)
    conn.keepcnt = st.keepcnt
    conn.user_timeout = st.user_timeout_ms / 1000.0
    if st.keepalive:
        conn.set_keepalive(now, True)


class _EventWaker:
    """Stands in for a closed socket as a lingering orphan's owner: sets an event."""

    __slots__ = ("event",)

    def __init__(self, event: asyncio.Event) -> None:
        self.event = event

    def wake(self) -> None:
        self.event.set()

    def urgent(self) -> None:
        """Nobody to signal: the socket is closed."""


class TcpOps(ProtoOps):
    """See the module docstring."""

    # -- helpers ----------------------------------------------------------

    @staticmethod
    def state(sock: Socket) -> TcpSock:
        st = sock.protocol_state
        assert isinstance(st, TcpSock)
        return st

    @staticmethod
    def layer(sock: Socket) -> TcpLayer:
        return sock.stack.tcp

    def _drive(self, sock: Socket, conn: TcpConnection) -> None:
        tcp = sock.stack.tcp
        tcp.drive(conn, sock.stack.now())
        tcp.flush()

    def create(self, sock: Socket) -> None:
        settings = sock.stack.settings
        sock.protocol_state = TcpSock(
            keepidle=settings.tcp_keepalive_time,
            keepintvl=settings.tcp_keepalive_intvl,
            keepcnt=settings.tcp_keepalive_probes,
            congestion=settings.tcp_congestion_control,
            rcvbuf=settings.tcp_rmem[1],
            sndbuf=settings.tcp_wmem[1],
        )

    # -- bind / listen ----------------------------------------------------

    def bind(self, sock: Socket, address: Any) -> None:
        """``inet_bind`` -> ``inet_csk_get_port``: EADDRNOTAVAIL, EACCES, EINVAL, EADDRINUSE."""
        host, port = parse_address(address, "bind")
        stack = sock.stack
        st = self.state(sock)
        routes = stack.ip.routes
        settings = stack.settings
        special = host == ANY or routes.is_broadcast(host) or is_multicast(host)
        if not (special or routes.is_local(host) or settings.ip_nonlocal_bind):
            raise os_error(errno.EADDRNOTAVAIL)
        if port and port < settings.ip_unprivileged_port_start and not stack.privileged:
            raise os_error(errno.EACCES)
        if st.port or st.tcp_state() is not TcpState.CLOSE:
            raise os_error(errno.EINVAL)
        tcp = stack.tcp
        locked = port != 0
        if port == 0:
            port = tcp.ports.free_port()
            if port == 0:
                raise os_error(errno.EADDRINUSE)
        elif tcp.ports.conflict(st, host, port, listening=False):
            raise os_error(errno.EADDRINUSE)
        st.bound_addr = host
        st.port = port
        st.port_locked = locked
        st.addr_locked = host != ANY
        tcp.ports.add(st)

    def listen(self, sock: Socket, backlog: int) -> None:
        """``inet_listen``: EINVAL unless unconnected and CLOSED/LISTEN; autobind; backlog."""
        st = self.state(sock)
        stack = sock.stack
        if st.ss != SS_UNCONNECTED:
            raise os_error(errno.EINVAL)
        state = st.tcp_state()
        if state not in (TcpState.CLOSE, TcpState.LISTEN):
            raise os_error(errno.EINVAL)
        backlog = max(0, min(backlog, stack.settings.somaxconn))
        if st.listener is not None:
            st.listener.backlog = backlog
            return
        tcp = stack.tcp
        if not st.port:
            port = tcp.ports.free_port()
            if port == 0:
                raise os_error(errno.EADDRINUSE)
            st.port = port
            tcp.ports.add(st)
        elif tcp.ports.conflict(st, st.bound_addr, st.port, listening=True):
            raise os_error(errno.EADDRINUSE)
        st.conn = None
        listener = TcpListener(
            local_addr=st.bound_addr,
            local_port=st.port,
            backlog=backlog,
            isn=tcp.isn,
            cookies=tcp.cookies,
            settings=stack.settings,
            counters=stack.counters,
            mtu=stack.ip.mtu,
        )
        listener.child_options = _child_options(st)
        listener.user_mss = st.user_mss
        listener.defer_accept = st.defer_accept
        st.listener = listener
        tcp.demux.listen(listener)
        tcp.listener_owners[listener] = sock

    def _stop_listening(self, sock: Socket, st: TcpSock) -> None:
        """Close a listener: every connection still queued is reset (``inet_csk_listen_stop``)."""
        listener = st.listener
        if listener is None:
            return
        tcp = sock.stack.tcp
        now = sock.stack.now()
        tcp.demux.unlisten(listener)
        tcp.listener_owners.pop(listener, None)
        st.listener = None
        children = list(listener.accept_queue) + list(listener.syn_queue.values())
        listener.accept_queue.clear()
        listener.syn_queue.clear()
        for child in children:
            child.abort(now)
            tcp.drive(child, now)
        tcp.flush()
        sock.wake()

    async def accept(self, sock: Socket) -> tuple[Socket, Address]:
        """``inet_accept`` -> ``inet_csk_accept``: EINVAL unless listening, EAGAIN if empty."""
        from aiostack.socket.socket import Socket

        st = self.state(sock)
        if st.listener is None:
            raise os_error(errno.EINVAL)
        nonblocking = not sock.blocking
        if not st.listener.acceptable:
            if nonblocking:
                raise os_error(errno.EAGAIN)
            async with sock.deadline(sock.rcvtimeo):
                while True:
                    if sock.closed:
                        raise os_error(errno.EBADF)
                    listener = st.listener
                    if listener is None:
                        raise os_error(errno.EINVAL)
                    if listener.acceptable:
                        break
                    await sock.readers.wait()
        # From here on nothing awaits: the popped connection cannot be lost.
        listener = st.listener
        if listener is None:
            raise os_error(errno.EINVAL)
        child = listener.accept()
        assert child is not None
        stack = sock.stack
        tcp = stack.tcp
        new = Socket(stack, sock.family, sock.type, sock.proto, TcpOps())
        cst = st.inherit()
        cst.bound_addr = child.local_addr
        cst.port = child.local_port
        cst.port_locked = True
        cst.ss = SS_CONNECTED
        cst.conn = child
        new.protocol_state = cst
        tcp.ports.add(cst)
        tcp.owners[child] = new
        now = stack.now()
        _apply_options(cst, child, now)
        if child.state is not TcpState.CLOSE:
            tcp.drive(child, now)
            tcp.flush()
        new.rcvtimeo = sock.rcvtimeo
        new.sndtimeo = sock.sndtimeo
        return new, format_address(child.remote_addr, child.remote_port)

    # -- connect ------------------------------------------------------------

    async def connect(self, sock: Socket, address: Any) -> None:
        """``inet_stream_connect`` + ``tcp_v4_connect``, see the module docstring."""
        st = self.state(sock)
        if options.is_unspec(address):
            self._unspec_disconnect(sock, st)
            return
        host, port = parse_address(address, "connect")
        if st.ss == SS_CONNECTED:
            raise os_error(errno.EISCONN)
        if st.ss == SS_CONNECTING:
            err = errno.EALREADY
        else:
            if st.tcp_state() is not TcpState.CLOSE:
                raise os_error(errno.EISCONN)
            self._start_connect(sock, st, host, port)
            st.ss = SS_CONNECTING
            err = errno.EINPROGRESS
        conn = st.conn
        assert conn is not None
        if conn.state in _CONNECTING_STATES:
            if not sock.blocking:
                raise os_error(err)
            try:
                # SO_SNDTIMEO expiring leaves the attempt running and reports the
                # state's errno (EINPROGRESS, or EALREADY for a repeated call), as Linux.
                async with sock.deadline(sock.sndtimeo, err):
                    while conn.state in _CONNECTING_STATES:
                        if sock.closed:
                            raise os_error(errno.EBADF)
                        await sock.writers.wait()
            except asyncio.CancelledError:
                # A cancelled connect gives up the attempt, like a signal
                # followed by close() would: the socket is unconnected again.
                if st.conn is conn and conn.state in _CONNECTING_STATES:
                    conn.abort(sock.stack.now())
                    self._drive(sock, conn)
                    self._disconnect(sock, st)
                raise
        if conn.state is TcpState.CLOSE:
            code = conn.take_error() or errno.ECONNABORTED
            self._disconnect(sock, st)
            raise os_error(code)
        st.ss = SS_CONNECTED

    def _start_connect(self, sock: Socket, st: TcpSock, host: int, port: int) -> None:
        """``tcp_v4_connect``: route, source, ephemeral port, ISN, SYN."""
        stack = sock.stack
        tcp = stack.tcp
        routes = stack.ip.routes
        route = routes.lookup(host)
        if route is None or routes.is_broadcast(host) or is_multicast(host):
            stack.counters.IpOutNoRoutes += route is None
            raise os_error(errno.ENETUNREACH)
        src = st.bound_addr if st.bound_addr != ANY else route.source
        if not st.port:
            sport = tcp.ports.connect_port(src, host, port, tcp.demux.connections)
            if sport == 0:
                raise os_error(errno.EADDRNOTAVAIL)
            st.port = sport
            tcp.ports.add(st)
        else:
            sport = st.port
            other = tcp.demux.connections.get((src, sport, host, port))
            if other is not None and other.state is not TcpState.CLOSE:
                raise os_error(errno.EADDRNOTAVAIL)
        st.bound_addr = src
        now = stack.now()
        settings = stack.settings
        ts_offset = tcp.isn.ts_offset(src, host) if settings.tcp_timestamps == 1 else 0
        conn = TcpConnection.connect(
            now,
            local_addr=src,
            local_port=sport,
            remote_addr=host,
            remote_port=port,
            iss=tcp.isn.isn(now, src, sport, host, port),
            ts_offset=ts_offset,
            settings=settings,
            counters=stack.counters,
            mtu=stack.ip.route_mtu(now, host),
            sndbuf=st.sndbuf if st.sndbuf_set else None,
            rcvbuf=st.rcvbuf if st.rcvbuf_set else None,
            congestion_control=st.congestion,
        )
        if st.user_mss:
            conn.advmss = min(conn.advmss, st.user_mss)
        _apply_options(st, conn, now)
        st.conn = conn
        st.pushback = b""
        tcp.demux.add(conn)
        tcp.owners[conn] = sock
        tcp.drive(conn, now)
        tcp.flush()

    def _unspec_disconnect(self, sock: Socket, st: TcpSock) -> None:
        """``connect(AF_UNSPEC)`` -> ``tcp_disconnect``: abort to CLOSED, keep the binding.

        A listener stops listening (its queued children are reset); a
        synchronised connection is reset (RST) and SO_ERROR becomes
        ECONNRESET, as it does for an attempt still in SYN-SENT; the port and
        address stay bound only if bind() chose them (``tcp_set_state``
        puts an autobound port back); the shutdown mask is cleared; the
        socket may connect or listen again.
        """
        tcp = sock.stack.tcp
        if st.listener is not None:
            self._stop_listening(sock, st)
        conn = st.conn
        if conn is not None:
            state = conn.state
            # tcp_disconnect resets only where tcp_need_reset says so (or where
            # CLOSING/LAST_ACK still has something unsent); SO_ERROR becomes
            # ECONNRESET then, and for an attempt aborted in SYN-SENT.
            reset = state in _RESET_ON_DISCONNECT or (
                state in (TcpState.CLOSING, TcpState.LAST_ACK) and conn.snd_nxt != conn.data_end
            )
            if state is not TcpState.CLOSE:
                conn.abort(sock.stack.now())
                if not reset:
                    conn.rst_pending = False
                self._drive(sock, conn)
            if reset or state is TcpState.SYN_SENT:
                conn.error = errno.ECONNRESET
            tcp.owners.pop(conn, None)
            tcp.demux.remove(conn)
            st.last_error = conn.take_error()
        st.conn = None
        st.pushback = b""
        st.ss = SS_UNCONNECTED
        sock.shutdown_mask = 0
        self._put_port(sock, st)
        if not st.addr_locked:
            st.bound_addr = ANY
        sock.wake()

    def _disconnect(self, sock: Socket, st: TcpSock) -> None:
        """``tcp_disconnect`` after a failed connect: forget the connection and the autobind."""
        tcp = sock.stack.tcp
        conn = st.conn
        if conn is not None:
            tcp.owners.pop(conn, None)
            tcp.demux.remove(conn)
        st.conn = None
        st.ss = SS_UNCONNECTED
        self._put_port(sock, st)
        if not st.addr_locked:
            st.bound_addr = ANY

    @staticmethod
    def _put_port(sock: Socket, st: TcpSock) -> None:
        """``tcp_set_state(CLOSE)`` -> ``inet_put_port`` unless bind() chose the port.

        As in Linux, the port number stays in ``inet_sport``: getsockname()
        keeps reporting it until the socket binds or connects again.
        """
        if st.port_locked or not st.port:
            return
        sock.stack.tcp.ports.remove(st)
        st.stale_port = st.port
        st.port = 0

    # -- names --------------------------------------------------------------

    def getname(self, sock: Socket, peer: bool) -> Address:
        """``inet_getname``: the peer of a CLOSED or SYN-SENT socket is ENOTCONN."""
        st = self.state(sock)
        conn = st.conn
        if peer:
            if conn is None or conn.state in (TcpState.CLOSE, TcpState.SYN_SENT):
                raise os_error(errno.ENOTCONN)
            return format_address(conn.remote_addr, conn.remote_port)
        if conn is not None:
            return format_address(conn.local_addr, conn.local_port)
        return format_address(st.bound_addr, st.port or st.stale_port)

    # -- shutdown / close ---------------------------------------------------------

    def shutdown(self, sock: Socket, how: int) -> None:
        """``inet_shutdown``: see ``ref/linux-socket-semantics.md`` (shutdown)."""
        st = self.state(sock)
        mask = how + 1
        state = st.tcp_state()
        if st.ss == SS_CONNECTING:
            if state in (TcpState.SYN_SENT, TcpState.SYN_RECV, TcpState.CLOSE):
                st.ss = SS_DISCONNECTING
            else:
                st.ss = SS_CONNECTED
        err = 0
        if state is TcpState.LISTEN:
            if mask & RCV_SHUTDOWN:
                self._stop_listening(sock, st)
                st.ss = SS_UNCONNECTED
        elif state is TcpState.SYN_SENT:
            conn = st.conn
            assert conn is not None
            # tcp_disconnect: no RST for a connection that never synchronised,
            # but sk_err = ECONNRESET all the same (read by SO_ERROR).
            conn.abort(sock.stack.now())
            conn.error = errno.ECONNRESET
            self._drive(sock, conn)
            self._disconnect(sock, st)
            st.last_error = conn.take_error()
        else:
            # In TIME-WAIT Linux's socket is already CLOSE (tcp_time_wait ->
            # tcp_done hands the pair to a timewait sock): ENOTCONN as well.
            closed = state is TcpState.CLOSE or state is TcpState.TIME_WAIT
            if closed:
                err = errno.ENOTCONN
            sock.shutdown_mask |= mask
            conn = st.conn
            if conn is not None and not closed:
                conn.shutdown(sock.stack.now(), how)
                self._drive(sock, conn)
        sock.wake()
        if err:
            raise os_error(err)

    def release(self, sock: Socket) -> None:
        """``tcp_close``: RST with unread data or SO_LINGER {1, 0}, else FIN; orphans live on."""
        st = self.state(sock)
        tcp = sock.stack.tcp
        if st.listener is not None:
            self._stop_listening(sock, st)
            tcp.ports.remove(st)
            return
        conn = st.conn
        if conn is None:
            tcp.ports.remove(st)
            return
        tcp.owners.pop(conn, None)
        now = sock.stack.now()
        linger_zero = st.linger[0] != 0 and st.linger[1] == 0
        conn.close(now, linger_zero=linger_zero or bool(st.pushback))
        st.pushback = b""
        tcp.orphans[conn] = st
        tcp.drive(conn, now)
        tcp.flush()

    async def linger(self, sock: Socket) -> None:
        """SO_LINGER {on, t > 0} after close: wait up to t for our FIN to be acknowledged.

        The orphan's wake-ups go to a private event for the duration (the
        socket itself is gone); the wait ends early if the connection dies.
        """
        st = self.state(sock)
        onoff, seconds = st.linger
        conn = st.conn
        if not onoff or seconds <= 0 or conn is None or conn.state not in _LINGER_STATES:
            return
        tcp = sock.stack.tcp
        changed = asyncio.Event()
        waker = _EventWaker(changed)
        tcp.owners[conn] = waker
        try:
            async with asyncio.timeout(seconds):
                while conn.state in _LINGER_STATES:
                    changed.clear()
                    await changed.wait()
        except TimeoutError:
            pass
        finally:
            if tcp.owners.get(conn) is waker:
                del tcp.owners[conn]

    # -- data -----------------------------------------------------------------

    async def sendmsg(
        self, sock: Socket, data: bytes | memoryview, address: Any, flags: int
    ) -> int:
        """``tcp_sendmsg``: wait for buffer space; EPIPE after SHUT_WR or never connected."""
        st = self.state(sock)
        conn = st.conn
        if conn is None:
            raise os_error(errno.EPIPE)
        if sock.shutdown_mask & SEND_SHUTDOWN and not conn.error:
            raise os_error(errno.EPIPE)
        view = memoryview(data)
        size = len(view)
        nonblocking = bool(flags & MSG_DONTWAIT) or not sock.blocking
        more = bool(flags & MSG_MORE)  # tcp_sendmsg: push with TCP_NAGLE_CORK
        oob = bool(flags & MSG_OOB)  # tcp_push: tcp_mark_urg
        tcp = sock.stack.tcp
        if nonblocking:
            # One attempt, never a wait: the loop below without its deadline
            # context (what the asyncio transports call for every write).
            if sock.closed:
                raise os_error(errno.EBADF)
            try:
                n = conn.send(sock.stack.now(), view, more=more, oob=oob)
            except BlockingIOError:
                n = 0  # not yet established
            if not n:
                raise os_error(errno.EAGAIN)
            tcp.drive(conn, sock.stack.now())
            tcp.flush()
            return n
        total = 0
        try:
            async with sock.deadline(sock.sndtimeo):
                while True:
                    if sock.closed:
                        raise os_error(errno.EBADF)
                    try:
                        n = conn.send(sock.stack.now(), view[total:], more=more, oob=oob)
                    except BlockingIOError:
                        n = 0  # not yet established: wait, as sk_stream_wait_connect
                    except OSError:
                        if total:
                            return total
                        raise
                    if n:
                        total += n
                        tcp.drive(conn, sock.stack.now())
                        tcp.flush()
                    if total >= size:
                        return total
                    if nonblocking:
                        if total:
                            return total
                        raise os_error(errno.EAGAIN)
                    await sock.writers.wait()
        except (TimeoutError, BlockingIOError):
            if total:  # a timed-out send reports what it queued (sk_stream_wait_memory)
                return total
            raise

    async def recvmsg(self, sock: Socket, bufsize: int, flags: int) -> tuple[bytes, Address | None]:
        """``tcp_recvmsg``: see the module docstring; the address is always None."""
        if bufsize < 0:
            raise ValueError("negative buffersize in recv")
        st = self.state(sock)
        conn = st.conn
        if conn is None:
            if st.pushback:
                return self._take_pushback(st, bufsize, flags & MSG_PEEK), None
            raise os_error(errno.ENOTCONN)
        peek = bool(flags & MSG_PEEK)
        if flags & MSG_OOB:
            # tcp_recv_urg: never waits; pushback (ordinary bytes) is not touched.
            data = urgent.recv_urg(conn, bufsize, peek=peek, closed=conn.state is TcpState.CLOSE)
            return data, None
        waitall = bool(flags & MSG_WAITALL) and not peek
        nonblocking = bool(flags & MSG_DONTWAIT) or not sock.blocking
        if waitall and nonblocking:
            waitall = False  # Linux: a non-blocking receive never waits for the rest
        try:
            return await self._recv_wait(sock, st, conn, bufsize, peek, waitall, nonblocking)
        except BlockingIOError:
            # SO_RCVTIMEO ran out: a MSG_WAITALL receive returns what it gathered.
            if waitall and st.pushback and not nonblocking:
                return self._take_pushback(st, bufsize, False), None
            raise

    async def _recv_wait(
        self,
        sock: Socket,
        st: TcpSock,
        conn: TcpConnection,
        bufsize: int,
        peek: bool,
        waitall: bool,
        nonblocking: bool,
    ) -> tuple[bytes, Address | None]:
        if nonblocking:
            # One look, never a wait: no deadline context to enter (what the
            # asyncio transports call for every read).
            got = self._recv_once(sock, st, conn, bufsize, peek, waitall)
            if got is None:
                raise os_error(errno.EAGAIN)
            return got, None
        async with sock.deadline(sock.rcvtimeo):
            while True:
                got = self._recv_once(sock, st, conn, bufsize, peek, waitall)
                if got is not None:
                    return got, None
                await sock.readers.wait()

    def _recv_once(
        self,
        sock: Socket,
        st: TcpSock,
        conn: TcpConnection,
        bufsize: int,
        peek: bool,
        waitall: bool,
    ) -> bytes | None:
        """One pass of ``tcp_recvmsg``'s loop: the bytes to return, or None to wait."""
        if sock.closed:
            raise os_error(errno.EBADF)
        if waitall:
            if st.pushback and conn.urg_data and urgent.at_mark(conn):
                # tcp_recvmsg stops at the mark once it has copied something.
                return self._take_pushback(st, bufsize, False)
            if urgent.readable_len(conn) and len(st.pushback) < bufsize:
                more = conn.recv(sock.stack.now(), bufsize - len(st.pushback))
                st.pushback += more
                self._drive(sock, conn)
            if st.pushback and (len(st.pushback) >= bufsize or conn.readable):
                return self._take_pushback(st, bufsize, False)
        elif st.pushback:
            return self._take_pushback(st, bufsize, peek)
        if not st.pushback and not len(conn.rcvbuf) and conn.fin_received:
            # tcp_recvmsg checks SOCK_DONE (the peer's FIN arrived) before
            # sk_err: an RST after the FIN leaves its error for the next send.
            return b""
        if not st.pushback and conn.readable:
            if peek and urgent.readable_len(conn):
                return conn.peek(bufsize)
            data = conn.recv(sock.stack.now(), bufsize)
            if data:
                self._drive(sock, conn)
            return data
        if sock.shutdown_mask & RCV_SHUTDOWN and not st.pushback:
            return b""
        return None

    @staticmethod
    def _take_pushback(st: TcpSock, bufsize: int, peek: bool | int) -> bytes:
        data = st.pushback[:bufsize]
        if not peek:
            st.pushback = st.pushback[len(data) :]
        return data

    def readable(self, sock: Socket) -> bool:
        st = self.state(sock)
        if st.listener is not None:
            return st.listener.acceptable
        conn = st.conn
        return bool(st.pushback) or (conn is not None and conn.readable)

    def poll(self, sock: Socket) -> int:
        return tcp_poll(sock, self.state(sock))

    def ioctl(self, sock: Socket, request: int) -> int:
        """SIOCINQ: bytes readable (up to the urgent mark); SIOCOUTQ: bytes not yet
        acknowledged (both EINVAL if listening); SIOCATMARK: at the urgent mark."""
        st = self.state(sock)
        if request not in (options.SIOCINQ, options.SIOCOUTQ, options.SIOCATMARK):
            raise os_error(errno.ENOTTY)
        conn = st.conn
        if request == options.SIOCATMARK:
            return int(conn is not None and not st.pushback and urgent.at_mark(conn))
        if st.listener is not None:
            raise os_error(errno.EINVAL)
        if request == options.SIOCINQ:
            return len(st.pushback) + (urgent.inq(conn) if conn is not None else 0)
        if conn is None:
            return 0
        return max(seq_diff(conn.data_end, conn.snd_una), 0)

    # -- options --------------------------------------------------------------

    def setsockopt(self, sock: Socket, level: int, option: int, value: int | bytes) -> None:
        st = self.state(sock)
        settings = sock.stack.settings
        conn = st.conn
        now = sock.stack.now()
        if level == _SOL_SOCKET:
            if option == _socket.SO_LINGER:
                if isinstance(value, int) or len(value) < _LINGER.size:
                    raise os_error(errno.EINVAL)
                onoff, seconds = _LINGER.unpack_from(value)
                st.linger = (int(onoff != 0), max(int(seconds), 0))
                return
            number = options.as_int(value)
            if option == _socket.SO_REUSEADDR:
                st.reuseaddr = bool(number)
            elif option == _socket.SO_REUSEPORT:
                st.reuseport = bool(number)
            elif option == _socket.SO_OOBINLINE:
                st.oobinline = bool(number)
                if conn is not None:
                    conn.urginline = st.oobinline
            elif option == _socket.SO_KEEPALIVE:
                st.keepalive = bool(number)
                if conn is not None:
                    conn.set_keepalive(now, st.keepalive)
            elif option == _socket.SO_RCVBUF:
                st.rcvbuf = options.buffer_size(number, settings.rmem_max, options.MIN_RCVBUF)
                st.rcvbuf_set = True
                if conn is not None:
                    # SOCK_RCVBUF_LOCK: no more receive-buffer autotuning (tcp_rcv_space_adjust).
                    conn.rcvbuf_auto = False
                    # sk_rcvbuf takes the new size at once: tcp_space (the free
                    # space each window is selected from), tcp_full_space, and the
                    # clamp the next scaling_ratio change sets follow it. The window
                    # already promised is kept (tcp_select_window never shrinks it).
                    conn.rcvbuf.set_rcvbuf(st.rcvbuf)
            elif option == _socket.SO_SNDBUF:
                st.sndbuf = options.buffer_size(number, settings.wmem_max, options.MIN_SNDBUF)
                st.sndbuf_set = True
            else:
                raise os_error(errno.ENOPROTOOPT)
        elif level == _IPPROTO_TCP:
            if option == _socket.TCP_CONGESTION:
                name = (value if isinstance(value, bytes) else b"").split(b"\0", 1)[0].decode()
                if name not in congestion.available():
                    raise os_error(errno.ENOENT)
                st.congestion = name
                if conn is not None and conn.state in (TcpState.CLOSE, TcpState.SYN_SENT):
                    conn.cc = congestion.create(name)
                if st.listener is not None:
                    st.listener.child_options = _child_options(st)
                return
            number = options.as_int(value)
            if option == _socket.TCP_NODELAY:
                st.nodelay = bool(number)
                if conn is not None:
                    conn.set_nodelay(now, st.nodelay)
            elif option == _socket.TCP_CORK:
                st.cork = bool(number)
                if conn is not None:
                    conn.set_cork(now, st.cork)
            elif option == _socket.TCP_QUICKACK:
                if conn is not None:
                    conn.set_quickack(now, bool(number))
            elif option == _socket.TCP_KEEPIDLE:
                if not 1 <= number <= MAX_TCP_KEEPIDLE:
                    raise os_error(errno.EINVAL)
                st.keepidle = number
                if conn is not None:
                    conn.keepidle = float(number)
                    if conn.keepalive:
                        conn.set_keepalive(now, True)
            elif option == _socket.TCP_KEEPINTVL:
                if not 1 <= number <= MAX_TCP_KEEPINTVL:
                    raise os_error(errno.EINVAL)
                st.keepintvl = number
                if conn is not None:
                    conn.keepintvl = float(number)
            elif option == _socket.TCP_KEEPCNT:
                if not 1 <= number <= MAX_TCP_KEEPCNT:
                    raise os_error(errno.EINVAL)
                st.keepcnt = number
                if conn is not None:
                    conn.keepcnt = number
            elif option == _socket.TCP_USER_TIMEOUT:
                if number < 0:
                    raise os_error(errno.EINVAL)
                st.user_timeout_ms = number
                if conn is not None:
                    conn.user_timeout = number / 1000.0
            elif option == _socket.TCP_MAXSEG:
                if number and not TCP_MIN_MSS <= number <= MAX_TCP_WINDOW:
                    raise os_error(errno.EINVAL)
                st.user_mss = number
                if st.listener is not None:
                    st.listener.user_mss = number
            elif option == _socket.TCP_DEFER_ACCEPT:
                # Any value is taken (Linux: no EINVAL); seconds become retransmissions.
                st.defer_accept = secs_to_retrans(number)
                if st.listener is not None:
                    st.listener.defer_accept = st.defer_accept
            else:
                raise os_error(errno.ENOPROTOOPT)
        else:
            raise os_error(errno.ENOPROTOOPT)
        if st.listener is not None:
            # Children cloned from now on see the new values.
            st.listener.child_options = _child_options(st)
        if conn is not None and conn.state is not TcpState.CLOSE:
            # Uncorking or TCP_NODELAY pushes what was held back (tcp_push_pending_frames).
            self._drive(sock, conn)

    def getsockopt(self, sock: Socket, level: int, option: int) -> int:
        st = self.state(sock)
        conn = st.conn
        if level == _SOL_SOCKET:
            if option == _socket.SO_ERROR:
                err, st.last_error = st.last_error, 0
                if conn is not None:
                    err = conn.take_error() or err
                return err
            if option == _socket.SO_LINGER:
                return st.linger[0]
            values = {
                _socket.SO_REUSEADDR: int(st.reuseaddr),
                _socket.SO_REUSEPORT: int(st.reuseport),
                _socket.SO_KEEPALIVE: int(st.keepalive),
                _socket.SO_OOBINLINE: int(st.oobinline),
                _socket.SO_RCVBUF: st.rcvbuf,
                _socket.SO_SNDBUF: st.sndbuf,
                _socket.SO_TYPE: sock.type,
                _socket.SO_PROTOCOL: sock.proto,
                _socket.SO_DOMAIN: sock.family,
                _socket.SO_ACCEPTCONN: int(st.listener is not None),
            }
            if option in values:
                return values[option]
        elif level == _IPPROTO_TCP:
            if option in (_socket.TCP_INFO, _socket.TCP_CONGESTION):
                raw = self.getsockopt_bytes(sock, level, option, 4)
                return int.from_bytes(raw.ljust(4, b"\0"), "little", signed=True)
            if option == _socket.TCP_NODELAY:
                return int(st.nodelay)
            if option == _socket.TCP_CORK:
                return int(st.cork)
            if option == _socket.TCP_KEEPIDLE:
                return st.keepidle
            if option == _socket.TCP_KEEPINTVL:
                return st.keepintvl
            if option == _socket.TCP_KEEPCNT:
                return st.keepcnt
            if option == _socket.TCP_USER_TIMEOUT:
                return st.user_timeout_ms
            if option == _socket.TCP_DEFER_ACCEPT:
                return retrans_to_secs(st.defer_accept)
            if option == _socket.TCP_QUICKACK:
                return int(conn is None or conn.quickack > 0)
            if option == _socket.TCP_MAXSEG:
                if conn is not None and conn.is_established:
                    return conn.snd_mss
                return st.user_mss or 536
        raise os_error(errno.ENOPROTOOPT)

    def getsockopt_bytes(self, sock: Socket, level: int, option: int, buflen: int) -> bytes:
        """The ``getsockopt(level, option, buflen)`` form: structs and strings."""
        st = self.state(sock)
        if level == _IPPROTO_TCP and option == _socket.TCP_CONGESTION:
            return st.congestion.encode()[:buflen].ljust(min(buflen, 16), b"\0")
        if level == _IPPROTO_TCP and option == _socket.TCP_INFO:
            return _pack_tcp_info(st, sock.stack.now())[:buflen]
        if level == _SOL_SOCKET and option == _socket.SO_LINGER:
            return _LINGER.pack(*st.linger)[:buflen]
        return super().getsockopt_bytes(sock, level, option, buflen)


def _pack_tcp_info(st: TcpSock, now: float) -> bytes:
    """``struct tcp_info`` bytes (zeroes but the state when there is no connection)."""
    conn = st.conn
    if conn is None:
        state = int(TcpState.LISTEN if st.listener is not None else TcpState.CLOSE)
        return _TCP_INFO.pack(state, *([0] * 54))
    i = tcp_info(conn, now)
    return _TCP_INFO.pack(
        i.state,
        i.ca_state,
        i.retransmits,
        i.probes,
        i.backoff,
        i.options,
        (i.snd_wscale & 0xF) | ((i.rcv_wscale & 0xF) << 4),
        0,
        i.rto,
        i.ato,
        i.snd_mss,
        i.rcv_mss,
        i.unacked,
        i.sacked,
        i.lost,
        i.retrans,
        i.fackets,
        i.last_data_sent,
        i.last_ack_sent,
        i.last_data_recv,
        i.last_ack_recv,
        i.pmtu,
        i.rcv_ssthresh,
        i.rtt,
        i.rttvar,
        i.snd_ssthresh,
        i.snd_cwnd,
        i.advmss,
        i.reordering,
        0,  # rcv_rtt
        i.rcv_space,
        i.total_retrans,
        i.pacing_rate,
        i.max_pacing_rate,
        i.bytes_acked,
        i.bytes_received,
        i.segs_out,
        i.segs_in,
        i.notsent_bytes,
        i.min_rtt,
        0,  # data_segs_in
        0,  # data_segs_out
        i.delivery_rate,
        i.busy_time,
        0,  # rwnd_limited
        0,  # sndbuf_limited
        0,  # delivered
        0,  # delivered_ce
        0,  # bytes_sent
        0,  # bytes_retrans
        0,  # dsack_dups
        0,  # reord_seen
        0,  # rcv_ooopack
        i.snd_wnd,
        i.rcv_wnd,
    )
