"""UDP: bind rules and errno order, ephemeral ports, demux scoring, delivery, errors, send."""

from __future__ import annotations

import errno

import pytest

from aiostack.core.icmp import TransportError
from aiostack.core.route import Interface
from aiostack.core.udp import DATAGRAM_OVERHEAD, MAX_PAYLOAD, UdpEndpoint
from aiostack.wire import udp
from aiostack.wire.icmpv4 import IcmpType, UnreachCode
from aiostack.wire.ipv4 import ANY, addr

from .builders import (
    FAR,
    LIMITED_BROADCAST,
    NEIGHBOR,
    PEER,
    SUBNET_BROADCAST,
    US,
    Host,
    as_datagram,
    icmp_error_about,
    icmp_packet,
    make_host,
    udp_packet,
)

BCAST_IDS = ["subnet", "limited"]
T0 = 2000.0
SECOND = addr("198.18.1.2")  # a second local address, on 198.18.1.0/24
ROUTER = addr("203.0.113.1")


def host_with_two_addresses() -> Host:
    host = make_host()
    host.routes.add_address(Interface(SECOND, 24))
    return host


def bound(
    host: Host,
    address: int = ANY,
    port: int = 7000,
    *,
    reuseaddr: bool = False,
    reuseport: bool = False,
    recverr: bool = False,
) -> UdpEndpoint:
    ep = UdpEndpoint(reuseaddr=reuseaddr, reuseport=reuseport, recverr=recverr)
    assert host.udp.bind(ep, address, port, privileged=False) == 0
    return ep


def deliver(
    host: Host, packet: bytes | bytearray, *, link_broadcast: bool = False
) -> list[UdpEndpoint]:
    dgram = as_datagram(host.receive(T0, packet, link_broadcast=link_broadcast))
    return host.udp.receive(T0, dgram)


# -- bind: errno order ----------------------------------------------------------


def test_bind_errno_order() -> None:
    host = make_host()
    u = host.udp
    ep = UdpEndpoint()
    # Not a local address beats everything else, even a privileged port.
    assert u.bind(ep, FAR, 80, privileged=False) == errno.EADDRNOTAVAIL
    assert u.bind(ep, US, 80, privileged=False) == errno.EACCES
    assert u.bind(ep, US, 1023, privileged=False) == errno.EACCES
    assert u.bind(ep, US, 80, privileged=True) == 0
    assert (ep.bound_addr, ep.source_addr, ep.port) == (US, US, 80)
    # Already bound: EACCES still comes first, then EINVAL before EADDRINUSE.
    assert u.bind(ep, US, 81, privileged=False) == errno.EACCES
    other = bound(host, US, 5000)
    assert u.bind(ep, US, other.port, privileged=True) == errno.EINVAL
    assert u.bind(UdpEndpoint(), US, 5000, privileged=False) == errno.EADDRINUSE


def test_port_zero_and_1024_need_no_privilege() -> None:
    host = make_host()
    assert host.udp.bind(UdpEndpoint(), US, 1024, privileged=False) == 0
    assert host.udp.bind(UdpEndpoint(), US, 0, privileged=False) == 0


def test_unprivileged_port_start_setting() -> None:
    host = make_host()
    host.settings.set("net.ipv4.ip_unprivileged_port_start", 0)
    assert host.udp.bind(UdpEndpoint(), US, 53, privileged=False) == 0


def test_nonlocal_bind_setting() -> None:
    host = make_host()
    host.settings.set("ip_nonlocal_bind", 1)
    ep = UdpEndpoint()
    assert host.udp.bind(ep, FAR, 7000, privileged=False) == 0
    assert ep.bound_addr == FAR


@pytest.mark.parametrize("address", [SUBNET_BROADCAST, LIMITED_BROADCAST, addr("239.1.2.3")])
def test_bind_to_broadcast_or_multicast_sends_from_the_device(address: int) -> None:
    host = make_host()
    ep = UdpEndpoint()
    assert host.udp.bind(ep, address, 6000, privileged=False) == 0
    assert ep.bound_addr == address and ep.source_addr == ANY


