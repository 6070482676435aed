"""``Stack.statistics()``: the MIB counters move the way Linux's would for the same traffic."""

from __future__ import annotations

import asyncio
import struct

from aiostack.core.counters import MIB_NAMES
from aiostack.socket import AF_INET, SOCK_DGRAM
from aiostack.stack.stack import Stack
from tests.helpers import (
    A_IP,
    B_IP,
    ETH_IPV4,
    ICMP_DEST_UNREACH,
    MAC_B,
    PEER_MAC,
    PROTO_UDP,
    TIMEOUT,
    echo_frame,
    ether,
    eventually,
    ip_of,
    ipv4,
    is_arp,
    is_icmp,
    parse_arp,
    stack_and_peer,
    udp,
    udp_frame,
    wired_stacks,
)

PROTO_SCTP = 132


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """The counters that changed, with how much."""
    return {k: after[k] - before[k] for k in after if after[k] != before.get(k, 0)}


def mib(stack: Stack) -> dict[str, int]:
    snapshot: dict[str, int] = stack.statistics()["mib"]
    return snapshot


async def test_statistics_shape() -> None:
    async with wired_stacks() as (a, _b):
        stats = a.statistics()
        assert set(stats) == {"mib", "drops", "device"}
        assert list(stats["mib"]) == list(MIB_NAMES)
        assert all(isinstance(v, int) for v in stats["mib"].values())
        assert set(stats["device"]) == {"rx_frames", "rx_bytes", "tx_frames", "tx_bytes", "drops"}
        # The snapshot is a copy: changing it changes nothing.
        stats["mib"]["IpInReceives"] = 12345
        stats["drops"]["x"] = 1
        assert a.statistics()["mib"]["IpInReceives"] == 0
        assert a.statistics()["drops"] == {}


async def test_ping_moves_ip_and_icmp_counters_on_both_sides() -> None:
    async with wired_stacks() as (a, b):
        await a.ping(B_IP, timeout=TIMEOUT)  # ARP done
        before_a, before_b = mib(a), mib(b)
        await a.ping(B_IP, timeout=TIMEOUT)
        assert delta(before_a, mib(a)) == {
            "IpOutRequests": 1,
            "IcmpOutMsgs": 1,
            "IcmpOutEchos": 1,
            "IpInReceives": 1,
            "IpInDelivers": 1,
            "IcmpInMsgs": 1,
            "IcmpInEchoReps": 1,
        }
        assert delta(before_b, mib(b)) == {
            "IpInReceives": 1,
            "IpInDelivers": 1,
            "IcmpInMsgs": 1,
            "IcmpInEchos": 1,
            "IcmpOutMsgs": 1,
            "IcmpOutEchoReps": 1,
            "IpOutRequests": 1,
        }


async def test_udp_delivery_and_no_port_counters() -> None:
    async with wired_stacks() as (a, b):
        server = b.socket(AF_INET, SOCK_DGRAM)
        server.bind(("", 4000))
        client = a.socket(AF_INET, SOCK_DGRAM)
        await a.ping(B_IP, timeout=TIMEOUT)
        before_a, before_b = mib(a), mib(b)
        await client.sendto(b"one", (B_IP, 4000))
        async with asyncio.timeout(TIMEOUT):
            assert await server.recv(10) == b"one"
        assert delta(before_a, mib(a)) == {"UdpOutDatagrams": 1, "IpOutRequests": 1}
        assert delta(before_b, mib(b)) == {
            "IpInReceives": 1,
            "IpInDelivers": 1,
            "UdpInDatagrams": 1,
        }

        # No socket on the port: UdpNoPorts, and an ICMP port unreachable back.
        before_a, before_b = mib(a), mib(b)
        await client.sendto(b"two", (B_IP, 4001))
        await eventually(lambda: mib(a)["IcmpInDestUnreachs"] == 1, what="port unreachable")
        assert delta(before_b, mib(b)) == {
            "IpInReceives": 1,
            "IpInDelivers": 1,
            "UdpNoPorts": 1,
            "IcmpOutMsgs": 1,
            "IcmpOutDestUnreachs": 1,
            "IpOutRequests": 1,
        }
        assert b.statistics()["drops"] == {"udp.no_port": 1}
        assert delta(before_a, mib(a)) == {
            "UdpOutDatagrams": 1,
            "IpOutRequests": 1,
            "IpInReceives": 1,
            "IpInDelivers": 1,
            "IcmpInMsgs": 1,
            "IcmpInDestUnreachs": 1,
        }


async def test_device_counters_agree_across_the_wire() -> None:
    async with wired_stacks() as (a, b):
        for size in (0, 100, 5000):
            await a.ping(B_IP, payload=bytes(size), timeout=TIMEOUT)
        await eventually(
            lambda: (
                b.statistics()["device"]["tx_frames"] == a.statistics()["device"]["rx_frames"]
                and a.statistics()["device"]["tx_frames"] == b.statistics()["device"]["rx_frames"]
            ),
            what="both directions drained",
        )
        da, db = a.statistics()["device"], b.statistics()["device"]
        assert da["tx_bytes"] == db["rx_bytes"] and db["tx_bytes"] == da["rx_bytes"]
        # Every frame B received is accounted for: ARP or IP.
        mb = mib(b)
        assert db["rx_frames"] == mb["ArpInRequests"] + mb["ArpInReplies"] + mb["IpInReceives"]


