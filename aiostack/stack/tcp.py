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
- **GRO**: consecutive in-sequence data segments of one flow in a batch,
  with identical ACK, window and options and no flag but ACK (PSH allowed
  on the last), are merged into one segment of up to 64 KB before the
  core sees them, as Linux's ``tcp_gro_receive`` does under a NIC. The
  core's per-segment work is most of the cost of a segment, so at MTU 1500
  this is what lets a burst of 44 frames cost about one segment's worth.
- **Output**: every segment is built in one buffer from ``ip.alloc``
  (header written by ``wire.tcp.emit_into`` behind the payload copy) and
  handed to ``ip.output(df=True)``; TCP never lets IP fragment.
- **Offloads**: on a device with a virtio-net header the checksum is left
  to the kernel (``NEEDS_CSUM``: only the pseudo-header seed is written),
  and on one that does TSO every connection gets ``gso_max_size`` so the
  core builds super-segments of up to 64 KB, which go out as one frame
  with ``gso_type`` TCPV4 and ``gso_size`` = the payload per wire segment:
  one write and no Python checksum per 64 KB instead of 45 of each.
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

import hashlib
import heapq
import itertools
import struct
from collections.abc import Sequence
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
from aiostack.wire import virtio
from aiostack.wire.checksum import ones_sums
from aiostack.wire.errors import ParseError
from aiostack.wire.ipv4 import IpProto
from aiostack.wire.tcp import write_header as write_tcp_header

if TYPE_CHECKING:
    from aiostack.stack.stack import Stack

_TCP = int(IpProto.TCP)
_CHECKSUM = struct.Struct("!H")
_CLOSE = TcpState.CLOSE
_ACK = wtcp.ACK
_PSH = wtcp.PSH
#: Most payload one GRO merge collects (what fits an IPv4 packet, as in Linux).
GRO_MAX_SIZE = 65535 - 20 - 60
#: Largest TCP payload of a super-segment: an IPv4 packet of at most 65535
#: bytes with a 20-byte IP and a 60-byte TCP header (Linux ``GSO_LEGACY_MAX_SIZE``).
GSO_MAX_SIZE = 65535 - 20 - 60
_VNET_HEADER = virtio.HEADER_STRUCT
_NEEDS_CSUM = virtio.F_NEEDS_CSUM
_GSO_TCPV4 = virtio.GSO_TCPV4
#: CWR on a super-segment: the kernel must set it on the first segment only.
_GSO_ECN = virtio.GSO_ECN
_CWR = wtcp.CWR
_CSUM_OFFSET_TCP = virtio.CSUM_OFFSET_TCP
_URGENT = int(ConnEvent.URGENT)
_int_and = int.__and__


class Waker(Protocol):
    """What owns a connection or a listener: something to wake (a Socket)."""

    def wake(self) -> None: ...

    def urgent(self) -> None:
        """A new urgent pointer arrived (where Linux sends SIGURG)."""