# -- bind: conflicts -----------------------------------------------------------


def test_overlapping_addresses_conflict() -> None:
    host = host_with_two_addresses()
    u = host.udp
    bound(host, US, 7000)
    assert u.bind(UdpEndpoint(), ANY, 7000, privileged=False) == errno.EADDRINUSE
    assert u.bind(UdpEndpoint(), US, 7000, privileged=False) == errno.EADDRINUSE
    assert u.bind(UdpEndpoint(), SECOND, 7000, privileged=False) == 0
    bound(host, ANY, 7001)
    assert u.bind(UdpEndpoint(), US, 7001, privileged=False) == errno.EADDRINUSE


def test_reuseaddr_needs_both() -> None:
    host = make_host()
    u = host.udp
    bound(host, ANY, 7000, reuseaddr=True)
    assert u.bind(UdpEndpoint(), US, 7000, privileged=False) == errno.EADDRINUSE
    assert u.bind(UdpEndpoint(reuseaddr=True), US, 7000, privileged=False) == 0
    assert u.bind(UdpEndpoint(reuseaddr=True), ANY, 7000, privileged=False) == 0
    assert len(u.ports[7000]) == 3


def test_reuseport_needs_both() -> None:
    host = make_host()
    u = host.udp
    bound(host, ANY, 7000, reuseport=True)
    assert u.bind(UdpEndpoint(reuseaddr=True), ANY, 7000, privileged=False) == errno.EADDRINUSE
    assert u.bind(UdpEndpoint(), ANY, 7000, privileged=False) == errno.EADDRINUSE
    for _ in range(3):
        assert u.bind(UdpEndpoint(reuseport=True), ANY, 7000, privileged=False) == 0
    assert len(u.ports[7000]) == 4


def test_unbind_frees_the_port() -> None:
    host = make_host()
    ep = bound(host, US, 7000)
    host.udp.unbind(ep)
    assert ep.port == 0 and 7000 not in host.udp.ports
    assert host.udp.bind(UdpEndpoint(), US, 7000, privileged=False) == 0
    host.udp.unbind(UdpEndpoint())  # unbinding an unbound endpoint is harmless


# -- ephemeral ports ----------------------------------------------------------


def test_ephemeral_ports_in_range_distinct_and_random() -> None:
    host = make_host()
    low, high = host.settings.ip_local_port_range
    ports = [bound(host, ANY, 0).port for _ in range(200)]
    assert all(low <= p <= high for p in ports)
    assert len(set(ports)) == 200
    # RFC 6056: not a sequence; a different seed gives different ports.
    assert sorted(ports) != ports
    other = make_host(seed=99)
    assert [bound(other, ANY, 0).port for _ in range(5)] != ports[:5]
    # ... and the same seed gives the same ones (deterministic tests).
    again = make_host()
    assert [bound(again, ANY, 0).port for _ in range(5)] == ports[:5]


def test_ephemeral_port_range_setting_and_exhaustion() -> None:
    host = make_host()
    host.settings.set("net.ipv4.ip_local_port_range", "40000 40002")
    eps = [bound(host, ANY, 0) for _ in range(3)]
    assert sorted(ep.port for ep in eps) == [40000, 40001, 40002]
    assert host.udp.bind(UdpEndpoint(), ANY, 0, privileged=False) == errno.EADDRINUSE
    host.udp.unbind(eps[1])
    assert bound(host, ANY, 0).port == 40001


def test_ephemeral_skips_ports_in_use_for_that_address() -> None:
    host = host_with_two_addresses()
    host.settings.set("ip_local_port_range", (40000, 40001))
    bound(host, US, 40000)
    ep = UdpEndpoint()
    assert host.udp.bind(ep, US, 0, privileged=False) == 0 and ep.port == 40001
    # On another address the same ports are free again.
    assert sorted([bound(host, SECOND, 0).port, bound(host, SECOND, 0).port]) == [40000, 40001]


