"""The asyncio shell around the sans-I/O TCP core: tables, segment I/O, timers, wake-ups.

:class:`TcpLayer` is what the stack owns for TCP. It never decides anything
about the protocol (that is :mod:`aiostack.core.tcp`); it moves segments
between the IP layer and the control blocks and wakes the sockets:

- **Input** (:meth:`TcpLayer.receive`, called by the transport task for a
  whole batch): parse and checksum each segment (skipped when the device
  vouched for the checksum), hand it to :meth:`TcpDemux.input`, send the
  immediate reply at once, and remember which connections were touched.
  Only after the batch are those connections *driven* (:meth:`drive`:
  ``poll_transmit`` until ``None``), so a burst of 64 segments for one
  connection yields one cumulative ACK, not 64.
- **Output**: every segment is built in one buffer from ``ip.alloc``
  (header written by ``wire.tcp.emit_into`` behind the payload copy) and
  handed to ``ip.output(df=True)``; TCP never lets IP fragment.
- **Timers**: one heap of ``(deadline, generation, conn)`` for the
  stack's single timer task. A connection is re-pushed only when its
  ``poll_at()`` moves *earlier* than the entry it already has; an entry
  whose generation is no longer the connection's current one is stale and
  skipped when it surfaces. Re-arming a later timer (the common case: every
  ACK pushes the RTO out) therefore costs nothing here, and the timer task
  never scans connections: cost is O(log n) per earlier deadline.
- **Wake-ups**: ``take_events()`` of a driven connection wakes the socket
  that owns it (:attr:`owners`); a listener's socket is woken when its
  accept queue has something.
- **Ports**: the stack's bind table (:class:`~aiostack.core.tcp.ports.TcpBindTable`,
  Linux ``bhash``), whose rules are in the core.

Secrets for RFC 6528 ISNs and SYN cookies come from the stack's rng: a
seeded stack is reproducible, an unseeded one unpredictable.
"""

from __future__ import annotations

import heapq
import itertools
from typing import TYPE_CHECKING, Any, Protocol

from aiostack.core.icmp import TransportError
from aiostack.core.ipv4 import Datagram
from aiostack.core.tcp.connection import ConnEvent, Segment, TcpConnection
from aiostack.core.tcp.demux import TcpDemux
from aiostack.core.tcp.isn import IsnGenerator
from aiostack.core.tcp.listener import TcpListener
from aiostack.core.tcp.ports import TcpBindTable
from aiostack.core.tcp.state import TcpState
from aiostack.core.tcp.syncookies import SynCookies
from aiostack.wire import tcp as wtcp
from aiostack.wire.errors import ParseError
from aiostack.wire.ipv4 import IpProto

if TYPE_CHECKING:
    from aiostack.stack.stack import Stack

_TCP = int(IpProto.TCP)
_CLOSE = TcpState.CLOSE


class Waker(Protocol):
    """What owns a connection or a listener: something to wake (a Socket)."""

    def wake(self) -> None: ...


