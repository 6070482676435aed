"""ARP input and output: answering, learning (arp_accept=0), probes, announcements."""

from __future__ import annotations

from aiostack.core.arp import ArpLayer, ArpOutput
from aiostack.core.counters import Counters
from aiostack.core.neighbor import NeighborTable, NudState
from aiostack.core.route import Interface, RoutingTable
from aiostack.settings import Settings
from aiostack.wire import arp
from aiostack.wire.arp import ArpOp, ArpPacket
from aiostack.wire.ethernet import BROADCAST, ZERO_MAC
from aiostack.wire.ipv4 import addr

from .builders import NEIGHBOR, NEIGHBOR_MAC, PEER, PEER_MAC, US, US_MAC, arp_bytes

OTHER_MAC = bytes.fromhex("02dd00000004")
T0 = 50.0


def make() -> tuple[ArpLayer, NeighborTable, Counters]:
    settings = Settings()
    counters = Counters()
    routes = RoutingTable()
    routes.add_address(Interface(US, 24))
    neighbors = NeighborTable(settings, counters)
    return ArpLayer(US_MAC, routes, neighbors, counters), neighbors, counters


def wire(
    op: int, sender_mac: bytes, sender_ip: int, target_mac: bytes, target_ip: int
) -> ArpPacket:
    """Through the codec both ways, as the link layer would hand it over."""
    return arp.parse(arp_bytes(op, sender_mac, sender_ip, target_mac, target_ip))


def emitted(out: ArpOutput) -> ArpPacket:
    buf = bytearray(arp.PACKET_LEN)
    arp.emit_into(buf, 0, out.packet)
    return arp.parse(buf)


def test_request_for_us_is_answered_unicast_and_teaches_us_the_asker() -> None:
    layer, neighbors, counters = make()
    reply, released = layer.receive(T0, wire(ArpOp.REQUEST, PEER_MAC, PEER, ZERO_MAC, US))
    assert released == []
    assert reply is not None
    assert reply.dst_mac == PEER_MAC
    assert emitted(reply) == ArpPacket(ArpOp.REPLY, US_MAC, US, PEER_MAC, PEER)
    assert counters.ArpInRequests == 1 and counters.ArpOutReplies == 1
    entry = neighbors.entries[PEER]
    assert entry.mac == PEER_MAC and entry.state is NudState.STALE


def test_request_for_someone_else_is_neither_answered_nor_learned() -> None:
    layer, neighbors, counters = make()
    reply, _ = layer.receive(T0, wire(ArpOp.REQUEST, PEER_MAC, PEER, ZERO_MAC, NEIGHBOR))
    assert reply is None
    assert neighbors.entries == {}
    assert counters.ArpInRequests == 1 and counters.ArpOutReplies == 0


def test_request_for_someone_else_updates_a_known_entry() -> None:
    layer, neighbors, _ = make()
    neighbors.confirm(T0, PEER, PEER_MAC, create=True, reachable=True)
    layer.receive(T0 + 1, wire(ArpOp.REQUEST, OTHER_MAC, PEER, ZERO_MAC, NEIGHBOR))
    entry = neighbors.entries[PEER]
    assert entry.mac == OTHER_MAC and entry.state is NudState.STALE


def test_probe_for_our_address_is_defended_without_learning() -> None:
    # RFC 5227 probe: sender IP 0.0.0.0. Linux replies (to the prober's MAC,
    # target IP 0) and learns nothing.
    layer, neighbors, _ = make()
    reply, _ = layer.receive(T0, wire(ArpOp.REQUEST, PEER_MAC, 0, ZERO_MAC, US))
    assert reply is not None and reply.dst_mac == PEER_MAC
    assert emitted(reply) == ArpPacket(ArpOp.REPLY, US_MAC, US, PEER_MAC, 0)
    assert neighbors.entries == {}


def test_probe_for_another_address_is_ignored() -> None:
    layer, neighbors, _ = make()
    reply, _ = layer.receive(T0, wire(ArpOp.REQUEST, PEER_MAC, 0, ZERO_MAC, NEIGHBOR))
    assert reply is None and neighbors.entries == {}