def test_autobind_once_and_eagain_when_exhausted() -> None:
    host = make_host()
    host.settings.set("ip_local_port_range", (40000, 40000))
    ep = UdpEndpoint()
    assert host.udp.autobind(ep) == 0 and ep.port == 40000
    assert host.udp.autobind(ep) == 0 and ep.port == 40000
    # Linux inet_autobind: -EAGAIN when get_port fails.
    assert host.udp.autobind(UdpEndpoint()) == errno.EAGAIN
    assert host.udp.send(T0, UdpEndpoint(), b"x", PEER, 9) == errno.EAGAIN
    assert host.udp.connect(UdpEndpoint(), PEER, 9) == errno.EAGAIN


# -- demultiplexing -----------------------------------------------------------


def test_connected_beats_wildcard() -> None:
    host = make_host()
    wild = bound(host, ANY, 7000, reuseaddr=True)
    conn = bound(host, ANY, 7000, reuseaddr=True)
    assert host.udp.connect(conn, PEER, 5000) == 0
    assert deliver(host, udp_packet(b"a", sport=5000)) == [conn]
    assert deliver(host, udp_packet(b"b", sport=5001)) == [wild]
    assert deliver(host, udp_packet(b"c", src=FAR, sport=5000)) == [wild]
    assert [d for d, _ in conn.queue] == [b"a"]
    assert [d for d, _ in wild.queue] == [b"b", b"c"]
    assert wild.queue[1][1] == (FAR, 5000)


def test_specific_address_beats_wildcard_and_filters() -> None:
    host = host_with_two_addresses()
    wild = bound(host, ANY, 7000, reuseaddr=True)
    mine = bound(host, US, 7000, reuseaddr=True)
    assert deliver(host, udp_packet(b"a")) == [mine]
    assert deliver(host, udp_packet(b"b", dst=SECOND)) == [wild]
    host.udp.unbind(wild)
    assert host.udp.lookup(PEER, 5000, SECOND, 7000) is None
    assert host.udp.lookup(PEER, 5000, US, 7000) is mine


def test_connected_endpoint_ignores_other_peers() -> None:
    host = make_host()
    conn = bound(host, ANY, 7000)
    host.udp.connect(conn, PEER, 5000)
    assert host.udp.lookup(PEER, 5001, US, 7000) is None
    assert host.udp.lookup(FAR, 5000, US, 7000) is None
    assert host.udp.lookup(PEER, 5000, US, 7000) is conn


def test_reuseport_spreads_flows_deterministically() -> None:
    host = make_host()
    group = [bound(host, ANY, 7000, reuseport=True) for _ in range(4)]
    chosen = {sport: host.udp.lookup(PEER, sport, US, 7000) for sport in range(1000, 1064)}
    assert all(ep in group for ep in chosen.values())
    assert len({id(ep) for ep in chosen.values()}) >= 3
    for sport, ep in chosen.items():
        assert host.udp.lookup(PEER, sport, US, 7000) is ep
    # Delivery follows the lookup.
    assert deliver(host, udp_packet(b"x", sport=1000)) == [chosen[1000]]


def test_reuseport_group_loses_to_better_match() -> None:
    host = make_host()
    for _ in range(3):
        bound(host, ANY, 7000, reuseport=True)
    best = bound(host, US, 7000, reuseport=True)
    for sport in range(1000, 1020):
        assert host.udp.lookup(PEER, sport, US, 7000) is best


