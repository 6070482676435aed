"""The IPv4 layer: input validation and demultiplexing, output and fragmentation.

Input follows Linux's ``ip_rcv_core`` -> ``ip_rcv_finish`` -> ``ip_local_deliver``
path: header validation (counted as ``IpInHdrErrors``, ``IpInCsumErrors``,
``IpInTruncatedPkts``), the destination check (ours, or a broadcast;
everything else is ``IpInAddrErrors``, since a host does not forward),
source-route options refused (``accept_source_route=0``), reassembly, then
delivery by protocol, with ICMP handled here and an ICMP protocol
unreachable for protocols nobody registered.

A packet addressed to us is accepted whatever its TTL (RFC 1122 3.2.1.7:
TTL is a forwarding concern), as Linux does.

Output writes the header in place in front of a transport payload that the
caller built in a buffer from :meth:`Ipv4Layer.alloc`, so a datagram's bytes
are written once; only a datagram larger than the path MTU is copied, into
one new buffer per fragment. Frames ready for the link layer accumulate in
:attr:`Ipv4Layer.outbox` as ``(next_hop, frame)``; a next hop of
255.255.255.255 means "link broadcast".
"""

from __future__ import annotations

import errno as _errno
import random
import struct
from collections.abc import Iterable

from aiostack.core import icmp
from aiostack.core.counters import Counters
from aiostack.core.icmp import RateLimiter, TransportError
from aiostack.core.raw import RawTable
from aiostack.core.reassembly import Reassembler
from aiostack.core.route import MARTIAN_FIRST_OCTETS, RoutingTable
from aiostack.settings import Settings
from aiostack.wire import icmpv4, ipv4
from aiostack.wire.errors import ParseError
from aiostack.wire.icmpv4 import IcmpType, UnreachCode
from aiostack.wire.ipv4 import FLAG_DF, FLAG_MF, LIMITED_BROADCAST, IpProto, Ipv4Header
from aiostack.wire.ipv4 import write_header as write_ipv4_header

#: Linux's floor for a learned path MTU (``min_pmtu``).
MIN_PMTU = 552
#: How long a learned path MTU is believed (``mtu_expires``, seconds).
PMTU_EXPIRES = 600.0
#: IP option types that route a datagram through the sender's choice of hops.
SOURCE_ROUTE_OPTIONS = frozenset({0x83, 0x89})
#: Buckets of IP identification counters (Linux hashes into ``ip_idents`` likewise).
IDENT_BUCKETS = 2048
#: ICMP types accepted when sent to a broadcast address (Linux ``icmp_rcv``):
#: echo and timestamp requests, address mask request and reply.
BROADCAST_ICMP_TYPES = frozenset({IcmpType.ECHO_REQUEST, IcmpType.TIMESTAMP, 17, 18})

#: Total length, flags+offset, protocol, source and destination of a header.
_FAST_HEADER = struct.Struct("!2xH2xH1xB2xII")
_FRAGMENT_BITS = FLAG_MF | 0x1FFF
_ICMP = int(IpProto.ICMP)
_ECHO_REQUEST = int(IcmpType.ECHO_REQUEST)
_ECHO_REPLY = int(IcmpType.ECHO_REPLY)
_from_bytes = int.from_bytes


def _holds_header(packet: memoryview) -> bool:
    """Whether ``packet`` holds at least its whole header (20 bytes and the IHL)."""
    n = len(packet)
    return n >= ipv4.MIN_HEADER_LEN and n >= (packet[0] & 0xF) << 2


