"""ARP input (RFC 826, with Linux's choices) and the requests we send.

- Answer requests for our own addresses only (Linux ``arp_ignore=0`` but with
  a single interface that is the same thing), replying unicast to the asker.
- Learn the sender of a request addressed to us (STALE, like Linux's
  ``neigh_event_ns``); replies and gratuitous ARPs only update entries we
  already have (``arp_accept=0``), so nobody can fill our table unasked.
- Ignore the sender fields of ARP probes (sender 0.0.0.0, RFC 5227) while
  still answering them: a probe for our address is defended.
- Announce an address with a gratuitous request (sender = target = our
  address) when it comes up, so the kernel's stale entries are updated.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiostack.core.counters import Counters
from aiostack.core.neighbor import NeighborTable
from aiostack.core.route import RoutingTable
from aiostack.wire.arp import ArpOp, ArpPacket
from aiostack.wire.ethernet import BROADCAST, ZERO_MAC


@dataclass(slots=True)
class ArpOutput:
    """An ARP packet to send in a frame addressed to ``dst_mac``."""

    dst_mac: bytes
    packet: ArpPacket


class ArpLayer:
    def __init__(
        self, mac: bytes, routes: RoutingTable, neighbors: NeighborTable, counters: Counters
    ) -> None:
        self.mac = mac
        self.routes = routes
        self.neighbors = neighbors
        self.counters = counters

    def receive(self, now: float, packet: ArpPacket) -> tuple[ArpOutput | None, list[bytearray]]:
        """Process one ARP packet: an optional reply, plus queued packets now sendable."""
        routes = self.routes
        for_us = routes.is_local(packet.target_ip)
        if packet.op == ArpOp.REQUEST:
            self.counters.ArpInRequests += 1
        else:
            self.counters.ArpInReplies += 1
        if packet.sender_mac == self.mac or packet.sender_mac[0] & 1:
            self.counters.drop("arp.bad_sender_mac")
            return None, []
        released: list[bytearray] = []
        if packet.sender_ip and not routes.is_local(packet.sender_ip):
            released = self.neighbors.confirm(
                now,
                packet.sender_ip,
                packet.sender_mac,
                create=for_us and packet.op == ArpOp.REQUEST,
                reachable=packet.op == ArpOp.REPLY and for_us,
            )
        reply = None
        if packet.op == ArpOp.REQUEST and for_us:
            self.counters.ArpOutReplies += 1
            reply = ArpOutput(
                packet.sender_mac,
                ArpPacket(
                    ArpOp.REPLY, self.mac, packet.target_ip, packet.sender_mac, packet.sender_ip
                ),
            )
        return reply, released

    def request(self, target: int, mac: bytes | None) -> ArpOutput:
        """The request for a solicitation: broadcast, or unicast to re-verify ``mac``."""
        route = self.routes.lookup(target)
        source = route.source if route is not None else self._any_address()
        self.counters.ArpOutRequests += 1
        return ArpOutput(
            mac if mac is not None else BROADCAST,
            ArpPacket(ArpOp.REQUEST, self.mac, source, ZERO_MAC, target),
        )

    def announce(self, address: int) -> ArpOutput:
        """A gratuitous ARP request for ``address`` (RFC 5227 announcement)."""
        self.counters.ArpOutRequests += 1
        return ArpOutput(BROADCAST, ArpPacket(ArpOp.REQUEST, self.mac, address, ZERO_MAC, address))

    def _any_address(self) -> int:
        return self.routes.interfaces[0].address if self.routes.interfaces else 0
