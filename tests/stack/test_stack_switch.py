"""Three and more stacks on one VirtualSwitch: unicast, broadcast, many stacks in one loop."""

from __future__ import annotations

import asyncio
import errno
import itertools
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial

import pytest

from aiostack.link.memory import VirtualSwitch
from aiostack.socket import AF_INET, SO_BROADCAST, SOCK_DGRAM, SOL_SOCKET
from aiostack.stack.stack import Stack
from aiostack.wire.ipv4 import addr
from tests.helpers import (
    A_IP,
    B_IP,
    C_IP,
    MAC_A,
    MAC_B,
    MAC_C,
    SUBNET_BROADCAST,
    TIMEOUT,
    eventually,
)

PORT = 5353


@asynccontextmanager
async def switched(count: int) -> AsyncIterator[tuple[VirtualSwitch, list[Stack]]]:
    """``count`` stacks at 198.18.0.1.. on one switch (the first three use MAC_A..C)."""
    switch = VirtualSwitch()
    macs = [MAC_A, MAC_B, MAC_C]
    async with AsyncExitStack() as exits:
        stacks = []
        for i in range(count):
            mac = macs[i] if i < len(macs) else bytes([2, 0, 0, 0, 1, i])
            stack = Stack(
                switch.port(f"port{i}"), address=f"198.18.0.{i + 1}/24", mac=mac, seed=100 + i
            )
            stacks.append(await exits.enter_async_context(stack))
        yield switch, stacks
    switch.close()


async def test_three_stacks_ping_each_other_and_the_switch_learns() -> None:
    async with switched(3) as (switch, stacks):
        ips = [A_IP, B_IP, C_IP]
        for (i, src), (j, _dst) in itertools.permutations(enumerate(stacks), 2):
            assert i != j
            await src.ping(ips[j], timeout=TIMEOUT)
        assert switch.fdb() == {MAC_A: "port0", MAC_B: "port1", MAC_C: "port2"}
        for stack, ip in zip(stacks, ips, strict=True):
            others = {addr(x) for x in ips if x != ip}
            assert set(stack.neighbors.entries) == others
            mib = stack.statistics()["mib"]
            assert mib["IcmpInEchos"] == 2 and mib["IcmpOutEchoReps"] == 2
            assert mib["IcmpInEchoReps"] == 2
            assert stack.statistics()["drops"] == {}


async def test_unicast_between_two_does_not_reach_the_third() -> None:
    async with switched(3) as (_switch, (a, _b, c)):
        await a.ping(B_IP, timeout=TIMEOUT)  # everyone learned now
        before = c.statistics()["device"]["rx_frames"]
        for _ in range(10):
            await a.ping(B_IP, payload=bytes(3000), timeout=TIMEOUT)
        assert c.statistics()["device"]["rx_frames"] == before


async def test_udp_between_three_stacks() -> None:
    async with switched(3) as (_switch, (a, b, c)):
        server = c.socket(AF_INET, SOCK_DGRAM)
        server.bind(("", PORT))
        clients = [a.socket(AF_INET, SOCK_DGRAM), b.socket(AF_INET, SOCK_DGRAM)]
        for n, client in enumerate(clients):
            await client.sendto(f"hello {n}".encode(), (C_IP, PORT))
        seen = set()
        async with asyncio.timeout(TIMEOUT):
            for _ in clients:
                data, source = await server.recvfrom(100)
                assert source is not None
                seen.add((data, source[0]))
                await server.sendto(data.upper(), source)
        assert seen == {(b"hello 0", A_IP), (b"hello 1", B_IP)}
        async with asyncio.timeout(TIMEOUT):
            for n, client in enumerate(clients):
                data, source = await client.recvfrom(100)
                assert (data, source) == (f"HELLO {n}".encode(), (C_IP, PORT))


def _no_ports(stack: Stack, count: int) -> bool:
    return bool(stack.statistics()["mib"]["UdpNoPorts"] == count)