class Datagram:
    """A datagram for a transport (or an echo reply for a pinger).

    ``src``, ``dst`` and ``proto`` are all a transport needs on the fast path,
    so the full :class:`Ipv4Header` is only decoded (from ``raw``) when some
    slow path, such as an ICMP error, asks for it.
    """

    __slots__ = ("_header", "broadcast", "csum_ok", "dst", "payload", "proto", "raw", "src")

    def __init__(
        self,
        header: Ipv4Header | None,
        payload: memoryview,
        raw: memoryview,
        broadcast: bool,
        csum_ok: bool,
        src: int = 0,
        dst: int = 0,
        proto: int = 0,
    ) -> None:
        self._header = header
        if header is not None:
            src, dst, proto = header.src, header.dst, header.proto
        self.src = src
        self.dst = dst
        self.proto = proto
        self.payload = payload
        #: The whole datagram as received, header included (quoted by ICMP errors).
        self.raw = raw
        #: Sent to a broadcast address (no ICMP errors about it, ever).
        self.broadcast = broadcast
        #: The device already verified the transport checksum (virtio-net offload).
        self.csum_ok = csum_ok

    @property
    def header(self) -> Ipv4Header:
        header = self._header
        if header is None:
            header = self._header = ipv4.parse(self.raw, verify_checksum=False)[0]
        return header


