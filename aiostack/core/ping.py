"""ICMP "ping" sockets' table (Linux ``net/ipv4/ping.c``): echo identifiers as ports.

``socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP)`` lets an unprivileged program
ping: the echo identifier plays the part of a port. Pure; the socket layer
(:mod:`aiostack.socket.ping`) owns the endpoints and the shell hands this
table the echo replies and ICMP errors the IP layer decoded.

- **Identifiers** (``ping_get_port``): an explicit one is EADDRINUSE when
  another socket holds it, unless both set SO_REUSEADDR (the bound address
  does not matter); identifier 0 means "pick one": a rover steps from the
  last identifier it gave out to the next free one, skipping 0, as Linux's
  ``ping_port_rover`` does (Linux's rover starts at 0, so does this one).
- **Replies** (``ping_rcv``/``ping_lookup``): an echo reply goes to the
  socket bound to its identifier whose bound address, if any, is the reply's
  destination; the most recently bound wins, as Linux adds to the head of
  its hash chain. The connected peer is *not* checked (Linux does not).
- **Errors** (``ping_err``): an ICMP error quoting one of our echo requests
  reaches the socket by identifier. Without IP_RECVERR only a hard error on
  a connected socket is recorded; with it, every error is. Fragmentation
  needed counts as hard (the socket's PMTU discovery is on).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiostack.core.counters import Counters
from aiostack.core.dgram_queue import DatagramQueue
from aiostack.core.icmp import TransportError
from aiostack.wire.icmpv4 import IcmpType, UnreachCode

_IDENTS = 1 << 16


@dataclass(eq=False, slots=True)
class PingEndpoint(DatagramQueue):
    """One ping socket's identifier, addresses, receive queue and pending error."""

    owner: Any = None
    #: ``inet_num``: the echo identifier; 0 until bound or autobound.
    ident: int = 0
    #: ``inet_rcv_saddr``: replies must be addressed to it when set.
    bound_addr: int = 0
    reuseaddr: bool = False


class PingTable:
    """The bound ping sockets of one stack, by identifier (Linux ``ping_table``)."""

    __slots__ = ("by_ident", "counters", "rover")

    def __init__(self, counters: Counters) -> None:
        self.counters = counters
        self.by_ident: dict[int, list[PingEndpoint]] = {}
        self.rover = 0

    def bind(self, ep: PingEndpoint, ident: int) -> bool:
        """Give ``ep`` the identifier ``ident`` (0: the next free one); False if none may be."""
        if ident == 0:
            candidate = self.rover
            for _ in range(_IDENTS):
                candidate = (candidate + 1) & 0xFFFF or 1
                if candidate not in self.by_ident:
                    break
            else:
                return False
            ident = self.rover = candidate
        else:
            for other in self.by_ident.get(ident, ()):
                if other is not ep and not (other.reuseaddr and ep.reuseaddr):
                    return False
        ep.ident = ident
        self.by_ident.setdefault(ident, []).insert(0, ep)
        return True

    def unbind(self, ep: PingEndpoint) -> None:
        """``ping_unhash``: free the identifier (close, or disconnect of an autobound one)."""
        eps = self.by_ident.get(ep.ident)
        if eps is not None and ep in eps:
            eps.remove(ep)
            if not eps:
                del self.by_ident[ep.ident]
        ep.ident = 0

    def lookup(self, ident: int, local: int) -> PingEndpoint | None:
        """``ping_lookup``: the newest socket on ``ident`` whose bound address allows ``local``."""
        for ep in self.by_ident.get(ident, ()):
            if not ep.bound_addr or ep.bound_addr == local:
                return ep
        return None

    def receive(self, src: int, dst: int, message: memoryview) -> PingEndpoint | None:
        """An echo reply (``message``: ICMP header and data) from ``src``; who took it."""
        if not self.by_ident or len(message) < 8:
            return None
        ep = self.lookup((message[4] << 8) | message[5], dst)
        if ep is None:
            return None
        if not ep.push(bytes(message), src):
            self.counters.drop("ping.rcvbuf")
            return None
        return ep

    def error(self, err: TransportError) -> PingEndpoint | None:
        """An ICMP error about one of our echo requests; the endpoint it was recorded on."""
        if not self.by_ident:
            return None
        ep = self.lookup(err.sport, err.src)
        if ep is None:
            return None
        hard = err.fatal or (
            err.icmp_type == IcmpType.DEST_UNREACH and err.icmp_code == UnreachCode.FRAG_NEEDED
        )
        if not ep.recverr and (not hard or not ep.connected):
            return None
        ep.error = err.errno
        return ep
