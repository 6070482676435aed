"""UDP: the port table, demultiplexing, receive queues and datagram output.

The rules are Linux's (``net/ipv4/udp.c``):

- Binding: two endpoints conflict on the same port when their addresses
  overlap (either is the wildcard, or they are equal) unless both set
  SO_REUSEADDR or both set SO_REUSEPORT (``udp_lib_lport_inuse``). Port 0
  takes a random free port from ``ip_local_port_range`` (RFC 6056: random
  start, then a scan, so ports are not predictable).
- Demultiplexing scores each endpoint on the port as ``compute_score`` does:
  +4 for a matching bound address, +4 for a matching connected peer address,
  +4 for a matching peer port; an endpoint whose bound or connected values
  disagree with the datagram does not match at all. Among equally good
  SO_REUSEPORT endpoints a hash of the 4-tuple picks one, so one flow
  always reaches the same endpoint. A broadcast reaches every match.
- Receive queues are bounded by SO_RCVBUF: a datagram is dropped (and
  counted in ``UdpRcvbufErrors`` and ``UdpInErrors``) while the queue
  already holds more than the limit. Each datagram is charged its length
  plus :data:`DATAGRAM_OVERHEAD`, standing in for the kernel's skb truesize.
- ICMP errors set the endpoint's pending error (SO_ERROR) only when Linux
  would report it: a hard error (port or protocol unreachable...; for UDP
  also fragmentation needed, EMSGSIZE, as ``__udp4_lib_err`` says) on a
  connected endpoint, or any error when IP_RECVERR is on.
"""

from __future__ import annotations

import errno
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiostack.core.counters import Counters
from aiostack.core.icmp import TransportError
from aiostack.core.ipv4 import Datagram, Ipv4Layer
from aiostack.core.ports import ephemeral_candidates
from aiostack.settings import Settings
from aiostack.wire import udp
from aiostack.wire.errors import ParseError
from aiostack.wire.icmpv4 import IcmpType, UnreachCode
from aiostack.wire.ipv4 import ANY, LIMITED_BROADCAST, IpProto, is_multicast

#: Bytes charged against SO_RCVBUF per datagram beyond its payload.
DATAGRAM_OVERHEAD = 512
#: Largest UDP payload in one IPv4 datagram (65535 - 20 - 8).
MAX_PAYLOAD = 65507

Address = tuple[int, int]


@dataclass(slots=True, eq=False)
class UdpEndpoint:
    """One UDP socket's protocol state (Linux's ``struct udp_sock``)."""

    #: Bound (receive) address, Linux's ``rcv_saddr``; ANY for the wildcard.
    bound_addr: int = ANY
    #: Source address for sending (``saddr``); ANY means "the route's".
    source_addr: int = ANY
    port: int = 0
    remote_addr: int = ANY
    remote_port: int = 0
    reuseaddr: bool = False
    reuseport: bool = False
    broadcast: bool = False
    recverr: bool = False
    rcvbuf: int = 212_992
    ttl: int | None = None
    tos: int = 0
    #: Received datagrams: (payload, (source address, source port)).
    queue: deque[tuple[bytes, Address]] = field(default_factory=deque)
    rmem: int = 0
    #: Pending error (SO_ERROR), reported once by the next call.
    error: int = 0
    #: Opaque slot for the shell (the socket that owns this endpoint).
    owner: Any = None
    #: bind() chose the address / the port (Linux SOCK_BINDADDR_LOCK and
    #: SOCK_BINDPORT_LOCK): a disconnect keeps them.
    addr_locked: bool = False
    port_locked: bool = False

    @property
    def connected(self) -> bool:
        return self.remote_port != 0

    def pop(self) -> tuple[bytes, Address] | None:
        """Take the oldest datagram and release its buffer charge."""
        if not self.queue:
            return None
        item = self.queue.popleft()
        self.rmem -= len(item[0]) + DATAGRAM_OVERHEAD
        return item

    def take_error(self) -> int:
        code, self.error = self.error, 0
        return code