def test_broadcast_reaches_every_match() -> None:
    host = make_host()
    a = bound(host, ANY, 7000, reuseaddr=True)
    b = bound(host, ANY, 7000, reuseaddr=True)
    bcast = bound(host, SUBNET_BROADCAST, 7000, reuseaddr=True)
    unicast_only = bound(host, US, 7000, reuseaddr=True)
    other_peer = bound(host, ANY, 7000, reuseaddr=True)
    host.udp.connect(other_peer, NEIGHBOR, 5000)
    got = deliver(host, udp_packet(b"hello all", dst=SUBNET_BROADCAST), link_broadcast=True)
    assert got == [a, b, bcast]
    assert not unicast_only.queue and not other_peer.queue
    assert host.counters.UdpInDatagrams == 3


# -- receive: checks and counters ----------------------------------------------


def test_zero_checksum_is_accepted() -> None:
    host = make_host()
    ep = bound(host)
    packet = udp_packet(b"nocsum", checksum=False)
    assert packet[26:28] == b"\0\0"
    assert deliver(host, packet) == [ep]
    assert host.counters.UdpInDatagrams == 1


def test_bad_checksum_is_counted_and_dropped_without_icmp() -> None:
    host = make_host()
    ep = bound(host)
    packet = udp_packet(b"payload")
    packet[-1] ^= 0x55
    assert deliver(host, packet) == []
    c = host.counters
    assert (c.UdpInCsumErrors, c.UdpInErrors, c.UdpInDatagrams, c.UdpNoPorts) == (1, 1, 0, 0)
    assert c.drops == {"udp.bad_checksum": 1}
    assert not ep.queue and host.sent() == []


def test_offloaded_checksum_is_trusted() -> None:
    host = make_host()
    ep = bound(host)
    packet = udp_packet(b"payload")
    packet[-1] ^= 0x55
    dgram = as_datagram(host.receive(T0, packet))
    dgram.csum_ok = True
    assert host.udp.receive(T0, dgram) == [ep]


def test_bad_length_is_an_input_error() -> None:
    host = make_host()
    bound(host)
    packet = udp_packet(b"payload")
    packet[24:26] = (100).to_bytes(2, "big")  # UDP length beyond the datagram
    assert deliver(host, packet) == []
    assert host.counters.UdpInErrors == 1
    assert host.counters.drops == {"udp.bad_length": 1}


def test_no_port_counts_and_sends_port_unreachable() -> None:
    host = make_host()
    packet = udp_packet(b"anyone?", sport=5353, dport=9999)
    assert deliver(host, packet) == []
    c = host.counters
    assert c.UdpNoPorts == 1 and c.drops == {"udp.no_port": 1}
    (out,) = host.sent()
    assert (out.header.src, out.header.dst, out.next_hop) == (US, PEER, PEER)
    header, body = out.icmp()
    assert (header.type, header.code) == (IcmpType.DEST_UNREACH, UnreachCode.PORT)
    assert body == bytes(packet)
    assert c.IcmpOutDestUnreachs == 1


def test_no_port_for_broadcast_is_silent() -> None:
    host = make_host()
    for dst in (SUBNET_BROADCAST, LIMITED_BROADCAST):
        assert deliver(host, udp_packet(b"x", dst=dst), link_broadcast=True) == []
    assert host.sent() == []
    # Accounted as UdpNoPorts (Linux has a separate UdpIgnoredMulti for these,
    # which aiostack's MIB does not model).
    assert host.counters.UdpNoPorts == 2


def test_unicast_in_link_broadcast_frame_gets_no_port_unreachable() -> None:
    # Linux: a unicast IP destination takes the unicast path (UdpNoPorts), but
    # icmp_send() refuses to answer a frame that was not addressed to us.
    host = make_host()
    assert deliver(host, udp_packet(b"x"), link_broadcast=True) == []
    assert host.sent() == []
    assert host.counters.UdpNoPorts == 1


def test_unicast_in_link_broadcast_frame_goes_to_one_endpoint() -> None:
    host = make_host()
    group = [bound(host, ANY, 7000, reuseport=True) for _ in range(3)]
    got = deliver(host, udp_packet(b"x"), link_broadcast=True)
    assert len(got) == 1 and got[0] in group