def test_reply_resolves_pending_packets() -> None:
    layer, neighbors, counters = make()
    frame = bytearray(b"queued")
    assert neighbors.resolve(T0, PEER, frame) is None
    (solicitation,) = neighbors.solicitations
    request = layer.request(solicitation.target, solicitation.mac)
    assert request.dst_mac == BROADCAST
    assert emitted(request) == ArpPacket(ArpOp.REQUEST, US_MAC, US, ZERO_MAC, PEER)
    assert counters.ArpOutRequests == 1
    reply, released = layer.receive(T0 + 0.01, wire(ArpOp.REPLY, PEER_MAC, PEER, US_MAC, US))
    assert reply is None
    assert released == [frame]
    assert neighbors.entries[PEER].state is NudState.REACHABLE
    assert counters.ArpInReplies == 1
    assert neighbors.resolve(T0 + 0.02, PEER, bytearray(b"next")) == PEER_MAC


def test_request_from_unresolved_neighbor_releases_packets_unconfirmed() -> None:
    # The asker is who we were looking for: its request tells us its MAC, so
    # the queue goes out, but only a reply proves reachability (Linux: STALE,
    # then DELAY as the queued packets use the entry).
    layer, neighbors, _ = make()
    frame = bytearray(b"queued")
    neighbors.resolve(T0, PEER, frame)
    reply, released = layer.receive(T0 + 0.5, wire(ArpOp.REQUEST, PEER_MAC, PEER, ZERO_MAC, US))
    assert reply is not None and reply.dst_mac == PEER_MAC
    assert released == [frame]
    entry = neighbors.entries[PEER]
    assert entry.mac == PEER_MAC and entry.state is NudState.DELAY
    assert neighbors.poll_at() == T0 + 0.5 + 5


def test_unsolicited_reply_creates_nothing() -> None:
    layer, neighbors, _ = make()
    reply, released = layer.receive(T0, wire(ArpOp.REPLY, PEER_MAC, PEER, US_MAC, US))
    assert (reply, released) == (None, [])
    assert neighbors.entries == {}


def test_gratuitous_arp_updates_known_entry_only() -> None:
    layer, neighbors, _ = make()
    # Unknown sender: arp_accept=0 means no entry.
    layer.receive(T0, wire(ArpOp.REQUEST, NEIGHBOR_MAC, NEIGHBOR, ZERO_MAC, NEIGHBOR))
    assert neighbors.entries == {}
    # Known sender moved to a new MAC: take it, but reachability is unproven.
    neighbors.confirm(T0, PEER, PEER_MAC, create=True, reachable=True)
    reply, _ = layer.receive(T0 + 1, wire(ArpOp.REQUEST, OTHER_MAC, PEER, ZERO_MAC, PEER))
    assert reply is None
    entry = neighbors.entries[PEER]
    assert entry.mac == OTHER_MAC and entry.state is NudState.STALE


def test_own_or_group_sender_mac_is_dropped() -> None:
    layer, neighbors, counters = make()
    for mac in (US_MAC, BROADCAST, bytes.fromhex("01005e000001")):
        reply, released = layer.receive(T0, wire(ArpOp.REQUEST, mac, PEER, ZERO_MAC, US))
        assert (reply, released) == (None, [])
    assert counters.drops["arp.bad_sender_mac"] == 3
    assert counters.ArpInRequests == 3 and counters.ArpOutReplies == 0
    assert neighbors.entries == {}


def test_sender_claiming_our_address_is_not_learned() -> None:
    layer, neighbors, _ = make()
    layer.receive(T0, wire(ArpOp.REQUEST, PEER_MAC, US, ZERO_MAC, US))
    layer.receive(T0, wire(ArpOp.REPLY, PEER_MAC, US, US_MAC, US))
    assert US not in neighbors.entries


def test_unicast_probe_request_goes_to_known_mac() -> None:
    layer, _, _ = make()
    out = layer.request(PEER, PEER_MAC)
    assert out.dst_mac == PEER_MAC
    assert emitted(out) == ArpPacket(ArpOp.REQUEST, US_MAC, US, ZERO_MAC, PEER)


def test_request_source_for_target_without_route_is_first_address() -> None:
    layer, _, _ = make()
    out = layer.request(addr("192.0.2.1"), None)
    assert out.packet.sender_ip == US and out.dst_mac == BROADCAST


def test_announce_is_a_broadcast_gratuitous_request() -> None:
    layer, _, counters = make()
    out = layer.announce(US)
    assert out.dst_mac == BROADCAST
    assert emitted(out) == ArpPacket(ArpOp.REQUEST, US_MAC, US, ZERO_MAC, US)
    assert counters.ArpOutRequests == 1
