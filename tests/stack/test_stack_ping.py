"""Two whole stacks on a MemoryWire ping each other: ICMP echo, fragmentation, reassembly."""

from __future__ import annotations

import asyncio
import errno

import pytest

from tests.helpers import (
    A_IP,
    B_IP,
    ETH_IPV4,
    ICMP_ECHO_REPLY,
    MAC_B,
    PEER_MAC,
    TIMEOUT,
    echo_frame,
    ether,
    eventually,
    fix_checksums,
    ip_of,
    ipv4,
    is_icmp,
    stack_and_peer,
    wired_stacks,
)


def pattern(size: int) -> bytes:
    """A payload in which a misplaced or lost fragment cannot go unnoticed."""
    return bytes((i * 7 + (i >> 8)) & 0xFF for i in range(size))


@pytest.mark.parametrize("size", [0, 56, 1472, 1473, 8000, 60000, 65507])
async def test_ping_both_ways_payload_intact(size: int) -> None:
    # 1472 is the largest echo payload in one 1500-byte packet; 1473 needs two.
    payload = pattern(size)
    fragments = 0 if size <= 1472 else -(-(size + 8) // 1480)
    async with wired_stacks() as (a, b):
        for src, dst, dst_ip in ((a, b, B_IP), (b, a, A_IP)):
            before = src.statistics()["mib"]
            peer_before = dst.statistics()["mib"]
            # Stack.ping raises ValueError if the echoed payload differs.
            rtt = await src.ping(dst_ip, payload=payload, timeout=TIMEOUT)
            assert 0 <= rtt < TIMEOUT
            after = src.statistics()["mib"]
            peer = dst.statistics()["mib"]
            assert after["IcmpOutEchos"] - before["IcmpOutEchos"] == 1
            assert after["IcmpInEchoReps"] - before["IcmpInEchoReps"] == 1
            assert peer["IcmpInEchos"] - peer_before["IcmpInEchos"] == 1
            assert peer["IcmpOutEchoReps"] - peer_before["IcmpOutEchoReps"] == 1
            # Fragmented on the way out by the sender, reassembled by the
            # peer, fragmented again by the peer's reply, reassembled here.
            assert after["IpFragCreates"] - before["IpFragCreates"] == fragments
            assert peer["IpFragCreates"] - peer_before["IpFragCreates"] == fragments
            assert peer["IpReasmReqds"] - peer_before["IpReasmReqds"] == fragments
            assert after["IpReasmReqds"] - before["IpReasmReqds"] == fragments
            assert peer["IpReasmOKs"] - peer_before["IpReasmOKs"] == (1 if fragments else 0)
            assert after["IpReasmOKs"] - before["IpReasmOKs"] == (1 if fragments else 0)
        for stack in (a, b):
            assert stack.statistics()["drops"] == {}
            assert stack.statistics()["device"]["drops"] == {}


async def test_ping_with_small_mtu_fragments_to_fit() -> None:
    payload = pattern(8000)
    async with wired_stacks(mtu=576) as (a, b):
        await a.ping(B_IP, payload=payload, timeout=TIMEOUT)
        # (576 - 20) rounded down to a multiple of 8 = 552 bytes per fragment.
        assert a.statistics()["mib"]["IpFragCreates"] == -(-(8000 + 8) // 552)
        assert b.statistics()["mib"]["IpReasmOKs"] == 1
        assert a.statistics()["device"]["drops"] == {}  # nothing over the MTU was sent


async def test_ping_larger_than_an_ip_datagram_is_emsgsize() -> None:
    # 65508 bytes of echo data + 8 (ICMP) + 20 (IP) does not fit in 65535:
    # Linux's ping socket refuses it with EMSGSIZE; nothing goes out.
    async with wired_stacks() as (a, _b):
        sent = a.statistics()["device"]["tx_frames"]
        with pytest.raises(OSError) as info:
            await a.ping(B_IP, payload=bytes(65508), timeout=TIMEOUT)
        assert info.value.errno == errno.EMSGSIZE
        assert a.statistics()["device"]["tx_frames"] == sent


async def test_fragments_on_the_wire_are_well_formed() -> None:
    # Look at the reply's fragments as a peer sees them: offsets in units
    # of 8, MF on all but the last, DF on none, the same identification.
    data = pattern(4000)
    async with stack_and_peer() as (stack, peer):
        since = peer.mark()
        # Fragment our own request by hand: 1480 + 1480 + rest.
        whole = echo_frame(A_IP, B_IP, 0x1234, 1, data)[14:]
        header, body = whole[:20], whole[20:]
        pieces = []
        for start in range(0, len(body), 1480):
            chunk = body[start : start + 1480]
            more = start + 1480 < len(body)
            packet = ipv4(A_IP, B_IP, 1, chunk, ident=0x4242, mf=more, offset=start)
            pieces.append(ether(MAC_B, PEER_MAC, ETH_IPV4, packet))
        assert header[9] == 1
        peer.send(*reversed(pieces))  # out of order on purpose

        def fragments() -> list[bytes]:
            return peer.sent_by_stack(
                lambda f: f[12:14] == b"\x08\x00" and ip_of(f).proto == 1, since
            )

        await eventually(
            lambda: sum(len(ip_of(f).payload) for f in fragments()) >= len(body),
            what="the fragmented echo reply",
        )
        replies = [ip_of(f) for f in fragments()]
        assert len({r.ident for r in replies}) == 1
        assert not any(r.df for r in replies)
        replies.sort(key=lambda r: r.offset)
        assert [r.mf for r in replies] == [True] * (len(replies) - 1) + [False]
        offset = 0
        for r in replies:
            assert r.offset == offset and r.offset % 8 == 0
            assert (r.src, r.dst) == (B_IP, A_IP)
            offset += len(r.payload)
        reassembled = b"".join(r.payload for r in replies)
        assert reassembled[0] == ICMP_ECHO_REPLY
        assert reassembled[8:] == data
        assert stack.statistics()["mib"]["IpReasmOKs"] == 1


async def test_echo_reply_quotes_identifier_sequence_and_tos() -> None:
    async with stack_and_peer() as (_stack, peer):
        since = peer.mark()
        frame = echo_frame(A_IP, B_IP, 0xBEEF, 77, b"hello")
        frame = frame[:15] + b"\x10" + frame[16:]  # TOS 0x10 (checksum fixed below)
        peer.send(fix_checksums(frame))
        reply = await peer.expect(lambda f: is_icmp(f, ICMP_ECHO_REPLY), since=since)
        packet = ip_of(reply)
        assert (packet.src, packet.dst) == (B_IP, A_IP)
        assert packet.tos == 0x10  # Linux echoes the request's TOS
        assert packet.payload[4:8] == bytes.fromhex("beef004d")
        assert packet.payload[8:] == b"hello"
        assert reply[:6] == PEER_MAC


async def test_ping_unknown_network_is_enetunreach() -> None:
    async with wired_stacks() as (a, _b):
        with pytest.raises(OSError) as info:
            await a.ping("192.0.2.1", timeout=TIMEOUT)
        assert info.value.errno == errno.ENETUNREACH


async def test_ping_echo_ignore_all() -> None:
    async with wired_stacks() as (a, b):
        b.settings.icmp_echo_ignore_all = 1
        with pytest.raises(TimeoutError):
            await a.ping(B_IP, timeout=0.2)
        assert b.statistics()["mib"]["IcmpInEchos"] == 1
        assert b.statistics()["mib"]["IcmpOutEchoReps"] == 0
        assert b.statistics()["drops"] == {"icmp.echo_ignored": 1}
        b.settings.icmp_echo_ignore_all = 0
        await a.ping(B_IP, timeout=TIMEOUT)


async def test_many_pings_in_flight_at_once() -> None:
    async with wired_stacks() as (a, b):
        rtts = await asyncio.gather(
            *(a.ping(B_IP, payload=pattern(i * 100), timeout=TIMEOUT) for i in range(50))
        )
        assert len(rtts) == 50
        assert b.statistics()["mib"]["IcmpOutEchoReps"] == 50