class TcpLayer:
    """See the module docstring."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.settings = stack.settings
        self.counters = stack.counters
        self.ip = stack.ip
        rng = stack.rng
        isn_secret = rng.randbytes(32)
        self.isn = IsnGenerator(isn_secret, rng.randbytes(32))
        self.cookies = SynCookies(rng.randbytes(32), rng.randbytes(32))
        # inet_ehash_secret (net_get_random_once): keyed off the ISN secret, so the
        # stack's seed makes it repeatable and no draw from ``rng`` is added.
        reuseport_secret = hashlib.blake2s(b"reuseport", key=isn_secret, digest_size=4).digest()
        self.demux = TcpDemux(stack.counters, int.from_bytes(reuseport_secret, "big"))
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
        #: Merge in-sequence data segments of a batch (see the module docstring).
        self.gro = True
        #: Verify the checksums of a batch's segments in one pass (:meth:`verify_batch`)
        #: and compute those of a burst sent in one pass (:meth:`complete_checksums`).
        self.batch_checksum = True
        # Segments whose checksum emit() deferred: (buffer, TCP offset, TCP length).
        self._unsummed: list[tuple[bytearray, int, int]] = []
        # The segment being merged (datagram, first header), its payload
        # pieces, their length and the sequence number that would come next.
        self._held: tuple[Datagram, wtcp.TcpHeader] | None = None
        self._held_parts: list[memoryview] = []
        self._held_len = 0
        self._held_end = 0
        device = stack.device
        #: The device fills TCP checksums (virtio-net header, NEEDS_CSUM).
        self.csum_offload = bool(device.vnet_hdr)
        #: Payload bytes per super-segment the device cuts (0: no TSO).
        self.gso_max_size = GSO_MAX_SIZE if device.vnet_hdr and device.tso else 0

    # -- input ----------------------------------------------------------------

    def verify_batch(self, batch: Sequence[object]) -> None:
        """Check the TCP checksums of a whole batch at once; mark the good ones.

        Summing 64 segments in one call costs about an eighth of summing
        them one by one (:func:`~aiostack.wire.checksum.ones_sums`). A
        segment that fails is left unmarked: :meth:`receive` checks it
        again and counts the error where it always has.
        """
        if not self.batch_checksum or len(batch) < 4:
            return  # fewer than 4 segments: not worth a batch pass (see below)
        todo = [
            d
            for d in batch
            if type(d) is Datagram and d.proto == _TCP and not d.csum_ok and not d.broadcast
        ]
        if len(todo) < 4:
            return
        sums = ones_sums([d.payload for d in todo])
        for dgram, s in zip(todo, sums, strict=True):
            # With the pseudo-header added as integers (2**16 is 1 modulo 0xFFFF),
            # a valid segment sums to all ones: a multiple of 0xFFFF (RFC 1071).
            if (s + dgram.src + dgram.dst + _TCP + len(dgram.payload)) % 0xFFFF == 0:
                dgram.csum_ok = True

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
        if self._held is not None:
            merged = self._merge(dgram, header, payload)
            if merged and not header.flags & _PSH:
                return
            self.release(now, touched)  # a PSH ends a merge (Linux flushes on it)
            if merged:
                return
        if self.gro and header.flags == _ACK and payload:
            self._held = (dgram, header)
            self._held_parts = [payload]
            self._held_len = len(payload)
            self._held_end = (header.seq + len(payload)) & 0xFFFFFFFF
            return
        self._input(now, dgram, header, payload, touched)

    def _merge(self, dgram: Datagram, header: wtcp.TcpHeader, payload: memoryview) -> bool:
        """Append this segment to the held one if GRO may (tcp_gro_receive's rules)."""
        assert self._held is not None
        first_dgram, first = self._held[0], self._held[1]
        flags = header.flags
        n = len(payload)
        if (
            not n
            or (flags != _ACK and flags != _ACK | _PSH)
            or header.seq != self._held_end
            or header.ack != first.ack
            or header.window != first.window
            or header.src_port != first.src_port
            or header.dst_port != first.dst_port
            or dgram.src != first_dgram.src
            or dgram.dst != first_dgram.dst
            or self._held_len + n > GRO_MAX_SIZE
            or header.options != first.options
        ):
            return False
        self._held_parts.append(payload)
        self._held_len += n
        self._held_end = (header.seq + n) & 0xFFFFFFFF
        first.flags |= flags  # PSH, if the last one has it
        return True

    def release(self, now: float, touched: dict[TcpConnection, None]) -> None:
        """Hand the held (possibly merged) segment to the core; call at the end of a batch."""
        held = self._held
        if held is None:
            return
        self._held = None
        dgram, header = held[0], held[1]
        parts = self._held_parts
        self._held_parts = []
        if len(parts) > 1:
            payload = memoryview(b"".join(parts))
            # Linux counts a GRO packet as the segments it was made of (InSegs).
            self.counters.TcpInSegs += len(parts) - 1
        else:
            payload = parts[0]
        self._input(now, dgram, header, payload, touched)

    def _input(
        self,
        now: float,
        dgram: Datagram,
        header: wtcp.TcpHeader,
        payload: memoryview,
        touched: dict[TcpConnection, None],
    ) -> None:
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
        """Deliver what GRO holds, then drive every connection the batch touched, once each."""
        if self._held is not None:
            self.release(now, touched)
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

    def emit(
        self, now: float, src: int, dst: int, seg: Segment, mss: int = 0, defer: bool = False
    ) -> None:
        """Build one segment into an IP buffer and hand it to IP output.

        ``mss`` is the connection's ``mss_clamp``: a payload longer than one
        segment's worth (``mss`` minus the options) is a TSO super-segment.
        ``defer``: leave the checksum (when the device does not fill it) to
        :meth:`complete_checksums`, which sums a burst of segments in one
        pass; the caller must call it before the frames leave the IP outbox.
        """
        ip = self.ip
        options = seg.options
        payload = seg.payload
        olen = len(options)
        hlen = wtcp.HEADER_LEN + olen
        plen = len(payload)
        buf = ip.alloc(hlen + plen)
        offset = ip.transport_offset
        if plen:
            buf[offset + hlen :] = payload
        offload = self.csum_offload
        if defer and not offload:
            self._unsummed.append((buf, offset, hlen + plen))
        gso_size = mss - olen
        gso = self.gso_max_size > 0 and 0 < gso_size < plen
        if offload:
            # virtio_net_hdr in the headroom; offsets count from the Ethernet header.
            csum_start = offset - virtio.HEADER_LEN
            _VNET_HEADER.pack_into(
                buf,
                0,
                _NEEDS_CSUM,
                (_GSO_TCPV4 | (_GSO_ECN if seg.flags & _CWR else 0)) if gso else 0,
                csum_start + hlen if gso else 0,
                gso_size if gso else 0,
                csum_start,
                _CSUM_OFFSET_TCP,
            )
        write_tcp_header(
            buf,
            offset,
            seg.src_port,
            seg.dst_port,
            seg.seq,
            seg.ack,
            seg.flags,
            seg.window,
            seg.urgent,
            options,
            plen,
            src,
            dst,
            not (offload or defer),
        )
        if ip.output(now, buf, src=src, dst=dst, proto=_TCP, df=True, gso=gso):
            self.counters.drop("tcp.output_failed")

    def drive(self, conn: TcpConnection, now: float) -> None:
        """Send what the connection has to send, wake its owner, re-arm its timer."""
        src, dst = conn.local_addr, conn.remote_addr
        conn.gso_max_size = self.gso_max_size
        if conn.sndbuf_auto:
            self.expand_sndbuf(conn)
        poll = conn.poll_transmit
        seg = poll(now)
        if seg is not None:
            mss = conn.mss_clamp
            after = poll(now)
            if after is None:
                # One segment (an echo, an ACK): its checksum now, in emit; the
                # one-pass sum of a burst only pays from two segments on.
                self.emit(now, src, dst, seg, mss)
            else:
                defer = self.batch_checksum
                self.emit(now, src, dst, seg, mss, defer)
                seg = after
                while seg is not None:
                    self.emit(now, src, dst, seg, mss, defer)
                    seg = poll(now)
                if self._unsummed:
                    self.complete_checksums()
        events = conn.take_events()
        if events:
            owner = self.owners.get(conn)
            if owner is not None:
                # int's own &: an IntFlag's costs a Python call and an enum lookup.
                if _int_and(events, _URGENT):
                    owner.urgent()
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

    def complete_checksums(self) -> None:
        """Fill the checksums :meth:`emit` deferred, summing all the segments at once.

        Each deferred segment holds the pseudo-header seed in its checksum
        field, so the sum over the segment as it stands is the sum the
        checksum must cancel (as the kernel completes ``NEEDS_CSUM``).
        """
        unsummed = self._unsummed
        self._unsummed = []
        views = [memoryview(buf)[offset : offset + n] for buf, offset, n in unsummed]
        pack = _CHECKSUM.pack_into
        for (buf, offset, _), s in zip(unsummed, ones_sums(views), strict=True):
            pack(buf, offset + wtcp.CHECKSUM_OFFSET, ~s & 0xFFFF)
        for view in views:
            view.release()

    def expand_sndbuf(self, conn: TcpConnection) -> None:
        """Grow a send buffer nobody sized with ``SO_SNDBUF`` as cwnd grows.

        Linux's ``tcp_sndbuf_expand``: room for twice the congestion window
        (at least ``TCP_INIT_CWND`` = 10 segments), up to ``tcp_wmem[2]``,
        never shrinking. Without it the buffer stays at ``tcp_wmem[1]``
        (16 KiB), which caps a bulk sender at 16 KiB per round trip and
        keeps TSO super-segments at 16 KiB.
        """
        sndbuf = conn.sndbuf
        want = 2 * max(conn.cc.cwnd, 10) * conn.mss_clamp
        if want > sndbuf.capacity:
            top = self.settings.tcp_wmem[2]
            if sndbuf.capacity < top:
                sndbuf.capacity = want if want < top else top

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
