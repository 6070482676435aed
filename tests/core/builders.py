"""Builders for the pure-core tests: packets written with the wire codecs.

Everything here is deterministic: hosts get a seeded ``random.Random`` and
the tests pass ``now`` explicitly. The default network is the design's test
subnet, 198.18.0.0/24, with the peer (and gateway) at .1 and us at .2.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from aiostack.core.counters import Counters
from aiostack.core.ipv4 import Datagram, Ipv4Layer
from aiostack.core.route import Interface, RoutingTable
from aiostack.core.udp import UdpLayer
from aiostack.settings import Settings
from aiostack.wire import arp, icmpv4, ipv4, udp
from aiostack.wire.icmpv4 import IcmpHeader, IcmpType
from aiostack.wire.ipv4 import IpProto, Ipv4Header, addr

US = addr("198.18.0.2")
PEER = addr("198.18.0.1")
NEIGHBOR = addr("198.18.0.3")
SUBNET_BROADCAST = addr("198.18.0.255")
LIMITED_BROADCAST = ipv4.LIMITED_BROADCAST
#: Off-link: reached through the default gateway (PEER).
FAR = addr("203.0.113.7")
US_MAC = bytes.fromhex("02aa00000002")
PEER_MAC = bytes.fromhex("02bb00000001")
NEIGHBOR_MAC = bytes.fromhex("02cc00000003")
#: Link headroom the IP layer leaves in front of every header (Ethernet).
HEADROOM = 14
MTU = 1500


# -- raw packets --------------------------------------------------------------


def ip_packet(
    payload: bytes,
    *,
    src: int = PEER,
    dst: int = US,
    proto: int = IpProto.UDP,
    ttl: int = 64,
    tos: int = 0,
    ident: int = 0,
    frag: int = 0,
    options: bytes = b"",
) -> bytearray:
    """An IPv4 packet (header with a valid checksum, then ``payload``)."""
    hlen = ipv4.MIN_HEADER_LEN + len(options)
    buf = bytearray(hlen + len(payload))
    buf[hlen:] = payload
    ipv4.emit_into(
        buf,
        0,
        src=src,
        dst=dst,
        proto=proto,
        payload_len=len(payload),
        ttl=ttl,
        tos=tos,
        ident=ident,
        frag=frag,
        options=options,
    )
    return buf


def udp_segment(
    payload: bytes,
    *,
    src: int = PEER,
    dst: int = US,
    sport: int = 5000,
    dport: int = 7000,
    checksum: bool = True,
) -> bytes:
    """A UDP header and payload, checksummed for ``src`` -> ``dst`` unless told not to."""
    buf = bytearray(udp.HEADER_LEN + len(payload))
    buf[udp.HEADER_LEN :] = payload
    udp.emit_into(
        buf,
        0,
        src_port=sport,
        dst_port=dport,
        payload_len=len(payload),
        src=src,
        dst=dst,
        checksum=checksum,
    )
    return bytes(buf)


def udp_packet(
    payload: bytes,
    *,
    src: int = PEER,
    dst: int = US,
    sport: int = 5000,
    dport: int = 7000,
    checksum: bool = True,
    ttl: int = 64,
    ident: int = 0,
) -> bytearray:
    segment = udp_segment(payload, src=src, dst=dst, sport=sport, dport=dport, checksum=checksum)
    return ip_packet(segment, src=src, dst=dst, proto=IpProto.UDP, ttl=ttl, ident=ident)


def icmp_message(icmp_type: int, code: int = 0, rest: int = 0, body: bytes = b"") -> bytes:
    """An ICMP message with a valid checksum."""
    buf = bytearray(icmpv4.HEADER_LEN + len(body))
    buf[icmpv4.HEADER_LEN :] = body
    icmpv4.emit_into(buf, 0, type=icmp_type, code=code, rest=rest, body_len=len(body))
    return bytes(buf)


def echo_request(ident: int, sequence: int, data: bytes) -> bytes:
    return icmp_message(IcmpType.ECHO_REQUEST, 0, icmpv4.echo_rest(ident, sequence), data)


def icmp_packet(message: bytes, *, src: int = PEER, dst: int = US, ttl: int = 64) -> bytearray:
    return ip_packet(message, src=src, dst=dst, proto=IpProto.ICMP, ttl=ttl)


def icmp_error_about(
    original: bytes | bytearray, icmp_type: int, code: int, rest: int = 0
) -> bytes:
    """An ICMP error message quoting ``original``'s header and 8 payload bytes, like a router."""
    hlen = (original[0] & 0xF) << 2
    return icmp_message(icmp_type, code, rest, bytes(original[: hlen + 8]))