@pytest.mark.parametrize("destination", ["255.255.255.255", SUBNET_BROADCAST, "<broadcast>"])
async def test_broadcast_udp_reaches_every_other_stack(destination: str) -> None:
    async with switched(3) as (_switch, (a, b, c)):
        receivers = []
        for stack in (b, c):
            sock = stack.socket(AF_INET, SOCK_DGRAM)
            sock.bind(("", PORT))
            receivers.append(sock)
        # A socket bound to its unicast address does not see broadcasts (Linux).
        unicast_only = b.socket(AF_INET, SOCK_DGRAM)
        unicast_only.bind((B_IP, PORT + 1))
        sender = a.socket(AF_INET, SOCK_DGRAM)
        with pytest.raises(PermissionError) as info:
            await sender.sendto(b"no", (destination, PORT))
        assert info.value.errno == errno.EACCES
        assert a.statistics()["device"]["tx_frames"] == 1  # only the start-up announcement
        sender.setsockopt(SOL_SOCKET, SO_BROADCAST, 1)
        assert sender.getsockopt(SOL_SOCKET, SO_BROADCAST) == 1
        await sender.sendto(b"to everyone", (destination, PORT))
        await sender.sendto(b"to the unicast-bound one", (destination, PORT + 1))
        async with asyncio.timeout(TIMEOUT):
            for sock in receivers:
                data, source = await sock.recvfrom(100)
                assert source is not None and (data, source[0]) == (b"to everyone", A_IP)
        for stack in (b, c):
            await eventually(partial(_no_ports, stack, 1), what="the datagram to PORT + 1")
            mib = stack.statistics()["mib"]
            assert mib["IpInBcastPkts"] == 2
            # Never an ICMP error about a broadcast (RFC 1122 3.2.2).
            assert mib["IcmpOutDestUnreachs"] == 0
        assert unicast_only.ioctl(0x541B) == 0
        assert a.statistics()["mib"]["IcmpInDestUnreachs"] == 0


async def test_connect_to_broadcast_needs_so_broadcast() -> None:
    async with switched(2) as (_switch, (a, b)):
        receiver = b.socket(AF_INET, SOCK_DGRAM)
        receiver.bind(("", PORT))
        sender = a.socket(AF_INET, SOCK_DGRAM)
        with pytest.raises(PermissionError):
            await sender.connect((SUBNET_BROADCAST, PORT))
        sender.setsockopt(SOL_SOCKET, SO_BROADCAST, 1)
        await sender.connect((SUBNET_BROADCAST, PORT))
        await sender.send(b"connected broadcast")
        source = (A_IP, sender.getsockname()[1])
        async with asyncio.timeout(TIMEOUT):
            assert await receiver.recvfrom(100) == (b"connected broadcast", source)


async def test_broadcast_ping_is_ignored_by_default() -> None:
    async with switched(3) as (_switch, (a, b, c)):
        with pytest.raises(TimeoutError):
            await a.ping(SUBNET_BROADCAST, timeout=0.2)
        for stack in (b, c):
            mib = stack.statistics()["mib"]
            assert mib["IcmpInEchos"] == 1 and mib["IcmpOutEchoReps"] == 0
            assert stack.statistics()["drops"] == {"icmp.echo_ignored": 1}
        c.settings.icmp_echo_ignore_broadcasts = 0
        # Now C answers (from its own unicast address, as Linux does).
        assert await a.ping(SUBNET_BROADCAST, timeout=TIMEOUT) >= 0
        assert c.statistics()["mib"]["IcmpOutEchoReps"] == 1


async def test_many_stacks_in_one_loop() -> None:
    count = 8
    async with switched(count) as (switch, stacks):
        ips = [f"198.18.0.{i + 1}" for i in range(count)]
        pings = [
            src.ping(ips[j], payload=bytes(2000), timeout=TIMEOUT)
            for i, src in enumerate(stacks)
            for j in range(count)
            if i != j
        ]
        rtts = await asyncio.gather(*pings)
        assert len(rtts) == count * (count - 1)
        assert len(switch.fdb()) == count
        names = {task.get_name() for task in asyncio.all_tasks()}
        for i in range(count):
            for layer in ("link-rx", "link-tx", "ip", "transport", "timer"):
                assert f"port{i}:{layer}" in names
        for stack in stacks:
            assert stack.statistics()["mib"]["IcmpOutEchoReps"] == count - 1
            assert stack.statistics()["drops"] == {}