class UdpLayer:
    """See the module docstring. Pure apart from the injected ``rng``."""

    def __init__(
        self, settings: Settings, counters: Counters, ip: Ipv4Layer, rng: random.Random
    ) -> None:
        self.settings = settings
        self.counters = counters
        self.ip = ip
        self.rng = rng
        self.ports: dict[int, list[UdpEndpoint]] = {}
        ip.register_protocol(IpProto.UDP)

    # -- binding ------------------------------------------------------------

    def bind(self, ep: UdpEndpoint, address: int, port: int, *, privileged: bool) -> int:
        """``inet_bind`` for UDP after the sockaddr checks; 0 or an errno.

        Checks in the kernel's order: address type (EADDRNOTAVAIL), privileged
        port (EACCES), already bound (EINVAL), port in use (EADDRINUSE).
        """
        routes = self.ip.routes
        special = address == ANY or routes.is_broadcast(address) or is_multicast(address)
        if not (special or routes.is_local(address) or self.settings.ip_nonlocal_bind):
            return errno.EADDRNOTAVAIL
        if port and port < self.settings.ip_unprivileged_port_start and not privileged:
            return errno.EACCES
        if ep.port:
            return errno.EINVAL
        port_locked = port != 0
        if port == 0:
            port = self._ephemeral_port(ep, address)
            if port == 0:
                return errno.EADDRINUSE
        elif self._in_use(ep, address, port):
            return errno.EADDRINUSE
        ep.addr_locked = address != ANY
        ep.port_locked = port_locked
        ep.bound_addr = address
        ep.source_addr = ANY if (routes.is_broadcast(address) or is_multicast(address)) else address
        ep.port = port
        self.ports.setdefault(port, []).append(ep)
        return 0

    def autobind(self, ep: UdpEndpoint) -> int:
        """Bind an unbound endpoint to an ephemeral port (``inet_autobind``).

        Like Linux, a failure (no free port) is EAGAIN, not EADDRINUSE.
        """
        if ep.port:
            return 0
        return errno.EAGAIN if self.bind(ep, ANY, 0, privileged=True) else 0

    def unbind(self, ep: UdpEndpoint) -> None:
        endpoints = self.ports.get(ep.port)
        if endpoints is not None and ep in endpoints:
            endpoints.remove(ep)
            if not endpoints:
                del self.ports[ep.port]
        ep.port = 0

    def connect(self, ep: UdpEndpoint, address: int, port: int) -> int:
        """``ip4_datagram_connect``: fix the peer, pick the source; 0 or an errno.

        The endpoint is autobound first, as ``inet_dgram_connect`` does.
        """
        code = self.autobind(ep)
        if code:
            return code
        routes = self.ip.routes
        route = routes.lookup(address)
        if route is None and not routes.is_broadcast(address):
            return errno.ENETUNREACH
        if routes.is_broadcast(address) and not ep.broadcast:
            return errno.EACCES
        if ep.source_addr == ANY:
            source = route.source if route is not None else self._any_source()
            ep.source_addr = source
            if ep.bound_addr == ANY:
                ep.bound_addr = source
        ep.remote_addr = address
        ep.remote_port = port
        return 0

    def disconnect(self, ep: UdpEndpoint) -> None:
        """``connect(AF_UNSPEC)``: forget the peer (``udp_disconnect``)."""
        ep.remote_addr = ANY
        ep.remote_port = 0
        # __udp_disconnect: what connect() or autobind chose is undone, what
        # bind() chose stays; a pending error (sk_err) is left alone.
        if not ep.addr_locked:
            ep.bound_addr = ANY
            ep.source_addr = ANY
        if not ep.port_locked:
            self.unbind(ep)

    def _in_use(self, ep: UdpEndpoint, address: int, port: int) -> bool:
        for other in self.ports.get(port, ()):
            if other is ep:
                continue
            if (ep.reuseaddr and other.reuseaddr) or (ep.reuseport and other.reuseport):
                continue
            if address == ANY or other.bound_addr == ANY or other.bound_addr == address:
                return True
        return False

    def _ephemeral_port(self, ep: UdpEndpoint, address: int) -> int:
        for port in ephemeral_candidates(self.rng, self.settings.ip_local_port_range):
            if not self._in_use(ep, address, port):
                return port
        return 0

    def _any_source(self) -> int:
        interfaces = self.ip.routes.interfaces
        return interfaces[0].address if interfaces else ANY

    # -- input --------------------------------------------------------------

    def receive(self, now: float, dgram: Datagram) -> list[UdpEndpoint]:
        """Queue one datagram on its endpoint(s); return those that got data."""
        counters = self.counters
        try:
            sport, dport, payload = udp.parse_in(
                dgram.payload, dgram.src, dgram.dst, not dgram.csum_ok
            )
        except ParseError as exc:
            counters.UdpInErrors += 1
            if exc.reason == "bad_checksum":
                counters.UdpInCsumErrors += 1
            counters.drop("udp." + exc.reason)
            return []
        src = dgram.src
        # Every match gets a copy only of an IP broadcast (Linux decides by the
        # route, not by the link): a unicast in a link broadcast goes to one.
        if dgram.broadcast and dgram.dst not in self.ip.routes.local_addresses:
            targets = self._all_matches(src, sport, dgram.dst, dport)
        else:
            endpoints = self.ports.get(dport)
            # Fast path: one wildcard, unconnected endpoint on the port takes everything.
            if (
                endpoints is not None
                and len(endpoints) == 1
                and endpoints[0].bound_addr == ANY
                and endpoints[0].remote_addr == ANY
                and not endpoints[0].remote_port
            ):
                targets = endpoints
            else:
                best = self.lookup(src, sport, dgram.dst, dport)
                targets = [best] if best is not None else []
        if not targets:
            counters.UdpNoPorts += 1
            counters.drop("udp.no_port")
            self.ip.send_error(
                now,
                dgram.header,
                dgram.raw,
                IcmpType.DEST_UNREACH,
                UnreachCode.PORT,
                broadcast=dgram.broadcast,
            )
            return []
        data = bytes(payload)
        cost = len(data) + DATAGRAM_OVERHEAD
        item = (data, (src, sport))
        if len(targets) == 1:
            ep = targets[0]
            if ep.rmem > ep.rcvbuf:
                counters.UdpRcvbufErrors += 1
                counters.UdpInErrors += 1
                return []
            ep.queue.append(item)
            ep.rmem += cost
            counters.UdpInDatagrams += 1
            return targets
        delivered = []
        for ep in targets:
            if ep.rmem > ep.rcvbuf:
                counters.UdpRcvbufErrors += 1
                counters.UdpInErrors += 1
                continue
            ep.queue.append(item)
            ep.rmem += cost
            counters.UdpInDatagrams += 1
            delivered.append(ep)
        return delivered

    def lookup(self, src: int, sport: int, dst: int, dport: int) -> UdpEndpoint | None:
        """The best endpoint for a datagram, scored as in the module docstring."""
        endpoints = self.ports.get(dport)
        if not endpoints:
            return None
        best: UdpEndpoint | None = None
        best_score = -1
        group: list[UdpEndpoint] = []
        for ep in endpoints:
            score = _score(ep, src, sport, dst)
            if score < 0:
                continue
            if score > best_score:
                best, best_score = ep, score
                group = [ep] if ep.reuseport else []
            elif score == best_score and ep.reuseport and best is not None and best.reuseport:
                group.append(ep)
        if len(group) > 1:
            return group[hash((src, sport, dst, dport)) % len(group)]
        return best

    def _all_matches(self, src: int, sport: int, dst: int, dport: int) -> list[UdpEndpoint]:
        return [ep for ep in self.ports.get(dport, ()) if _score(ep, src, sport, dst) >= 0]

    def error(self, err: TransportError) -> UdpEndpoint | None:
        """Report an ICMP error to the endpoint that sent the quoted datagram."""
        ep = self.lookup(err.dst, err.dport, err.src, err.sport)
        if ep is None:
            return None
        fatal = err.fatal or (
            err.icmp_type == IcmpType.DEST_UNREACH and err.icmp_code == UnreachCode.FRAG_NEEDED
        )
        if not ep.recverr and (not fatal or not ep.connected):
            return None
        ep.error = err.errno
        return ep

    # -- output -------------------------------------------------------------

    def send(
        self, now: float, ep: UdpEndpoint, data: bytes | memoryview, address: int, port: int
    ) -> int:
        """Send one datagram; 0 or an errno (EMSGSIZE, EACCES, ENETUNREACH, EAGAIN...).

        The endpoint is autobound first, as ``inet_sendmsg`` does before
        ``udp_sendmsg`` checks anything.
        """
        code = self.autobind(ep)
        if code:
            return code
        size = len(data)
        if size > MAX_PAYLOAD:
            return errno.EMSGSIZE
        ip = self.ip
        routes = ip.routes
        broadcast = address == LIMITED_BROADCAST or routes.is_broadcast(address)
        if broadcast and not ep.broadcast:
            return errno.EACCES
        source = ep.source_addr
        if source == ANY:
            route = routes.lookup(address)
            if route is None:
                if not broadcast:
                    ip.counters.IpOutNoRoutes += 1
                    return errno.ENETUNREACH
                source = self._any_source()
            else:
                source = route.source
        buf = ip.alloc(udp.HEADER_LEN + size)
        offset = ip.transport_offset
        buf[offset + udp.HEADER_LEN :] = data
        udp.emit_into(
            buf, offset, src_port=ep.port, dst_port=port, payload_len=size, src=source, dst=address
        )
        code = ip.output(
            now, buf, src=source, dst=address, proto=IpProto.UDP, tos=ep.tos, ttl=ep.ttl
        )
        if code == 0:
            self.counters.UdpOutDatagrams += 1
        return code


def _score(ep: UdpEndpoint, src: int, sport: int, dst: int) -> int:
    score = 0
    if ep.bound_addr != ANY:
        if ep.bound_addr != dst:
            return -1
        score += 4
    if ep.remote_addr != ANY:
        if ep.remote_addr != src:
            return -1
        score += 4
    if ep.remote_port:
        if ep.remote_port != sport:
            return -1
        score += 4
    return score
