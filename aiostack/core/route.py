"""Local addresses and the routing table: next hop and source address.

A stack has one interface, which may carry several IPv4 addresses. Each
address adds a connected route for its prefix (Linux adds ``proto kernel
scope link`` routes the same way); a default gateway, or any static route,
adds a route with a next hop. Lookup is longest-prefix match; with a handful
of routes a scan of a list kept sorted by prefix length is both the simplest
and the fastest structure, and a one-entry cache per destination would only
help beyond hundreds of routes.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiostack.wire.ipv4 import LIMITED_BROADCAST, addr, addr_str

#: First octets of martian sources: 0/8 ("this network"), 127/8 (loopback),
#: 224/4 (multicast).
MARTIAN_FIRST_OCTETS = frozenset({0, 127, *range(224, 240)})


@dataclass(slots=True, frozen=True)
class Interface:
    """One IPv4 address on the interface, with its prefix."""

    address: int
    prefix_len: int

    @property
    def netmask(self) -> int:
        return (0xFFFFFFFF << (32 - self.prefix_len)) & 0xFFFFFFFF

    @property
    def network(self) -> int:
        return self.address & self.netmask

    @property
    def broadcast(self) -> int:
        """The subnet-directed broadcast (none on /31 and /32, RFC 3021)."""
        if self.prefix_len >= 31:
            return LIMITED_BROADCAST
        return self.network | (~self.netmask & 0xFFFFFFFF)

    @classmethod
    def parse(cls, text: str) -> Interface:
        """``"198.18.0.2/24"``; ValueError names the bad text."""
        address, sep, prefix = text.partition("/")
        if not sep or not prefix.isdigit() or not 0 <= int(prefix) <= 32:
            raise ValueError(f"address: {text!r} is not ADDRESS/PREFIX (e.g. 198.18.0.2/24)")
        return cls(addr(address), int(prefix))

    def __str__(self) -> str:
        return f"{addr_str(self.address)}/{self.prefix_len}"


@dataclass(slots=True, frozen=True)
class Route:
    network: int
    prefix_len: int
    #: Next hop, or None when the destination is on the link (connected route).
    gateway: int | None
    #: Preferred source address (Linux ``src``).
    source: int

    def next_hop(self, dst: int) -> int:
        return dst if self.gateway is None else self.gateway

    def __str__(self) -> str:
        via = f" via {addr_str(self.gateway)}" if self.gateway is not None else " scope link"
        return f"{addr_str(self.network)}/{self.prefix_len}{via} src {addr_str(self.source)}"


class RoutingTable:
    """Addresses of this host and routes to everywhere else."""

    def __init__(self) -> None:
        self.interfaces: list[Interface] = []
        self.routes: list[Route] = []
        #: Our addresses. (Plain attributes, not properties: the receive fast
        #: path reads them for every packet.)
        self.local_addresses: frozenset[int] = frozenset()
        #: Broadcast addresses and our own: never a valid source of a received packet.
        self.martian_sources: frozenset[int] = frozenset({LIMITED_BROADCAST})
        self._broadcast: frozenset[int] = frozenset({LIMITED_BROADCAST})

    # -- configuration ------------------------------------------------------

    def add_address(self, iface: Interface) -> None:
        """Add a local address and its connected route."""
        if any(i.address == iface.address for i in self.interfaces):
            raise ValueError(f"address: {iface} is already configured")
        self.interfaces.append(iface)
        # Like Linux, only the first (primary) address of a subnet adds its
        # prefix route, so a secondary address does not become the source.
        if iface.prefix_len < 32 and not any(
            r.gateway is None and (r.network, r.prefix_len) == (iface.network, iface.prefix_len)
            for r in self.routes
        ):
            self._add(Route(iface.network, iface.prefix_len, None, iface.address))
        self._refresh()

    def add_route(self, network: int, prefix_len: int, gateway: int | None) -> Route:
        """Add a static route (``gateway`` None: on-link); the gateway must be reachable."""
        if not 0 <= prefix_len <= 32:
            raise ValueError(f"prefix_len: {prefix_len} is not in 0..32")
        mask = (0xFFFFFFFF << (32 - prefix_len)) & 0xFFFFFFFF
        hop_target = gateway if gateway is not None else network
        via = self.lookup(hop_target) if gateway is not None else None
        if gateway is not None and (via is None or via.gateway is not None):
            raise ValueError(f"gateway: {addr_str(gateway)} is not on a connected network")
        source = via.source if via is not None else self._source_for(network)
        route = Route(network & mask, prefix_len, gateway, source)
        self._add(route)
        return route

    def set_default_gateway(self, gateway: int) -> Route:
        """Replace the default route; a gateway that is not on-link leaves it unchanged."""
        return self.add_route(0, 0, gateway)

    # -- queries (hot path) -------------------------------------------------

    def lookup(self, dst: int) -> Route | None:
        """Longest-prefix match, or None (ENETUNREACH for a socket)."""
        for route in self.routes:
            # A /0 shifts by 32, which leaves 0 for every 32-bit address.
            if (dst ^ route.network) >> (32 - route.prefix_len) == 0:
                return route
        return None

    def is_local(self, address: int) -> bool:
        return address in self.local_addresses

    def is_broadcast(self, address: int) -> bool:
        """Limited broadcast or the directed broadcast of one of our subnets."""
        return address in self._broadcast

    def is_martian_source(self, address: int) -> bool:
        """Sources no host may send from (RFC 1812 5.3.7): multicast, broadcast, loopback.

        "This network" 0.0.0.0/8 as well (Linux's zeronet check; the IP layer
        still lets it reach the limited broadcast, as Linux does for DHCP
        clients). Our own addresses too: a packet arriving from one of them is spoofed
        (Linux's ``fib_validate_source`` refuses a local source the same way).
        """
        return address >> 24 in MARTIAN_FIRST_OCTETS or address in self.martian_sources

    # -- internals ----------------------------------------------------------

    def _add(self, route: Route) -> None:
        self.routes = [
            r for r in self.routes if (r.network, r.prefix_len) != (route.network, route.prefix_len)
        ]
        self.routes.append(route)
        self.routes.sort(key=lambda r: r.prefix_len, reverse=True)

    def _source_for(self, dst: int) -> int:
        route = self.lookup(dst)
        if route is not None:
            return route.source
        if not self.interfaces:
            raise ValueError("route: no address configured to use as the source")
        return self.interfaces[0].address

    def _refresh(self) -> None:
        self.local_addresses = frozenset(i.address for i in self.interfaces)
        self._broadcast = frozenset({LIMITED_BROADCAST} | {i.broadcast for i in self.interfaces})
        self.martian_sources = self._broadcast | self.local_addresses
