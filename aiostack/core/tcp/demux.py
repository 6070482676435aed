"""Which connection a TCP segment belongs to (Linux ``__inet_lookup``), and resets for none.

:class:`TcpDemux` holds the established table, keyed by the 4-tuple
``(local_addr, local_port, remote_addr, remote_port)`` (one dict lookup:
constant cost at 100,000 connections), and the listeners, keyed by
``(local_addr, local_port)`` with ``local_addr`` 0 for INADDR_ANY; an
exact-address listener wins over a wildcard one, as in Linux's
``inet_lhash2_lookup`` scoring.

:meth:`TcpDemux.input` is the whole receive path for one segment:

1. a connection in the table gets it (a SYN that may reopen a connection
   in TIME-WAIT goes to the listener instead, Linux's ``TCP_TW_SYN``:
   sequence number above ``rcv_nxt``, or a newer timestamp);
2. else a listener on the port gets it; a child that completes its
   handshake joins the table;
3. else RFC 9293 3.10.7.1 (CLOSED): answer with an RST unless the segment
   is itself an RST (two stacks answering RSTs with RSTs loop forever).
   The reply is built from the offending segment alone and touches no
   connection.

The shell sends the returned ``reply`` back to the segment's source and
polls the returned connection (``poll_transmit`` until None).
"""

from __future__ import annotations

from typing import NamedTuple

from aiostack.core.counters import Counters
from aiostack.core.tcp.connection import TcpConnection
from aiostack.core.tcp.listener import TcpListener
from aiostack.core.tcp.output import Segment, reset_for
from aiostack.core.tcp.state import Event, TcpState
from aiostack.wire import tcp as wtcp
from aiostack.wire.seqnum import seq_gt, seq_lt

__all__ = ["Delivery", "TcpDemux"]

#: ``(local_addr, local_port, remote_addr, remote_port)``.
FourTuple = tuple[int, int, int, int]


class Delivery(NamedTuple):
    """The outcome of :meth:`TcpDemux.input`."""

    #: The connection that took the segment (the shell polls it), if any.
    conn: TcpConnection | None
    #: A segment to send back to the source at once (RST, challenge ACK, cookie SYN-ACK).
    reply: Segment | None
    #: The listener that took it, if any (the shell wakes its accept waiters).
    listener: TcpListener | None = None