def fragments(packet: bytes | bytearray, chunk: int) -> list[bytearray]:
    """Split an unfragmented IPv4 packet into fragments carrying ``chunk`` bytes each."""
    assert chunk % 8 == 0
    header, payload = ipv4.parse(packet)
    data = bytes(payload)
    pieces = []
    for offset in range(0, len(data), chunk):
        more = ipv4.FLAG_MF if offset + chunk < len(data) else 0
        pieces.append(
            ip_packet(
                data[offset : offset + chunk],
                src=header.src,
                dst=header.dst,
                proto=header.proto,
                ttl=header.ttl,
                tos=header.tos,
                ident=header.ident,
                frag=more | (offset >> 3),
                options=header.options,
            )
        )
    return pieces


def fragment_at(
    data: bytes,
    offset: int,
    *,
    more: bool,
    ident: int = 0x1234,
    src: int = PEER,
    dst: int = US,
    proto: int = IpProto.UDP,
) -> bytearray:
    """One fragment carrying ``data`` at byte ``offset`` (a multiple of 8)."""
    assert offset % 8 == 0
    frag = (ipv4.FLAG_MF if more else 0) | (offset >> 3)
    return ip_packet(data, src=src, dst=dst, proto=proto, ident=ident, frag=frag)


def arp_bytes(
    op: int, sender_mac: bytes, sender_ip: int, target_mac: bytes, target_ip: int
) -> bytes:
    """An ARP packet as it appears on the wire (after the Ethernet header)."""
    buf = bytearray(arp.PACKET_LEN)
    arp.emit_into(buf, 0, arp.ArpPacket(op, sender_mac, sender_ip, target_mac, target_ip))
    return bytes(buf)


# -- a host's pure core -------------------------------------------------------


@dataclass
class Host:
    """One stack's pure core: routes, IP (and optionally UDP), with shared counters."""

    settings: Settings
    counters: Counters
    routes: RoutingTable
    ip: Ipv4Layer
    udp: UdpLayer
    address: int
    mtu: int = MTU
    log: list[Sent] = field(default_factory=list)

    def receive(
        self, now: float, packet: bytes | bytearray, *, link_broadcast: bool = False
    ) -> object:
        return self.ip.receive(now, memoryview(packet), link_broadcast=link_broadcast)

    def sent(self) -> list[Sent]:
        """Parse (and drain) everything the IP layer put in its outbox."""
        out = []
        for next_hop, frame in self.ip.outbox:
            packet = bytes(frame[HEADROOM:])
            header, payload = ipv4.parse(packet)
            out.append(Sent(next_hop, header, bytes(payload), packet))
        self.ip.outbox.clear()
        self.log.extend(out)
        return out


@dataclass
class Sent:
    next_hop: int
    header: Ipv4Header
    payload: bytes
    packet: bytes

    def icmp(self) -> tuple[IcmpHeader, bytes]:
        """The ICMP message inside, checksum verified."""
        assert self.header.proto == IpProto.ICMP
        header, body = icmpv4.parse(self.payload)
        return header, bytes(body)


def make_host(
    address: int = US,
    *,
    prefix_len: int = 24,
    gateway: int | None = PEER,
    settings: Settings | None = None,
    mtu: int = MTU,
    seed: int = 1,
) -> Host:
    """A host on 198.18.0.0/24 (by default) with a default route via the peer."""
    settings = settings if settings is not None else Settings()
    counters = Counters()
    routes = RoutingTable()
    routes.add_address(Interface(address, prefix_len))
    if gateway is not None:
        routes.set_default_gateway(gateway)
    rng = random.Random(seed)
    ip = Ipv4Layer(settings, counters, routes, mtu=mtu, headroom=HEADROOM, rng=rng)
    udp_layer = UdpLayer(settings, counters, ip, random.Random(seed + 1))
    return Host(settings, counters, routes, ip, udp_layer, address, mtu)


def make_ip_only(
    address: int = US, *, settings: Settings | None = None, mtu: int = MTU, seed: int = 1
) -> Host:
    """A host whose IP layer knows only ICMP (no UDP registered)."""
    host = make_host(address, settings=settings, mtu=mtu, seed=seed)
    host.ip.protocols.discard(IpProto.UDP)
    return host


def as_datagram(result: object) -> Datagram:
    assert isinstance(result, Datagram), f"expected a Datagram, got {result!r}"
    return result