class Ipv4Layer:
    """See the module docstring. Pure: ``now`` in seconds comes in."""

    def __init__(
        self,
        settings: Settings,
        counters: Counters,
        routes: RoutingTable,
        *,
        mtu: int,
        headroom: int,
        rng: random.Random,
    ) -> None:
        self.settings = settings
        self.counters = counters
        self.routes = routes
        self.mtu = mtu
        #: Bytes reserved in front of every IP header for the link layer.
        self.headroom = headroom
        #: Where a transport writes its header in a buffer from :meth:`alloc`.
        self.transport_offset = headroom + ipv4.MIN_HEADER_LEN
        self.reassembler = Reassembler(settings, counters)
        self.icmp_limiter = RateLimiter(settings, counters)
        #: Transport protocols with a handler; others get protocol unreachable.
        self.protocols: set[int] = {IpProto.ICMP}
        #: Raw sockets, each given a copy of what it matches before the transport runs.
        self.raw = RawTable(counters)
        #: Registered transports whose datagrams may take the fast path (all but ICMP).
        self._fast_protocols: set[int] = set()
        #: Path MTUs learned from fragmentation-needed errors: dst -> (mtu, expiry).
        self.pmtu: dict[int, tuple[int, float]] = {}
        self.outbox: list[tuple[int, bytearray]] = []
        self._rng = rng
        self._idents = [rng.getrandbits(16) for _ in range(IDENT_BUCKETS)]

    # -- input --------------------------------------------------------------

    def receive(
        self,
        now: float,
        packet: memoryview,
        link_broadcast: bool = False,
        csum_ok: bool = False,
    ) -> Datagram | TransportError | None:
        """Validate and deliver one packet; see the module docstring.

        The common case (no options, not a fragment, addressed to us, for a
        registered transport other than ICMP) takes a fast path that decodes
        the header with one ``unpack_from`` and builds no header object; it
        applies the same checks as the general path, which handles the rest.
        """
        counters = self.counters
        counters.IpInReceives += 1
        routes = self.routes
        n = len(packet)
        if n >= 20 and packet[0] == 0x45:
            total, frag, proto, src, dst = _FAST_HEADER.unpack_from(packet)
            if (
                20 <= total <= n
                and not frag & _FRAGMENT_BITS
                and dst in routes.local_addresses
                and src >> 24 not in MARTIAN_FIRST_OCTETS
                and src not in routes.martian_sources
                and (proto in self._fast_protocols or proto == _ICMP)
                # One's complement sum of a valid header is all ones, i.e. 0 mod 0xFFFF
                # (a header starting 0x45 is never all zeros).
                and _from_bytes(packet[:20], "big") % 0xFFFF == 0
            ):
                counters.IpInDelivers += 1
                raw = packet[:total] if total != n else packet
                if self.raw.by_protocol:
                    self.raw.deliver(src, dst, proto, raw)
                if proto == _ICMP:
                    return self._icmp_input(
                        now, src, dst, packet[1], raw[20:], raw, link_broadcast, csum_ok
                    )
                return Datagram(None, raw[20:], raw, link_broadcast, csum_ok, src, dst, proto)
        return self._receive_general(now, packet, link_broadcast, csum_ok)

    def _receive_general(
        self, now: float, packet: memoryview, link_broadcast: bool, csum_ok: bool
    ) -> Datagram | TransportError | None:
        counters = self.counters
        try:
            header, payload = ipv4.parse(packet)
        except ParseError as exc:
            # ip_rcv_core: only a frame shorter than its total length is a
            # truncated packet; one too short for its header is a header error.
            if exc.reason == "truncated" and _holds_header(packet):
                counters.IpInTruncatedPkts += 1
            else:
                if exc.reason == "bad_checksum":
                    counters.IpInCsumErrors += 1
                counters.IpInHdrErrors += 1
            counters.drop("ipv4." + exc.reason)
            return None
        routes = self.routes
        dst = header.dst
        broadcast = link_broadcast
        if not routes.is_local(dst):
            if not routes.is_broadcast(dst):
                counters.IpInAddrErrors += 1
                counters.drop("ipv4.multicast" if ipv4.is_multicast(dst) else "ipv4.not_for_us")
                return None
            broadcast = True
            counters.IpInBcastPkts += 1
        if routes.is_martian_source(header.src) and not (
            header.src >> 24 == 0 and dst == LIMITED_BROADCAST
        ):
            counters.IpInAddrErrors += 1
            counters.drop("ipv4.martian_source")
            return None
        if header.options and not self._options_acceptable(header.options):
            return None
        raw = packet[: header.total_length]
        if header.is_fragment:
            whole = self.reassembler.add(now, header, payload, raw)
            self._drain_reassembly_errors(now)
            if whole is None:
                return None
            header = whole.header
            raw = memoryview(self._rebuild(header, whole.payload))
            payload = raw[header.header_len :]
            csum_ok = False
        proto = header.proto
        # raw_local_deliver runs first; a raw socket's copy counts as a delivery.
        taken = bool(self.raw.by_protocol) and self.raw.deliver(header.src, dst, proto, raw)
        if proto not in self.protocols:
            if taken:
                counters.IpInDelivers += 1
                return None
            counters.IpInUnknownProtos += 1
            counters.drop("ipv4.unknown_protocol")
            self.send_error(
                now, header, raw, IcmpType.DEST_UNREACH, UnreachCode.PROTOCOL, broadcast=broadcast
            )
            return None
        counters.IpInDelivers += 1
        if proto == IpProto.ICMP:
            return self._icmp_input(
                now, header.src, header.dst, header.tos, payload, raw, broadcast, csum_ok
            )
        return Datagram(header, payload, raw, broadcast, csum_ok)

    def register_protocol(self, proto: int) -> None:
        """A transport handles ``proto`` from now on."""
        self.protocols.add(proto)
        if proto != IpProto.ICMP:
            self._fast_protocols.add(proto)

    def _options_acceptable(self, options: bytes) -> bool:
        """Walk the option list: malformed is a header error, source routes are refused."""
        index = 0
        n = len(options)
        while index < n:
            kind = options[index]
            if kind == 0:  # end of option list
                break
            if kind == 1:  # no-op
                index += 1
                continue
            if index + 1 >= n or options[index + 1] < 2 or index + options[index + 1] > n:
                self.counters.IpInHdrErrors += 1
                self.counters.drop("ipv4.bad_options")
                return False
            if kind in SOURCE_ROUTE_OPTIONS:
                self.counters.IpInDiscards += 1
                self.counters.drop("ipv4.source_route")
                return False
            index += options[index + 1]
        return True

    def _rebuild(self, header: Ipv4Header, payload: bytes) -> bytearray:
        """The reassembled datagram as one packet, so errors can quote it."""
        hlen = header.header_len
        packet = bytearray(hlen + len(payload))
        packet[hlen:] = payload
        ipv4.emit_into(
            packet,
            0,
            src=header.src,
            dst=header.dst,
            proto=header.proto,
            payload_len=len(payload),
            ttl=header.ttl,
            tos=header.tos,
            ident=header.ident,
            options=header.options,
        )
        return packet

    # -- ICMP ---------------------------------------------------------------

    def _icmp_input(
        self,
        now: float,
        src: int,
        dst: int,
        tos: int,
        payload: memoryview,
        raw: memoryview,
        broadcast: bool,
        csum_ok: bool,
    ) -> Datagram | TransportError | None:
        counters = self.counters
        counters.IcmpInMsgs += 1
        try:
            icmp_header, body = icmpv4.parse(payload, verify_checksum=not csum_ok)
        except ParseError as exc:
            counters.IcmpInErrors += 1
            if exc.reason == "bad_checksum":
                counters.IcmpInCsumErrors += 1
            counters.drop("icmp." + exc.reason)
            return None
        kind = icmp_header.type
        settings = self.settings
        if kind == _ECHO_REQUEST:
            counters.IcmpInEchos += 1
        elif kind == _ECHO_REPLY:
            counters.IcmpInEchoReps += 1
        elif kind == IcmpType.DEST_UNREACH:
            counters.IcmpInDestUnreachs += 1
        elif kind == IcmpType.TIME_EXCEEDED:
            counters.IcmpInTimeExcds += 1
        elif kind == IcmpType.PARAM_PROBLEM:
            counters.IcmpInParmProbs += 1
        # icmp_rcv judges by the IP destination (rt_flags), not the link's:
        # to a broadcast, only requests that may be answered are accepted, and
        # an echo request only if icmp_echo_ignore_broadcasts allows it.
        ip_broadcast = not self.routes.is_local(dst)
        if ip_broadcast and (
            kind not in BROADCAST_ICMP_TYPES
            or (kind == _ECHO_REQUEST and settings.icmp_echo_ignore_broadcasts)
        ):
            counters.IcmpInErrors += 1
            echo = kind == _ECHO_REQUEST
            counters.drop("icmp.echo_ignored" if echo else "icmp.broadcast")
            return None
        if kind == _ECHO_REQUEST:
            if settings.icmp_echo_ignore_all:
                counters.drop("icmp.echo_ignored")
                return None
            source = dst if not ip_broadcast else self._source_for(src)
            if source is None:
                return None
            sent = self.send_icmp(
                now,
                source,
                src,
                IcmpType.ECHO_REPLY,
                0,
                icmp_header.rest,
                body,
                tos=tos,
            )
            if sent == 0:
                counters.IcmpOutEchoReps += 1
            return None
        if kind == _ECHO_REPLY:
            return Datagram(None, payload, raw, broadcast, True, src, dst, _ICMP)
        if icmp_header.is_error:
            try:
                error = icmp.decode_error(icmp_header, body)
            except ParseError as exc:
                counters.IcmpInErrors += 1
                counters.drop("icmp.quote_" + exc.reason)
                return None
            if error is not None and error.mtu:
                self._learn_pmtu(now, error.dst, error.mtu)
            return error
        counters.drop("icmp.unhandled_type")
        return None

    def send_error(
        self,
        now: float,
        header: Ipv4Header,
        raw: memoryview,
        icmp_type: int,
        code: int,
        rest: int = 0,
        *,
        broadcast: bool = False,
    ) -> bool:
        """Send an ICMP error about a received datagram, if the rules and limits allow."""
        routes = self.routes
        if not icmp.may_send_error(
            header,
            raw,
            broadcast=broadcast or routes.is_broadcast(header.dst) or ipv4.is_multicast(header.dst),
            martian_source=routes.is_martian_source(header.src),
        ):
            return False
        if not self.icmp_limiter.allow(now, icmp_type, header.src):
            return False
        source = header.dst if routes.is_local(header.dst) else self._source_for(header.src)
        if source is None:
            return False
        tos = (header.tos & 0x1E) | icmp.TOS_INTERNET_CONTROL
        if self.send_icmp(
            now, source, header.src, icmp_type, code, rest, icmp.error_body(raw), tos=tos
        ):
            return False
        counters = self.counters
        if icmp_type == IcmpType.DEST_UNREACH:
            counters.IcmpOutDestUnreachs += 1
        elif icmp_type == IcmpType.TIME_EXCEEDED:
            counters.IcmpOutTimeExcds += 1
        elif icmp_type == IcmpType.PARAM_PROBLEM:
            counters.IcmpOutParmProbs += 1
        return True

    def send_icmp(
        self,
        now: float,
        src: int,
        dst: int,
        icmp_type: int,
        code: int,
        rest: int,
        body: Iterable[int] | memoryview | bytes,
        *,
        tos: int = 0,
    ) -> int:
        """Send one ICMP message; 0 or the errno of :meth:`output` (EMSGSIZE, ENETUNREACH)."""
        data = memoryview(body if isinstance(body, memoryview | bytes) else bytes(body))
        offset = self.transport_offset
        buf = self.alloc(icmpv4.HEADER_LEN + len(data))
        buf[offset + icmpv4.HEADER_LEN :] = data
        icmpv4.emit_into(buf, offset, type=icmp_type, code=code, rest=rest, body_len=len(data))
        result = self.output(now, buf, src=src, dst=dst, proto=IpProto.ICMP, tos=tos, df=False)
        if result == 0:
            self.counters.IcmpOutMsgs += 1
        return result

    # -- output -------------------------------------------------------------

    def alloc(self, transport_len: int) -> bytearray:
        """A buffer for one datagram: link headroom, IP header room, then ``transport_len``."""
        return bytearray(self.transport_offset + transport_len)

    def route_mtu(self, now: float, dst: int) -> int:
        """The MTU towards ``dst``: the device's, or less if a router told us so."""
        learned = self.pmtu.get(dst)
        if learned is not None:
            if learned[1] > now:
                return min(learned[0], self.mtu)
            del self.pmtu[dst]
        return self.mtu

    def output(
        self,
        now: float,
        buf: bytearray,
        *,
        src: int,
        dst: int,
        proto: int,
        tos: int = 0,
        ttl: int | None = None,
        df: bool | None = None,
        ident: int | None = None,
        gso: bool = False,
    ) -> int:
        """Send the datagram in ``buf``; return 0 or an errno (ENETUNREACH, EMSGSIZE).

        ``df`` None is Linux's ``IP_PMTUDISC_WANT`` (UDP's default): set DF when
        the datagram fits, fragment without it when it does not. True forbids
        fragmentation (EMSGSIZE instead); False never sets DF. ``gso``: a TCP
        super-segment the device will cut to MSS-sized packets (TSO), so it
        may exceed the MTU.
        """
        counters = self.counters
        payload_len = len(buf) - self.transport_offset
        if ipv4.MIN_HEADER_LEN + payload_len > ipv4.MAX_PACKET_LEN:
            # ip_append_data: no IPv4 datagram can carry it, fragmented or not.
            return _errno.EMSGSIZE
        counters.IpOutRequests += 1
        if dst == LIMITED_BROADCAST or self.routes.is_broadcast(dst):
            next_hop = LIMITED_BROADCAST
        else:
            route = self.routes.lookup(dst)
            if route is None:
                counters.IpOutNoRoutes += 1
                return _errno.ENETUNREACH
            next_hop = route.next_hop(dst)
        headroom = self.headroom
        mtu = self.route_mtu(now, dst) if self.pmtu else self.mtu
        if ttl is None:
            ttl = self.settings.ip_default_ttl
        if ipv4.MIN_HEADER_LEN + payload_len <= mtu or gso:
            frag = FLAG_DF if df or (df is None and next_hop != LIMITED_BROADCAST) else 0
            if ident is None:
                ident = 0 if frag else self._next_ident(src, dst, proto)
            write_ipv4_header(
                buf, headroom, src, dst, proto, payload_len, ttl, tos, ident, frag, b""
            )
            self.outbox.append((next_hop, buf))
            return 0
        if df:
            counters.IpFragFails += 1
            return _errno.EMSGSIZE
        self._fragment(
            buf,
            next_hop,
            mtu,
            src=src,
            dst=dst,
            proto=proto,
            ttl=ttl,
            tos=tos,
            ident=self._next_ident(src, dst, proto) if ident is None else ident,
        )
        return 0

    def _fragment(
        self,
        buf: bytearray,
        next_hop: int,
        mtu: int,
        *,
        src: int,
        dst: int,
        proto: int,
        ttl: int,
        tos: int,
        ident: int,
    ) -> None:
        """RFC 791 fragmentation: payload cut at multiples of 8 bytes, MF on all but the last."""
        view = memoryview(buf)[self.transport_offset :]
        total = len(view)
        chunk = (mtu - ipv4.MIN_HEADER_LEN) & ~7
        headroom = self.headroom
        start = self.transport_offset
        for offset in range(0, total, chunk):
            piece = view[offset : offset + chunk]
            frame = bytearray(start + len(piece))
            frame[start:] = piece
            more = FLAG_MF if offset + chunk < total else 0
            ipv4.emit_into(
                frame,
                headroom,
                src=src,
                dst=dst,
                proto=proto,
                payload_len=len(piece),
                ttl=ttl,
                tos=tos,
                ident=ident,
                frag=more | (offset >> 3),
            )
            self.outbox.append((next_hop, frame))
            self.counters.IpFragCreates += 1
        self.counters.IpFragOKs += 1

    def _next_ident(self, src: int, dst: int, proto: int) -> int:
        bucket = hash((src, dst, proto)) % IDENT_BUCKETS
        ident = self._idents[bucket]
        self._idents[bucket] = (ident + 1) & 0xFFFF
        return ident

    def _source_for(self, dst: int) -> int | None:
        route = self.routes.lookup(dst)
        return route.source if route is not None else None

    def _learn_pmtu(self, now: float, dst: int, mtu: int) -> None:
        if mtu < 68:
            return
        mtu = max(mtu, MIN_PMTU)
        # RFC 1191 6.3: never raise the estimate because of a Datagram Too Big
        # (Linux's __ip_rt_update_pmtu ignores a larger MTU likewise).
        if mtu > self.route_mtu(now, dst):
            return
        self.pmtu[dst] = (mtu, now + PMTU_EXPIRES)

    # -- failures and timers ------------------------------------------------

    def link_failure(self, frame: bytearray) -> TransportError | None:
        """A datagram we sent could not be delivered (ARP failed): EHOSTUNREACH for its sender.

        Linux reaches the same result through ``ipv4_link_failure``, which sends
        itself an ICMP host unreachable about the datagram.
        """
        try:
            header, payload = ipv4.parse(memoryview(frame)[self.headroom :], verify_checksum=False)
        except ParseError:
            return None
        if header.frag_offset:
            # icmp_send() only ever reports about the first fragment.
            return None
        sport = dport = 0
        if header.proto == IpProto.ICMP:
            sport, dport = icmp.echo_id_seq(payload)
        elif len(payload) >= 4:
            sport = (payload[0] << 8) | payload[1]
            dport = (payload[2] << 8) | payload[3]
        return TransportError(
            header.proto,
            header.src,
            header.dst,
            sport,
            dport,
            _errno.EHOSTUNREACH,
            False,
            IcmpType.DEST_UNREACH,
            UnreachCode.HOST,
        )

    def poll_at(self) -> float | None:
        return self.reassembler.poll_at()

    def poll(self, now: float) -> None:
        self.reassembler.poll(now)
        self._drain_reassembly_errors(now)

    def _drain_reassembly_errors(self, now: float) -> None:
        timed_out = self.reassembler.timed_out
        if not timed_out:
            return
        for header, quote in timed_out:
            self.send_error(now, header, memoryview(quote), IcmpType.TIME_EXCEEDED, 1)
        timed_out.clear()