async def test_bad_checksums_are_counted_and_dropped() -> None:
    async with stack_and_peer() as (stack, peer):
        server = stack.socket(AF_INET, SOCK_DGRAM)
        server.bind(("", 4000))
        good = udp_frame(A_IP, B_IP, 1234, 4000, b"payload")
        # UDP checksum broken (IP header intact).
        bad_udp = bytearray(good)
        bad_udp[-1] ^= 0xFF
        # IP header checksum broken.
        bad_ip = bytearray(good)
        bad_ip[24] ^= 0x01
        # ICMP checksum broken.
        bad_icmp = ether(
            MAC_B, PEER_MAC, ETH_IPV4, ipv4(A_IP, B_IP, 1, bytes.fromhex("0800ffff00010001"))
        )
        # UDP with no checksum at all (0) is accepted (RFC 768).
        no_csum = ether(
            MAC_B,
            PEER_MAC,
            ETH_IPV4,
            ipv4(A_IP, B_IP, PROTO_UDP, udp(A_IP, B_IP, 1234, 4000, b"nocsum", udp_checksum=0)),
        )
        peer.send(bytes(bad_udp), bytes(bad_ip), bad_icmp, no_csum, good)
        async with asyncio.timeout(TIMEOUT):
            assert await server.recv(100) == b"nocsum"
            assert await server.recv(100) == b"payload"
        counters = mib(stack)
        assert counters["IpInReceives"] == 5
        assert counters["IpInCsumErrors"] == 1 and counters["IpInHdrErrors"] == 1
        assert counters["UdpInCsumErrors"] == 1 and counters["UdpInErrors"] == 1
        assert counters["IcmpInCsumErrors"] == 1 and counters["IcmpInErrors"] == 1
        assert counters["UdpInDatagrams"] == 2
        assert stack.statistics()["drops"] == {
            "ipv4.bad_checksum": 1,
            "udp.bad_checksum": 1,
            "icmp.bad_checksum": 1,
        }


async def test_unknown_protocol_gets_protocol_unreachable() -> None:
    async with stack_and_peer() as (stack, peer):
        since = peer.mark()
        # SCTP: a transport aiostack does not have (TCP was the example before it landed).
        segment = struct.pack("!HHIIBBHHH", 1234, 80, 0, 0, 0x50, 0x02, 1024, 0, 0)
        peer.send(ether(MAC_B, PEER_MAC, ETH_IPV4, ipv4(A_IP, B_IP, PROTO_SCTP, segment)))
        error = await peer.expect(
            lambda f: is_icmp(f, ICMP_DEST_UNREACH, 2), since=since, what="protocol unreachable"
        )
        quoted = ip_of(error).payload[8:]
        assert quoted[9] == PROTO_SCTP and quoted[20:24] == segment[:4]
        counters = mib(stack)
        assert counters["IpInUnknownProtos"] == 1
        assert counters["IcmpOutDestUnreachs"] == 1
        assert counters["IpInDelivers"] == 0


async def test_icmp_errors_are_rate_limited_per_peer() -> None:
    async with stack_and_peer() as (stack, peer):
        frames = [udp_frame(A_IP, B_IP, 1000 + i, 9, b"x") for i in range(20)]
        peer.send(*frames)
        await eventually(lambda: mib(stack)["UdpNoPorts"] == 20, what="20 datagrams")
        counters = mib(stack)
        # Linux's per-peer token bucket holds 6 (XRLIM_BURST_FACTOR) at 1/s.
        assert counters["IcmpOutDestUnreachs"] == 6
        assert counters["IcmpOutRateLimitHost"] == 14


async def test_not_for_us_is_an_address_error() -> None:
    async with stack_and_peer() as (stack, peer):
        frame = udp_frame(A_IP, "198.18.0.200", 1, 2, b"x")
        peer.send(frame)
        await eventually(lambda: mib(stack)["IpInReceives"] == 1, what="the datagram")
        assert mib(stack)["IpInAddrErrors"] == 1
        assert stack.statistics()["drops"] == {"ipv4.not_for_us": 1}


async def test_packet_from_our_own_address_is_a_martian() -> None:
    # A packet claiming to come from the stack's own address is spoofed:
    # Linux drops it (fib_validate_source) instead of answering itself,
    # which would mean ARP requests for its own address.
    async with stack_and_peer() as (stack, peer):
        peer.send(echo_frame(B_IP, B_IP, 1, 1, b"spoofed"), udp_frame(B_IP, B_IP, 9, 9, b"x"))
        await eventually(lambda: mib(stack)["IpInReceives"] == 2, what="both packets")
        assert mib(stack)["IpInAddrErrors"] == 2
        assert stack.statistics()["drops"] == {"ipv4.martian_source": 2}
        peer.answer_echo = True
        # A barrier: whatever the stack did about the two packets is on the wire by now.
        await stack.ping(A_IP, timeout=TIMEOUT)
        counters = mib(stack)
        assert counters["IcmpOutEchoReps"] == 0 and counters["UdpNoPorts"] == 0
        # Its start-up announcement and one request for the peer; none for itself.
        assert counters["ArpOutRequests"] == 2
        assert counters["ArpResolveFailures"] == 0
        for_itself = [f for f in peer.frames if is_arp(f) and parse_arp(f[14:]).tpa == B_IP]
        assert len(for_itself) == 1  # the announcement
