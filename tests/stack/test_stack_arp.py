"""ARP between whole stacks: resolution, the neighbour entry, failure as EHOSTUNREACH."""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Callable

import pytest

from aiostack.core.neighbor import NudState
from aiostack.link.memory import MemoryWire
from aiostack.stack.stack import Stack
from aiostack.wire.ipv4 import addr
from tests.helpers import (
    A_IP,
    ABSENT_IP,
    B_IP,
    BROADCAST_MAC,
    ETH_ARP,
    MAC_A,
    MAC_B,
    PEER_MAC,
    TIMEOUT,
    RawPeer,
    arp,
    echo_reply_for,
    ether,
    eventually,
    fast_arp,
    is_arp,
    is_icmp,
    parse_arp,
    stack_and_peer,
    wired_stacks,
)


def arp_requests_for(target: str) -> Callable[[bytes], bool]:
    def match(frame: bytes) -> bool:
        if not is_arp(frame):
            return False
        packet = parse_arp(frame[14:])
        return packet.op == 1 and packet.tpa == target and packet.spa != packet.tpa

    return match


async def test_first_ping_resolves_and_fills_both_neighbour_tables() -> None:
    async with wired_stacks() as (a, b):
        assert addr(B_IP) not in a.neighbors.entries
        await a.ping(B_IP, timeout=TIMEOUT)
        entry = a.neighbors.entries[addr(B_IP)]
        assert entry.mac == MAC_B
        assert entry.state is NudState.REACHABLE  # confirmed by the reply
        # B learned A from A's request (addressed to B), as Linux does.
        learned = b.neighbors.entries[addr(A_IP)]
        assert learned.mac == MAC_A
        mib_a, mib_b = a.statistics()["mib"], b.statistics()["mib"]
        # One gratuitous announcement each at start-up, plus A's one request.
        assert mib_a["ArpOutRequests"] == 2
        assert mib_b["ArpOutReplies"] == 1
        assert mib_a["ArpInReplies"] == 1
        assert mib_b["ArpInRequests"] == 2  # A's announcement and A's request


async def test_resolved_neighbour_is_not_asked_again() -> None:
    async with wired_stacks() as (a, _b):
        await a.ping(B_IP, timeout=TIMEOUT)
        requests = a.statistics()["mib"]["ArpOutRequests"]
        for _ in range(5):
            await a.ping(B_IP, timeout=TIMEOUT)
        assert a.statistics()["mib"]["ArpOutRequests"] == requests


async def test_arp_request_and_reply_on_the_wire() -> None:
    # The stack asks for the peer with a broadcast request and answers the
    # peer's request with a unicast reply.
    async with stack_and_peer() as (stack, peer):
        peer.answer_arp = False
        since = peer.mark()
        ping = asyncio.create_task(stack.ping(A_IP, timeout=TIMEOUT))
        frame = await peer.expect(arp_requests_for(A_IP), since=since, what="ARP request")
        assert frame[:6] == BROADCAST_MAC and frame[6:12] == MAC_B
        request = parse_arp(frame[14:])
        assert (request.sha, request.spa, request.tha) == (MAC_B, B_IP, b"\0" * 6)
        # Answer by hand: the queued echo request is released to our MAC.
        since = peer.mark()
        peer.send(ether(MAC_B, PEER_MAC, ETH_ARP, arp(2, PEER_MAC, A_IP, MAC_B, B_IP)))
        echo = await peer.expect(lambda f: is_icmp(f, 8), since=since, what="echo request")
        assert echo[:6] == PEER_MAC
        peer.send(echo_reply_for(echo))
        assert await ping >= 0
        assert stack.neighbors.entries[addr(A_IP)].mac == PEER_MAC

        # The peer asks: a unicast reply comes back.
        since = peer.mark()
        peer.send(ether(BROADCAST_MAC, PEER_MAC, ETH_ARP, arp(1, PEER_MAC, A_IP, b"\0" * 6, B_IP)))
        frame = await peer.expect(
            lambda f: is_arp(f) and parse_arp(f[14:]).op == 2, since=since, what="ARP reply"
        )
        assert frame[:6] == PEER_MAC
        answer = parse_arp(frame[14:])
        assert (answer.sha, answer.spa, answer.tha, answer.tpa) == (MAC_B, B_IP, PEER_MAC, A_IP)


async def test_arp_for_other_hosts_is_not_answered_nor_learned() -> None:
    async with stack_and_peer() as (stack, peer):
        since = peer.mark()
        # Someone asks for another host: no reply, and (arp_accept=0) no entry.
        peer.send(
            ether(BROADCAST_MAC, PEER_MAC, ETH_ARP, arp(1, PEER_MAC, A_IP, b"\0" * 6, ABSENT_IP))
        )
        # An unsolicited reply is not learned either.
        peer.send(ether(MAC_B, PEER_MAC, ETH_ARP, arp(2, PEER_MAC, "198.18.0.9", MAC_B, B_IP)))
        await eventually(
            lambda: stack.statistics()["mib"]["ArpInReplies"] == 1, what="the ARP reply"
        )
        assert stack.statistics()["mib"]["ArpInRequests"] == 1
        assert stack.statistics()["mib"]["ArpOutReplies"] == 0
        assert stack.neighbors.entries == {}
        assert not peer.sent_by_stack(lambda f: is_arp(f) and parse_arp(f[14:]).op == 2, since)