def test_rcvbuf_overflow_drops_and_counts() -> None:
    host = make_host()
    ep = bound(host)
    ep.rcvbuf = 2 * (100 + DATAGRAM_OVERHEAD) - 1
    for i in range(4):
        deliver(host, udp_packet(bytes([i]) * 100))
    # Dropped only while the queue already holds more than rcvbuf.
    assert [d[0] for d, _ in ep.queue] == [0, 1]
    assert ep.rmem == 2 * (100 + DATAGRAM_OVERHEAD)
    c = host.counters
    assert (c.UdpRcvbufErrors, c.UdpInErrors, c.UdpInDatagrams) == (2, 2, 2)
    item = ep.pop()
    assert item is not None and item[0] == bytes([0]) * 100 and item[1] == (PEER, 5000)
    assert ep.rmem == 100 + DATAGRAM_OVERHEAD
    assert deliver(host, udp_packet(b"z" * 100)) == [ep]
    assert ep.pop() is not None and ep.pop() is not None and ep.pop() is None
    assert ep.rmem == 0


def test_broadcast_overflow_of_one_endpoint_spares_the_others() -> None:
    host = make_host()
    full = bound(host, ANY, 7000, reuseaddr=True)
    fine = bound(host, ANY, 7000, reuseaddr=True)
    full.rcvbuf = 0
    deliver(host, udp_packet(b"1", dst=SUBNET_BROADCAST))
    assert deliver(host, udp_packet(b"2", dst=SUBNET_BROADCAST)) == [fine]
    assert len(full.queue) == 1 and len(fine.queue) == 2
    assert host.counters.UdpRcvbufErrors == 1


# -- errors -------------------------------------------------------------------


def icmp_about_our_datagram(
    host: Host, ep: UdpEndpoint, icmp_type: int, code: int, rest: int = 0
) -> TransportError:
    ours = udp_packet(b"query", src=US, dst=FAR, sport=ep.port, dport=53)
    result = host.receive(
        T0, icmp_packet(icmp_error_about(ours, icmp_type, code, rest), src=ROUTER)
    )
    assert isinstance(result, TransportError)
    return result


def test_port_unreachable_reaches_connected_endpoint_only() -> None:
    host = make_host()
    conn = UdpEndpoint()
    assert host.udp.connect(conn, FAR, 53) == 0
    err = icmp_about_our_datagram(host, conn, IcmpType.DEST_UNREACH, UnreachCode.PORT)
    assert host.udp.error(err) is conn
    assert conn.error == errno.ECONNREFUSED
    assert conn.take_error() == errno.ECONNREFUSED and conn.take_error() == 0

    loose = bound(host, ANY, 0)
    err = icmp_about_our_datagram(host, loose, IcmpType.DEST_UNREACH, UnreachCode.PORT)
    assert host.udp.error(err) is None
    assert loose.error == 0


def test_soft_errors_need_recverr() -> None:
    host = make_host()
    conn = UdpEndpoint()
    host.udp.connect(conn, FAR, 53)
    err = icmp_about_our_datagram(host, conn, IcmpType.DEST_UNREACH, UnreachCode.NET)
    assert host.udp.error(err) is None and conn.error == 0
    err = icmp_about_our_datagram(host, conn, IcmpType.TIME_EXCEEDED, 0)
    assert host.udp.error(err) is None and conn.error == 0


@pytest.mark.parametrize(
    ("icmp_type", "code", "expected"),
    [
        (IcmpType.DEST_UNREACH, UnreachCode.PORT, errno.ECONNREFUSED),
        (IcmpType.DEST_UNREACH, UnreachCode.NET, errno.ENETUNREACH),
        (IcmpType.DEST_UNREACH, UnreachCode.HOST, errno.EHOSTUNREACH),
        (IcmpType.TIME_EXCEEDED, 0, errno.EHOSTUNREACH),
    ],
)
def test_recverr_reports_any_error(icmp_type: int, code: int, expected: int) -> None:
    host = make_host()
    ep = bound(host, ANY, 0, recverr=True)
    err = icmp_about_our_datagram(host, ep, icmp_type, code)
    assert host.udp.error(err) is ep
    assert ep.error == expected