class TcpLayer:
    """See the module docstring."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.settings = stack.settings
        self.counters = stack.counters
        self.ip = stack.ip
        rng = stack.rng
        self.isn = IsnGenerator(rng.randbytes(32), rng.randbytes(32))
        self.cookies = SynCookies(rng.randbytes(32), rng.randbytes(32))
        self.demux = TcpDemux(stack.counters)
        #: conn -> the socket to wake; listener -> its socket.
        self.owners: dict[TcpConnection, Waker] = {}
        self.listener_owners: dict[TcpListener, Waker] = {}
        #: The bind table (ports in use, orphans included until CLOSED).
        self.ports = TcpBindTable(stack.settings, rng)
        #: Bindings of closed sockets whose connection lives on (FIN-WAIT, TIME-WAIT).
        self.orphans: dict[TcpConnection, Any] = {}
        self._heap: list[tuple[float, int, TcpConnection]] = []
        self._armed: dict[TcpConnection, tuple[float, int]] = {}
        self._generation = itertools.count()
        self.ip.register_protocol(_TCP)

    # -- input ----------------------------------------------------------------

    def receive(self, now: float, dgram: Datagram, touched: dict[TcpConnection, None]) -> None:
        """One segment from IP; the connection it reached joins ``touched``."""
        counters = self.counters
        if dgram.broadcast:
            counters.drop("tcp.broadcast")  # tcp_v4_rcv: PACKET_HOST only
            return
        try:
            header, payload = wtcp.parse(dgram.payload, dgram.src, dgram.dst, not dgram.csum_ok)
        except ParseError as exc:
            counters.TcpInErrs += 1
            if exc.reason == "bad_checksum":
                counters.TcpInCsumErrors += 1
            counters.drop("tcp." + exc.reason)
            return
        delivery = self.demux.input(now, dgram.src, dgram.dst, header, payload)
        if delivery.reply is not None:
            self.emit(now, dgram.dst, dgram.src, delivery.reply)
        if delivery.conn is not None:
            touched[delivery.conn] = None
        listener = delivery.listener
        if listener is not None and listener.acceptable:
            owner = self.listener_owners.get(listener)
            if owner is not None:
                owner.wake()

    def finish_batch(self, now: float, touched: dict[TcpConnection, None]) -> None:
        """Drive every connection the batch touched, once each (ACKs merge)."""
        for conn in touched:
            self.drive(conn, now)

    def error(self, now: float, err: TransportError) -> None:
        """An ICMP error (or a failed ARP resolution) about a segment we sent.

        The quoted sequence number is not carried by :class:`TransportError`,
        so ``snd_una`` (always inside the window the core checks) stands in
        for it. In SYN-SENT/SYN-RECEIVED every unreachable ends the attempt,
        as Linux's ``tcp_v4_err`` does (it calls ``tcp_done`` there whatever
        ``icmp_err_convert`` says about fatality): that is how connect()
        gets EHOSTUNREACH from an ARP failure in seconds, not minutes.
        """
        conn = self.demux.connections.get((err.src, err.sport, err.dst, err.dport))
        if conn is None:
            return
        fatal = err.fatal or conn.state in (TcpState.SYN_SENT, TcpState.SYN_RECV)
        conn.on_icmp_error(
            now, err.errno, fatal, seq=conn.snd_una, mtu=err.mtu if err.mtu else None
        )
        self.drive(conn, now)

    # -- output ---------------------------------------------------------------

    def emit(self, now: float, src: int, dst: int, seg: Segment) -> None:
        """Build one segment into an IP buffer and hand it to IP output."""
        ip = self.ip
        options = seg.options
        payload = seg.payload
        hlen = wtcp.HEADER_LEN + len(options)
        plen = len(payload)
        buf = ip.alloc(hlen + plen)
        offset = ip.transport_offset
        if plen:
            buf[offset + hlen :] = payload
        wtcp.emit_into(
            buf,
            offset,
            src_port=seg.src_port,
            dst_port=seg.dst_port,
            seq=seg.seq,
            ack=seg.ack,
            flags=seg.flags,
            window=seg.window,
            options=options,
            payload_len=plen,
            src=src,
            dst=dst,
        )
        if ip.output(now, buf, src=src, dst=dst, proto=_TCP, df=True):
            self.counters.drop("tcp.output_failed")

    def drive(self, conn: TcpConnection, now: float) -> None:
        """Send what the connection has to send, wake its owner, re-arm its timer."""
        src, dst = conn.local_addr, conn.remote_addr
        poll = conn.poll_transmit
        seg = poll(now)
        while seg is not None:
            self.emit(now, src, dst, seg)
            seg = poll(now)
        if conn.take_events():
            owner = self.owners.get(conn)
            if owner is not None:
                owner.wake()
        if conn.state is _CLOSE:
            self.demux.remove(conn)
            binding = self.orphans.pop(conn, None)
            if binding is not None:
                self.ports.remove(binding)
            self._armed.pop(conn, None)
            return
        self.schedule(conn)

    def flush(self) -> None:
        self.stack.flush_ip_output()

    # -- timers ---------------------------------------------------------------

    def schedule(self, conn: TcpConnection) -> None:
        """Push a heap entry if the connection's next deadline moved earlier."""
        deadline = conn.poll_at()
        if deadline is None:
            return
        armed = self._armed.get(conn)
        if armed is not None and armed[0] <= deadline:
            return
        generation = next(self._generation)
        self._armed[conn] = (deadline, generation)
        heap = self._heap
        earliest = heap[0][0] if heap else None
        heapq.heappush(heap, (deadline, generation, conn))
        if earliest is None or deadline < earliest:
            self.stack.timer.kick()

    def _prune(self) -> None:
        heap = self._heap
        armed = self._armed
        while heap:
            deadline, generation, conn = heap[0]
            if armed.get(conn) == (deadline, generation):
                return
            heapq.heappop(heap)

    def poll_at(self) -> float | None:
        self._prune()
        return self._heap[0][0] if self._heap else None

    def poll(self, now: float) -> None:
        """Drive every connection whose deadline has come."""
        heap = self._heap
        armed = self._armed
        while heap and heap[0][0] <= now:
            deadline, generation, conn = heapq.heappop(heap)
            if armed.get(conn) != (deadline, generation):
                continue
            del armed[conn]
            self.drive(conn, now)

    # -- for the socket layer -------------------------------------------------

    def wake_owner(self, conn: TcpConnection) -> None:
        owner = self.owners.get(conn)
        if owner is not None:
            owner.wake()


__all__ = ["ConnEvent", "TcpLayer"]