async def test_ping_absent_host_fails_with_ehostunreach_after_retries() -> None:
    settings = fast_arp()
    async with stack_and_peer(settings=settings) as (stack, peer):
        since = peer.mark()
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(OSError) as info:
            await stack.ping(ABSENT_IP, timeout=TIMEOUT)
        elapsed = loop.time() - start
        assert info.value.errno == errno.EHOSTUNREACH
        assert isinstance(info.value, OSError) and not isinstance(info.value, TimeoutError)
        # mcast_solicit broadcast requests, retrans_time_ms apart, then failure.
        requests = peer.sent_by_stack(arp_requests_for(ABSENT_IP), since)
        assert len(requests) == settings.mcast_solicit
        assert all(f[:6] == BROADCAST_MAC for f in requests)
        assert elapsed >= settings.mcast_solicit * settings.retrans_time_ms / 1000 * 0.9
        mib = stack.statistics()["mib"]
        assert mib["ArpResolveFailures"] == 1
        assert addr(ABSENT_IP) not in stack.neighbors.entries
        # Nothing but ARP went out: the echo request died in the pending queue.
        assert not peer.sent_by_stack(lambda f: is_icmp(f, 8), since)


async def test_concurrent_pings_to_absent_host_share_one_resolution() -> None:
    settings = fast_arp()
    async with stack_and_peer(settings=settings) as (stack, peer):
        since = peer.mark()
        results = await asyncio.gather(
            *(stack.ping(ABSENT_IP, timeout=TIMEOUT) for _ in range(5)), return_exceptions=True
        )
        assert all(isinstance(r, OSError) and r.errno == errno.EHOSTUNREACH for r in results)
        assert len(peer.sent_by_stack(arp_requests_for(ABSENT_IP), since)) == 3
        assert stack.statistics()["mib"]["ArpResolveFailures"] == 1


async def test_host_that_appears_later_is_reachable_after_failure() -> None:
    async with stack_and_peer(settings=fast_arp()) as (stack, peer):
        peer.answer_arp = False
        with pytest.raises(OSError):
            await stack.ping(A_IP, timeout=TIMEOUT)
        peer.answer_arp = True
        await _answer_one_ping(stack, peer)


async def _answer_one_ping(stack: Stack, peer: RawPeer) -> None:
    """The stack pings the peer, which answers by hand."""
    since = peer.mark()
    ping = asyncio.create_task(stack.ping(A_IP, timeout=TIMEOUT))
    request = await peer.expect(lambda f: is_icmp(f, 8), since=since, what="echo request")
    peer.send(echo_reply_for(request))
    assert await ping >= 0


async def test_gateway_that_does_not_answer_is_ehostunreach() -> None:
    a, b = MemoryWire.pair()
    async with Stack(
        a, address=f"{A_IP}/24", gateway=ABSENT_IP, settings=fast_arp(), seed=3
    ) as stack:
        with pytest.raises(OSError) as info:
            await stack.ping("192.0.2.1", timeout=TIMEOUT)
        assert info.value.errno == errno.EHOSTUNREACH
    await b.aclose()


async def test_announcement_updates_an_existing_entry() -> None:
    # A gratuitous ARP from a known neighbour with a new MAC moves the entry
    # (arp_accept=0 only refuses to *create* entries).
    async with stack_and_peer() as (stack, peer):
        await _answer_one_ping(stack, peer)
        new_mac = bytes.fromhex("02000000abcd")
        peer.send(ether(BROADCAST_MAC, new_mac, ETH_ARP, arp(1, new_mac, A_IP, b"\0" * 6, A_IP)))
        await eventually(
            lambda: stack.neighbors.entries[addr(A_IP)].mac == new_mac, what="the MAC update"
        )


async def test_add_neighbor_sends_without_arp_and_validates_mac() -> None:
    a, b = MemoryWire.pair()
    async with (
        Stack(a, address="198.18.0.1/24", seed=1) as left,
        Stack(b, address="198.18.0.2/24", seed=2, mac="02:00:00:00:00:02") as right,
    ):
        left.add_neighbor("198.18.0.2", "02:00:00:00:00:02")
        with pytest.raises(ValueError, match="mac"):
            left.add_neighbor("198.18.0.3", "01:00:00:00:00:00")
        async with asyncio.timeout(10):
            await left.ping("198.18.0.2")
        assert left.counters.ArpOutRequests == len(left.routes.interfaces)  # the announcement only
        assert right.counters.IcmpInEchos == 1
