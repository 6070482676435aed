"""Routing table: interfaces, longest-prefix match, source selection, address classes."""

from __future__ import annotations

import pytest

from aiostack.core.route import Interface, Route, RoutingTable
from aiostack.wire.ipv4 import LIMITED_BROADCAST, addr


def table(*ifaces: str, gateway: str | None = None) -> RoutingTable:
    routes = RoutingTable()
    for text in ifaces:
        routes.add_address(Interface.parse(text))
    if gateway is not None:
        routes.set_default_gateway(addr(gateway))
    return routes


def hop(routes: RoutingTable, dst: str) -> str | None:
    route = routes.lookup(addr(dst))
    if route is None:
        return None
    return str(route)


# -- Interface ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "netmask", "network", "broadcast"),
    [
        ("198.18.0.2/24", "255.255.255.0", "198.18.0.0", "198.18.0.255"),
        ("10.1.2.3/8", "255.0.0.0", "10.0.0.0", "10.255.255.255"),
        ("172.16.5.9/20", "255.255.240.0", "172.16.0.0", "172.16.15.255"),
        ("192.0.2.1/30", "255.255.255.252", "192.0.2.0", "192.0.2.3"),
        # RFC 3021: a /31 has no directed broadcast, nor has a /32.
        ("192.0.2.1/31", "255.255.255.254", "192.0.2.0", "255.255.255.255"),
        ("192.0.2.1/32", "255.255.255.255", "192.0.2.1", "255.255.255.255"),
        ("192.0.2.1/0", "0.0.0.0", "0.0.0.0", "255.255.255.255"),
    ],
)
def test_interface_masks(text: str, netmask: str, network: str, broadcast: str) -> None:
    iface = Interface.parse(text)
    assert iface.netmask == addr(netmask)
    assert iface.network == addr(network)
    assert iface.broadcast == addr(broadcast)
    assert str(iface) == text


@pytest.mark.parametrize(
    "text", ["198.18.0.2", "198.18.0.2/", "198.18.0.2/33", "198.18.0.2/-1", "198.18.0/24", "x/24"]
)
def test_interface_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        Interface.parse(text)


# -- configuration ------------------------------------------------------------


def test_address_adds_connected_route_with_itself_as_source() -> None:
    routes = table("198.18.0.2/24")
    assert [str(r) for r in routes.routes] == ["198.18.0.0/24 scope link src 198.18.0.2"]
    route = routes.lookup(addr("198.18.0.77"))
    assert route is not None
    assert route.gateway is None
    assert route.next_hop(addr("198.18.0.77")) == addr("198.18.0.77")
    assert routes.local_addresses == frozenset({addr("198.18.0.2")})


def test_host_address_adds_no_connected_route() -> None:
    routes = table("192.0.2.9/32")
    assert routes.routes == []
    assert routes.is_local(addr("192.0.2.9"))
    assert routes.lookup(addr("192.0.2.10")) is None


def test_duplicate_address_rejected() -> None:
    routes = table("198.18.0.2/24")
    with pytest.raises(ValueError, match="already configured"):
        routes.add_address(Interface.parse("198.18.0.2/16"))
    assert len(routes.interfaces) == 1


def test_secondary_address_keeps_primary_source() -> None:
    # Linux adds a prefix route for the first (primary) address of a subnet
    # only; a second address in the same subnet does not change the source.
    routes = table("198.18.0.2/24", "198.18.0.9/24")
    assert routes.is_local(addr("198.18.0.9"))
    route = routes.lookup(addr("198.18.0.1"))
    assert route is not None
    assert route.source == addr("198.18.0.2")
    assert len(routes.routes) == 1


def test_source_follows_the_subnet() -> None:
    routes = table("198.18.0.2/24", "198.18.1.2/24", gateway="198.18.0.1")
    for dst, source in [
        ("198.18.0.50", "198.18.0.2"),
        ("198.18.1.50", "198.18.1.2"),
        ("8.8.8.8", "198.18.0.2"),
    ]:
        route = routes.lookup(addr(dst))
        assert route is not None
        assert route.source == addr(source), dst


# -- longest-prefix match -----------------------------------------------------


def test_longest_prefix_wins_in_any_insertion_order() -> None:
    for order in ([8, 16, 32], [32, 16, 8], [16, 32, 8]):
        routes = table("198.18.0.2/24", gateway="198.18.0.1")
        gateways = {8: "198.18.0.8", 16: "198.18.0.16", 32: "198.18.0.32"}
        for plen in order:
            routes.add_route(addr("10.20.30.40"), plen, addr(gateways[plen]))
        assert hop(routes, "10.20.30.40") == "10.20.30.40/32 via 198.18.0.32 src 198.18.0.2"
        assert hop(routes, "10.20.99.1") == "10.20.0.0/16 via 198.18.0.16 src 198.18.0.2"
        assert hop(routes, "10.99.0.1") == "10.0.0.0/8 via 198.18.0.8 src 198.18.0.2"
        assert hop(routes, "11.0.0.1") == "0.0.0.0/0 via 198.18.0.1 src 198.18.0.2"
        assert hop(routes, "198.18.0.200") == "198.18.0.0/24 scope link src 198.18.0.2"