class TcpDemux:
    """The connection table and listeners of one stack."""

    __slots__ = ("connections", "counters", "listeners", "reuseport_groups", "reuseport_secret")

    def __init__(self, counters: Counters | None = None, reuseport_secret: int = 0) -> None:
        self.counters = counters if counters is not None else Counters()
        self.connections: dict[FourTuple, TcpConnection] = {}
        #: The first listener of each (address, port): what a lookup without a group finds.
        self.listeners: dict[tuple[int, int], TcpListener] = {}
        #: Every listener of each (address, port): an SO_REUSEPORT group when more than one.
        self.reuseport_groups: dict[tuple[int, int], list[TcpListener]] = {}
        self.reuseport_secret = reuseport_secret

    @staticmethod
    def key(conn: TcpConnection) -> FourTuple:
        """The table key of a connection."""
        return (conn.local_addr, conn.local_port, conn.remote_addr, conn.remote_port)

    def add(self, conn: TcpConnection) -> None:
        """Enter a connection (after ``connect``); the 4-tuple must be free."""
        k = self.key(conn)
        old = self.connections.get(k)
        if old is not None and old is not conn and old.state is not TcpState.CLOSE:
            raise ValueError(f"TCP 4-tuple {k} in use")
        self.connections[k] = conn

    def remove(self, conn: TcpConnection) -> None:
        """Forget a connection (it reached CLOSED)."""
        k = self.key(conn)
        if self.connections.get(k) is conn:
            del self.connections[k]

    def listen(self, listener: TcpListener) -> None:
        """Register a listener on its address and port (joining its SO_REUSEPORT group).

        The socket layer's bind table decides whether two listeners may share
        an address and port; here they simply form a group.
        """
        k = (listener.local_addr, listener.local_port)
        group = self.reuseport_groups.setdefault(k, [])
        group.append(listener)
        self.listeners[k] = group[0]

    def unlisten(self, listener: TcpListener) -> None:
        """Remove a listener; its queued children are the caller's to abort."""
        k = (listener.local_addr, listener.local_port)
        group = self.reuseport_groups.get(k)
        if group is None or listener not in group:
            return
        group.remove(listener)
        if group:
            self.listeners[k] = group[0]
        else:
            del self.reuseport_groups[k]
            del self.listeners[k]

    def lookup_listener(
        self, addr: int, port: int, src_addr: int = 0, src_port: int = 0
    ) -> TcpListener | None:
        """The listener for a destination, exact address first, then INADDR_ANY.

        In an SO_REUSEPORT group the 4-tuple's hash picks the member, as
        Linux's ``reuseport_select_sock`` does (``inet_ehashfn`` scaled to the
        group size), so every segment of one handshake reaches one listener.
        """
        group = self.reuseport_groups.get((addr, port)) or self.reuseport_groups.get((0, port))
        if not group:
            return None
        if len(group) == 1:
            return group[0]
        h = ehashfn(addr, port, src_addr, src_port, self.reuseport_secret)
        return group[(h * len(group)) >> 32]

    def input(
        self,
        now: float,
        src_addr: int,
        dst_addr: int,
        header: wtcp.TcpHeader,
        payload: memoryview | bytes,
    ) -> Delivery:
        """Deliver one validated segment from ``src_addr`` to ``dst_addr``; see the module doc."""
        self.counters.TcpInSegs += 1
        k = (dst_addr, header.dst_port, src_addr, header.src_port)
        conn = self.connections.get(k)
        if conn is not None and conn.state is TcpState.CLOSE:
            del self.connections[k]
            conn = None
        tw_isn = 0
        if conn is not None:
            if conn.state is TcpState.TIME_WAIT and self._tw_reopens(conn, header):
                # tcp_timewait_state_process: isn = tw_snd_nxt + 65535 + 2, never 0,
                # so the new incarnation starts beyond any window the old one used.
                tw_isn = (conn.snd_nxt + 65535 + 2) & 0xFFFFFFFF or 1
                del self.connections[k]
                conn.set_state(TcpState.CLOSE, Event.TIMEOUT)
            else:
                reply = conn.on_segment(now, header, payload)
                if conn.state is TcpState.CLOSE:
                    self.remove(conn)
                return Delivery(conn, reply)
        listener = self.lookup_listener(dst_addr, header.dst_port, src_addr, header.src_port)
        if listener is not None:
            child, reply = listener.on_segment(now, src_addr, dst_addr, header, payload, tw_isn)
            if child is not None and child.state not in (TcpState.SYN_RECV, TcpState.CLOSE):
                self.connections[self.key(child)] = child
            return Delivery(child, reply, listener)
        rst = reset_for(header, len(payload))
        if rst is not None:
            self.counters.TcpOutRsts += 1
            self.counters.TcpOutSegs += 1
        return Delivery(None, rst)

    @staticmethod
    def _tw_reopens(conn: TcpConnection, header: wtcp.TcpHeader) -> bool:
        """Linux ``tcp_timewait_state_process`` ``TCP_TW_SYN``: may this SYN start anew?

        A pure SYN that passes PAWS and whose sequence number is beyond what
        the old connection used, or whose timestamp is newer, cannot be an
        old duplicate.
        """
        if header.flags & (wtcp.SYN | wtcp.ACK | wtcp.RST) != wtcp.SYN:
            return False
        ts = header.options.timestamps if conn.ts_ok else None
        if ts is not None and seq_lt(ts[0], conn.ts_recent):
            return False  # tcp_paws_reject
        return seq_gt(header.seq, conn.rcv_nxt) or (
            ts is not None and seq_gt(ts[0], conn.ts_recent)
        )


def _rol32(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & 0xFFFFFFFF


def ehashfn(laddr: int, lport: int, faddr: int, fport: int, secret: int = 0) -> int:
    """Linux ``inet_ehashfn``: ``jhash_3words(laddr, faddr, lport << 16 | fport, secret)``.

    Bob Jenkins' lookup3 final mix, 32-bit; pure integer arithmetic.
    """
    m = 0xFFFFFFFF
    initval = (secret + 0xDEADBEEF + (3 << 2)) & m
    a = (laddr + initval) & m
    b = (faddr + initval) & m
    c = ((((lport & 0xFFFF) << 16) | (fport & 0xFFFF)) + initval) & m
    c ^= b
    c = (c - _rol32(b, 14)) & m
    a ^= c
    a = (a - _rol32(c, 11)) & m
    b ^= a
    b = (b - _rol32(a, 25)) & m
    c ^= b
    c = (c - _rol32(b, 16)) & m
    a ^= c
    a = (a - _rol32(c, 4)) & m
    b ^= a
    b = (b - _rol32(a, 14)) & m
    c ^= b
    c = (c - _rol32(b, 24)) & m
    return c
