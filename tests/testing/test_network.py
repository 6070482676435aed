"""VirtualNetwork: topology, addressing, impairments, partitions, link state, captures, replay.

Async tests run on both loops (see tests/conftest.py) in real time and only
use paths that answer at once. Anything that has to wait out a timeout (a
lost ping, a failed ARP resolution), and anything whose timestamps must be
reproducible, runs on the virtual-time loop through ``run_virtual`` inside a
synchronous test, where waiting costs no wall time.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from aiostack.link.fault import FaultConfig
from aiostack.link.pcap import read_pcap
from aiostack.socket import AF_INET, SOCK_DGRAM
from aiostack.testing import VirtualNetwork
from aiostack.testing.network import as_fault_config, derive_seed
from aiostack.testing.virtual_time import DEFAULT_EPOCH, run_virtual

T = TypeVar("T")

TIMEOUT = 10.0


def virtual(body: Callable[[], Awaitable[T]]) -> T:
    """Run ``body()`` to completion on a fresh virtual-time loop."""

    async def main() -> T:
        return await body()

    return run_virtual(main())


def switched(*names: str, seed: int) -> VirtualNetwork:
    """Hosts ``names`` on one switch called ``lan``."""
    net = VirtualNetwork(seed=seed)
    net.add_switch("lan")
    for name in names:
        net.connect(name, "lan")
    return net


async def expect_timeout(net: VirtualNetwork, src: str, dst: str, timeout: float = 1.0) -> None:
    with pytest.raises(TimeoutError):
        await net.host(src).ping(dst, timeout=timeout)


# ---------------------------------------------------------------- topology, real time


async def test_three_hosts_on_a_switch_ping_every_pair() -> None:
    async with switched("a", "b", "c", seed=1) as net:
        assert [h.ip for h in net.hosts.values()] == ["198.18.0.1", "198.18.0.2", "198.18.0.3"]
        for src, dst in itertools.permutations("abc", 2):
            await net.host(src).ping(dst, timeout=TIMEOUT)
        macs = {net.host(n).mac: f"lan.{n}" for n in "abc"}
        assert net.switch("lan").fdb() == macs
        for name in "abc":
            assert net.host(name).stack.statistics()["mib"]["IcmpInEchos"] == 2


async def test_point_to_point_links_carry_their_own_pair_only() -> None:
    net = VirtualNetwork(seed=2)
    ab = net.connect("a", "b")
    cd = net.connect("c", "d")
    async with net:
        await net.host("a").ping("b", timeout=TIMEOUT)
        await net.host("d").ping("c", timeout=TIMEOUT)
        assert (ab.kind, ab.endpoints, cd.endpoints) == ("wire", ("a", "b"), ("c", "d"))
        assert net.link("b", "a") is ab and net.link("c") is cd
        # c and d never saw a frame of a's or b's.
        for name in "cd":
            assert net.host(name).stack.statistics()["mib"]["IcmpInEchos"] <= 1


async def test_udp_between_hosts_through_the_stack_api() -> None:
    async with switched("client", "server", seed=3) as net:
        server = net.host("server").stack.socket(AF_INET, SOCK_DGRAM)
        server.bind(("", 7))
        client = net.host("client").stack.socket(AF_INET, SOCK_DGRAM)
        await client.sendto(b"hello", (net.host("server").ip, 7))
        data, peer = await asyncio.wait_for(server.recvfrom(100), TIMEOUT)
        assert data == b"hello" and peer is not None and peer[0] == net.host("client").ip
        await server.sendto(data.upper(), peer)
        reply, _ = await asyncio.wait_for(client.recvfrom(100), TIMEOUT)
        assert reply == b"HELLO"


async def test_hosts_added_to_a_running_network_start_on_the_next_start() -> None:
    async with VirtualNetwork(seed=4) as net:
        assert net.running and not net.hosts
        net.connect("a", "b")
        assert not net.host("a").started
        with pytest.raises(RuntimeError, match="not started"):
            await net.host("a").ping("b")
        await net.start()
        await net.host("a").ping("b", timeout=TIMEOUT)
    assert not net.running
    await net.aclose()  # idempotent


def test_addresses_given_and_assigned_and_topology_errors() -> None:
    net = VirtualNetwork(subnet="10.9.0.0/16")
    assert net.add_host("x", address="10.9.0.1").address == "10.9.0.1/16"
    assert net.add_host("y").ip == "10.9.0.2"  # .1 is taken
    assert net.add_host("z", address="192.0.2.7/28").address == "192.0.2.7/28"
    with pytest.raises(ValueError, match="already used"):
        net.add_host("w", address="10.9.0.2")
    with pytest.raises(ValueError, match="already"):
        net.add_host("x")
    net.add_switch("sw")
    net.connect("x", "y")
    with pytest.raises(ValueError, match="has one interface"):
        net.connect("x", "sw")
    with pytest.raises(ValueError, match="has one interface"):
        net.connect("new", "y")
    assert "new" not in net.hosts  # nothing half-added
    with pytest.raises(ValueError, match="itself"):
        net.connect("z", "z")
    with pytest.raises(ValueError, match="both switches"):
        net.add_switch("sw2")
        net.connect("sw", "sw2")
    with pytest.raises(KeyError, match="no link"):
        net.link("x", "z")


def test_a_host_left_unconnected_is_an_error_at_start() -> None:
    async def body() -> None:
        net = VirtualNetwork()
        net.add_host("lonely")
        with pytest.raises(RuntimeError, match="not connected"):
            async with net:
                pass

    virtual(body)


def test_seeds_are_derived_per_component() -> None:
    a1 = VirtualNetwork(seed=5).add_host("a")
    a2 = VirtualNetwork(seed=5).add_host("a")
    b = VirtualNetwork(seed=6).add_host("a")
    assert (a1.mac, a1.seed) == (a2.mac, a2.seed)
    assert a1.mac != b.mac and a1.seed != b.seed
    assert derive_seed(5, "link", "a--b") != derive_seed(5, "link", "a--c")


# ---------------------------------------------------------------- impairments, virtual time


def test_total_loss_times_out_and_clearing_it_restores_traffic() -> None:
    async def body() -> None:
        net = VirtualNetwork(seed=7)
        link = net.connect("a", "b")
        async with net:
            await net.host("a").ping("b")  # ARP resolved
            link.impair(loss=1.0)
            await expect_timeout(net, "a", "b")
            assert link.stats()["a"].dropped == 1
            link.clear()
            assert not link.config("a").active
            await net.host("a").ping("b")

    virtual(body)


def test_impairment_of_one_direction_only() -> None:
    async def body() -> None:
        net = VirtualNetwork(seed=8)
        link = net.connect("a", "b")
        async with net:
            await net.host("a").ping("b")
            link.impair(direction="b", loss=1.0)  # replies from b are lost
            await expect_timeout(net, "a", "b")
            stats = link.stats()
            assert (stats["a"].dropped, stats["b"].dropped) == (0, 1)
            assert net.host("b").stack.statistics()["mib"]["IcmpInEchos"] == 2

    virtual(body)


def test_delay_gives_exact_virtual_round_trip_times() -> None:
    async def body() -> tuple[float, float, float]:
        net = VirtualNetwork(seed=9, impairment={"delay": 0.05})
        net.add_switch("lan")
        net.connect("a", "lan")
        net.connect("b", "lan")
        async with net:
            first = await net.host("a").ping("b")  # ARP request/reply, then the echo
            second = await net.host("a").ping("b")
            net.link("b", "lan").impair("delay=200ms")
            third = await net.host("a").ping("b")
            return first, second, third

    first, second, third = virtual(body)
    # Every switch link adds its delay in each direction: 2 links x 2 ways.
    assert second == pytest.approx(0.2, abs=1e-9)
    # The first also waits for ARP (how long depends on when b's start-up
    # announcement lands on a's pending entry: not this test's business).
    assert first > second
    assert third == pytest.approx(0.05 * 2 + 0.2 * 2, abs=1e-9)


def test_impair_validates_before_changing_anything() -> None:
    net = VirtualNetwork()
    link = net.connect("a", "b")
    link.impair(loss=0.1, delay=0.01)
    with pytest.raises(ValueError):
        link.impair(loss=0.5, duplicate=2.0)
    with pytest.raises(ValueError, match="unknown impairment"):
        link.impair({"nonsense": 1})
    with pytest.raises(KeyError):
        link.impair(direction="c", loss=0.5)
    assert (link.config("a").loss, link.config("b").delay) == (0.1, 0.01)
    link.impair({"dup": 0.25, "bandwidth": 1e6}, direction="a")
    assert (link.config("a").duplicate, link.config("a").rate) == (0.25, 1e6)
    assert link.config("b").duplicate == 0.0
    net.impair(reorder=0.5)
    assert link.config("a").reorder == link.config("b").reorder == 0.5
    assert as_fault_config("loss=2%,delay=20ms~5ms").jitter == pytest.approx(0.005)
    shared = FaultConfig(loss=0.3)
    c1, c2 = as_fault_config(shared), as_fault_config(shared)
    c1.loss = 0.0
    assert (shared.loss, c2.loss) == (0.3, 0.3)


def test_partition_stops_traffic_across_and_heal_restores_it() -> None:
    async def body() -> None:
        async with switched("a", "b", "c", seed=10) as net:
            for src, dst in itertools.permutations("abc", 2):
                await net.host(src).ping(dst)
            net.partition(["a"], ["b", "c"])
            await expect_timeout(net, "a", "b")
            await expect_timeout(net, "c", "a")
            await net.host("b").ping("c")  # same side
            assert net.link("b", "lan").dropped()["partitioned"] >= 1
            net.heal()
            for src, dst in itertools.permutations("abc", 2):
                await net.host(src).ping(dst)
            with pytest.raises(ValueError, match="both sides"):
                net.partition("a", ["a", "b"])

    virtual(body)


def test_partition_before_arp_makes_resolution_fail() -> None:
    async def body() -> None:
        net = VirtualNetwork(seed=11)
        net.connect("a", "b")
        async with net:
            net.partition("a", "b")
            with pytest.raises(OSError) as info:
                await net.host("a").ping("b", timeout=30)
            assert info.value.errno == errno.EHOSTUNREACH
            net.heal()
            await net.host("a").ping("b")

    virtual(body)


def test_link_down_and_up() -> None:
    async def body() -> None:
        async with switched("a", "b", seed=12) as net:
            await net.host("a").ping("b")
            net.link_down("b", "lan")
            assert not net.link("b").is_up
            await expect_timeout(net, "a", "b")
            await expect_timeout(net, "b", "a")
            assert net.link("b").dropped()["link_down"] >= 2
            net.link_up("b")
            await net.host("b").ping("a")

    virtual(body)


@pytest.mark.parametrize("topology", ["wire", "switch"])
def test_path_mtu_shrinks_and_grows_during_a_test(topology: str) -> None:
    async def body() -> None:
        net = VirtualNetwork(seed=14)
        if topology == "switch":
            net.add_switch("lan")
            net.connect("a", "lan")
            net.connect("b", "lan")
            link = net.link("a", "lan")
        else:
            link = net.connect("a", "b")
        big, small = bytes(1400), bytes(900)  # 1428- and 928-byte IP packets
        async with net:
            await net.host("a").ping("b", payload=big)
            assert link.mtu is None
            net.set_mtu(*link.endpoints, 1000)
            assert link.mtu == 1000
            await net.host("a").ping("b", payload=small)
            await net.host("b").ping("a", payload=small)
            await net.host("a").ping("b")  # the default 56 bytes pass too
            with pytest.raises(TimeoutError):
                await net.host("a").ping("b", payload=big, timeout=1)
            with pytest.raises(TimeoutError):
                await net.host("b").ping("a", payload=big, timeout=1)
            assert link.dropped()["mtu"] == 2  # each request, at the first gate it met
            link.mtu = None
            await net.host("b").ping("a", payload=big)

    virtual(body)


def test_path_mtu_blocks_only_packets_above_it() -> None:
    async def body() -> None:
        net = VirtualNetwork(seed=14)
        link = net.connect("a", "b")
        async with net:
            link.mtu = 1000
            await net.host("a").ping("b", payload=bytes(972))  # exactly 1000 bytes of IP
            with pytest.raises(TimeoutError):
                await net.host("a").ping("b", payload=bytes(973), timeout=1)
            assert link.dropped() == {"mtu": 1}
            for bad in (67, 65536):
                with pytest.raises(ValueError, match="mtu"):
                    link.mtu = bad
            assert link.mtu == 1000

    virtual(body)


# ---------------------------------------------------------------- captures and replay


def test_capture_of_a_wire_holds_both_directions_on_virtual_time(tmp_path: Path) -> None:
    net_macs: dict[str, bytes] = {}

    async def body() -> None:
        net = VirtualNetwork(seed=13, pcap_dir=tmp_path)
        net.connect("a", "b", pcap=True, impairment="delay=10ms")
        net_macs.update((name, host.mac) for name, host in net.hosts.items())
        async with net:
            await net.host("a").ping("b")
            await net.host("b").ping("a")

    virtual(body)
    path = tmp_path / "a--b.pcap"
    _header, records = read_pcap(path)
    ethertypes = [bytes(r.data[12:14]) for r in records]
    icmp = [r for r in records if bytes(r.data[12:14]) == b"\x08\x00" and r.data[23] == 1]
    # Two echo requests and two replies, one each way per ping, and ARP.
    assert len(icmp) == 4 and b"\x08\x06" in ethertypes
    assert {bytes(r.data[6:12]) for r in icmp} == {net_macs["a"], net_macs["b"]}
    # Stamped with the virtual clock, after the wire's delay: the run starts at the epoch.
    assert records[0].timestamp_ns == round((DEFAULT_EPOCH + 0.010) * 1e9)
    assert all(r.timestamp_ns % 10_000_000 == 0 for r in records)


def replay(seed: int, directory: Path) -> tuple[list[str], dict[str, bytes]]:
    """A scenario with every kind of impairment; its outcomes and the bytes of its captures."""

    async def body() -> list[str]:
        net = VirtualNetwork(
            seed=seed,
            pcap=True,
            pcap_dir=directory,
            impairment="loss=20%,dup=10%,reorder=10%,corrupt=5%,delay=5ms~3ms,rate=1mbit",
        )
        net.add_switch("lan")
        for name in "abc":
            net.connect(name, "lan")
        net.connect("d", "e", impairment={"loss": 0.3, "delay": 0.02, "jitter": 0.01})
        outcomes: list[str] = []
        async with net:
            pairs = [*itertools.permutations("abc", 2), ("d", "e"), ("e", "d")]
            for round_ in range(4):
                if round_ == 2:
                    net.partition("a", "c")
                if round_ == 3:
                    net.heal()
                for src, dst in pairs:
                    try:
                        rtt = await net.host(src).ping(dst, payload=bytes(200), timeout=0.5)
                        outcomes.append(f"{src}>{dst} {rtt:.9f}")
                    except (TimeoutError, OSError) as exc:
                        outcomes.append(f"{src}>{dst} {type(exc).__name__}")
        return outcomes

    outcomes = virtual(body)
    return outcomes, {p.name: p.read_bytes() for p in sorted(directory.glob("*.pcap"))}


def test_same_seed_same_outcomes_and_identical_pcap_bytes(tmp_path: Path) -> None:
    first = replay(1234, tmp_path / "one")
    second = replay(1234, tmp_path / "two")
    other = replay(4321, tmp_path / "three")
    outcomes, captures = first
    assert len(captures) == 4 and all(len(data) > 24 for data in captures.values())
    assert any("Timeout" in line for line in outcomes)  # the faults did bite
    assert any("Error" not in line for line in outcomes)  # and some pings got through
    assert second == first
    assert other[1] != captures