def test_default_route_matches_every_address() -> None:
    routes = table("198.18.0.2/24", gateway="198.18.0.1")
    for dst in ("0.0.0.0", "1.2.3.4", "255.255.255.254", "127.0.0.1", "198.18.1.0"):
        route = routes.lookup(addr(dst))
        assert route is not None and route.prefix_len == 0, dst
        assert route.next_hop(addr(dst)) == addr("198.18.0.1")


def test_no_route_without_default() -> None:
    routes = table("198.18.0.2/24")
    assert routes.lookup(addr("8.8.8.8")) is None
    assert routes.lookup(addr("198.18.1.1")) is None


def test_static_route_masks_host_bits_and_replaces_same_prefix() -> None:
    routes = table("198.18.0.2/24")
    first = routes.add_route(addr("10.1.2.3"), 16, addr("198.18.0.5"))
    assert first.network == addr("10.1.0.0")
    second = routes.add_route(addr("10.1.0.0"), 16, addr("198.18.0.6"))
    assert [r for r in routes.routes if r.prefix_len == 16] == [second]
    assert routes.lookup(addr("10.1.200.1")) == second


def test_gateway_must_be_on_a_connected_network() -> None:
    routes = table("198.18.0.2/24", gateway="198.18.0.1")
    with pytest.raises(ValueError, match="not on a connected network"):
        routes.add_route(addr("10.0.0.0"), 8, addr("192.0.2.1"))
    # Reachable only through another gateway is not good enough either.
    with pytest.raises(ValueError, match="not on a connected network"):
        routes.add_route(addr("10.0.0.0"), 8, addr("8.8.8.8"))
    with pytest.raises(ValueError, match="prefix_len"):
        routes.add_route(addr("10.0.0.0"), 33, addr("198.18.0.1"))


def test_on_link_route_takes_source_of_first_address() -> None:
    routes = table("198.18.0.2/24")
    route = routes.add_route(addr("192.0.2.0"), 24, None)
    assert route.gateway is None and route.source == addr("198.18.0.2")
    assert route.next_hop(addr("192.0.2.9")) == addr("192.0.2.9")
    with pytest.raises(ValueError, match="no address"):
        RoutingTable().add_route(addr("192.0.2.0"), 24, None)


def test_set_default_gateway_replaces_previous() -> None:
    routes = table("198.18.0.2/24", gateway="198.18.0.1")
    routes.set_default_gateway(addr("198.18.0.254"))
    defaults = [r for r in routes.routes if r.prefix_len == 0]
    assert len(defaults) == 1 and defaults[0].gateway == addr("198.18.0.254")


def test_failed_set_default_gateway_keeps_the_old_one() -> None:
    routes = table("198.18.0.2/24", gateway="198.18.0.1")
    with pytest.raises(ValueError):
        routes.set_default_gateway(addr("192.0.2.1"))
    route = routes.lookup(addr("8.8.8.8"))
    assert route is not None and route.gateway == addr("198.18.0.1")


def test_route_str() -> None:
    assert str(Route(addr("10.0.0.0"), 8, addr("192.0.2.1"), addr("192.0.2.2"))) == (
        "10.0.0.0/8 via 192.0.2.1 src 192.0.2.2"
    )


# -- address classes ----------------------------------------------------------


def test_local_and_broadcast() -> None:
    routes = table("198.18.0.2/24", "192.0.2.1/31")
    assert routes.is_local(addr("198.18.0.2")) and routes.is_local(addr("192.0.2.1"))
    assert not routes.is_local(addr("198.18.0.1"))
    assert routes.is_broadcast(LIMITED_BROADCAST)
    assert routes.is_broadcast(addr("198.18.0.255"))
    # Neither the network address (modern Linux) nor anything for the /31.
    assert not routes.is_broadcast(addr("198.18.0.0"))
    assert not routes.is_broadcast(addr("192.0.2.0"))
    assert not routes.is_broadcast(addr("192.0.2.1"))
    assert not routes.is_broadcast(addr("198.18.0.2"))


def test_empty_table_knows_limited_broadcast() -> None:
    routes = RoutingTable()
    assert routes.is_broadcast(LIMITED_BROADCAST)
    assert routes.local_addresses == frozenset()
    assert routes.lookup(addr("1.1.1.1")) is None


@pytest.mark.parametrize(
    ("source", "martian"),
    [
        ("224.0.0.1", True),  # multicast
        ("239.255.255.250", True),
        ("255.255.255.255", True),  # limited broadcast
        ("198.18.0.255", True),  # our subnet's broadcast
        ("127.0.0.1", True),  # loopback
        ("127.255.0.9", True),
        ("0.0.0.0", True),  # "this network" (RFC 1812 5.3.7, Linux zeronet)
        ("0.1.2.3", True),
        ("198.18.0.2", True),  # our own address arriving from outside is spoofed
        ("198.18.0.1", False),
        ("8.8.8.8", False),
        ("198.18.0.0", False),
    ],
)
def test_martian_sources(source: str, martian: bool) -> None:
    routes = table("198.18.0.2/24")
    assert routes.is_martian_source(addr(source)) is martian