def test_frag_needed_is_a_hard_error_for_udp() -> None:
    # Linux __udp4_lib_err: ICMP_FRAG_NEEDED -> EMSGSIZE, harderr=1 (unless
    # IP_PMTUDISC_DONT), so a connected socket sees it.
    host = make_host()
    conn = UdpEndpoint()
    host.udp.connect(conn, FAR, 53)
    err = icmp_about_our_datagram(host, conn, IcmpType.DEST_UNREACH, UnreachCode.FRAG_NEEDED, 1200)
    assert host.udp.error(err) is conn
    assert conn.error == errno.EMSGSIZE
    assert host.ip.route_mtu(T0, FAR) == 1200


def test_error_for_unknown_endpoint_is_ignored() -> None:
    host = make_host()
    ep = bound(host, ANY, 0, recverr=True)
    err = icmp_about_our_datagram(host, ep, IcmpType.DEST_UNREACH, UnreachCode.PORT)
    host.udp.unbind(ep)
    assert host.udp.error(err) is None


# -- send ---------------------------------------------------------------------


def sent_udp(host: Host) -> list[tuple[int, int, int, int, bytes]]:
    """(src, dst, sport, dport, payload) of every UDP datagram sent, checksum verified."""
    out = []
    for s in host.sent():
        header, payload = udp.parse(s.payload, s.header.src, s.header.dst)
        assert header.checksum != 0
        out.append((s.header.src, s.header.dst, header.src_port, header.dst_port, bytes(payload)))
    return out


def test_send_autobinds_and_writes_a_checksummed_datagram() -> None:
    host = make_host()
    ep = UdpEndpoint()
    assert host.udp.send(T0, ep, b"ping", PEER, 9) == 0
    low, high = host.settings.ip_local_port_range
    assert low <= ep.port <= high and ep in host.udp.ports[ep.port]
    assert ep.bound_addr == ANY
    assert sent_udp(host) == [(US, PEER, ep.port, 9, b"ping")]
    assert host.counters.UdpOutDatagrams == 1


def test_send_from_bound_address_ttl_and_tos() -> None:
    host = host_with_two_addresses()
    ep = UdpEndpoint(ttl=7, tos=0x10)
    host.udp.bind(ep, SECOND, 4444, privileged=False)
    host.udp.send(T0, ep, b"x", FAR, 53)
    (s,) = host.sent()
    assert (s.header.src, s.header.ttl, s.header.tos) == (SECOND, 7, 0x10)
    assert s.next_hop == PEER


def test_send_size_limits() -> None:
    host = make_host()
    ep = UdpEndpoint()
    assert host.udp.send(T0, ep, bytes(MAX_PAYLOAD + 1), PEER, 9) == errno.EMSGSIZE
    assert MAX_PAYLOAD == 65507
    assert host.sent() == []
    assert host.udp.send(T0, ep, bytes(MAX_PAYLOAD), PEER, 9) == 0
    sent = host.sent()
    assert len(sent) == 45 and sum(len(s.payload) for s in sent) == MAX_PAYLOAD + 8
    assert host.counters.UdpOutDatagrams == 1


@pytest.mark.parametrize("dst", [SUBNET_BROADCAST, LIMITED_BROADCAST], ids=BCAST_IDS)
def test_broadcast_needs_so_broadcast(dst: int) -> None:
    host = make_host()
    ep = UdpEndpoint()
    assert host.udp.send(T0, ep, b"x", dst, 9) == errno.EACCES
    assert host.sent() == []
    ep.broadcast = True
    assert host.udp.send(T0, ep, b"x", dst, 9) == 0
    (s,) = host.sent()
    assert s.next_hop == LIMITED_BROADCAST and (s.header.src, s.header.dst) == (US, dst)


def test_send_without_route_is_enetunreach() -> None:
    host = make_host(gateway=None)
    assert host.udp.send(T0, UdpEndpoint(), b"x", FAR, 9) == errno.ENETUNREACH
    assert host.counters.IpOutNoRoutes == 1 and host.counters.UdpOutDatagrams == 0
    assert host.sent() == []


# -- connect / disconnect -----------------------------------------------------


def test_connect_fixes_peer_and_source() -> None:
    host = make_host()
    ep = UdpEndpoint()
    assert host.udp.connect(ep, FAR, 53) == 0
    assert ep.connected and (ep.remote_addr, ep.remote_port) == (FAR, 53)
    assert ep.port != 0 and ep.bound_addr == US and ep.source_addr == US


def test_connect_errors() -> None:
    host = make_host(gateway=None)
    assert host.udp.connect(UdpEndpoint(), FAR, 53) == errno.ENETUNREACH
    assert host.udp.connect(UdpEndpoint(), SUBNET_BROADCAST, 53) == errno.EACCES
    ep = UdpEndpoint(broadcast=True)
    assert host.udp.connect(ep, SUBNET_BROADCAST, 53) == 0


def test_connect_keeps_broadcast_bound_address() -> None:
    host = make_host()
    ep = UdpEndpoint()
    host.udp.bind(ep, SUBNET_BROADCAST, 6000, privileged=False)
    host.udp.connect(ep, PEER, 5000)
    assert ep.bound_addr == SUBNET_BROADCAST and ep.source_addr == US


def test_disconnect_undoes_what_connect_chose() -> None:
    # Linux __udp_disconnect: forget the peer; reset the source address and
    # release the port unless bind() set them (SOCK_BINDADDR/BINDPORT_LOCK).
    host = make_host()
    ep = UdpEndpoint()
    host.udp.connect(ep, PEER, 5000)
    port = ep.port
    host.udp.disconnect(ep)
    assert not ep.connected and ep.remote_addr == ANY
    assert ep.bound_addr == ANY and ep.source_addr == ANY
    assert ep.port == 0 and port not in host.udp.ports


def test_disconnect_keeps_what_bind_chose() -> None:
    host = make_host()
    ep = bound(host, US, 7000)
    host.udp.connect(ep, PEER, 5000)
    host.udp.disconnect(ep)
    assert (ep.bound_addr, ep.source_addr, ep.port) == (US, US, 7000)
    assert host.udp.lookup(FAR, 1, US, 7000) is ep

    wild = bound(host, ANY, 7001)
    host.udp.connect(wild, PEER, 5000)
    host.udp.disconnect(wild)
    assert (wild.bound_addr, wild.source_addr, wild.port) == (ANY, ANY, 7001)
    assert host.udp.lookup(FAR, 1, US, 7001) is wild


def test_disconnect_keeps_pending_error() -> None:
    host = make_host()
    ep = UdpEndpoint()
    host.udp.connect(ep, FAR, 53)
    err = icmp_about_our_datagram(host, ep, IcmpType.DEST_UNREACH, UnreachCode.PORT)
    host.udp.error(err)
    host.udp.disconnect(ep)
    assert ep.take_error() == errno.ECONNREFUSED


def test_same_seed_same_wire_bytes() -> None:
    # Two hosts built alike behave alike, port for port and ident for ident.
    one, two = make_host(seed=5), make_host(seed=5)
    for host in (one, two):
        for _ in range(3):
            host.udp.send(T0, UdpEndpoint(), bytes(2000), PEER, 9)
    first, second = one.sent(), two.sent()
    assert len(first) == 6
    assert [s.packet for s in first] == [s.packet for s in second]
