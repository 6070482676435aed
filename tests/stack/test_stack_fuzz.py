"""Malformed frames of every shape against a running stack.

The stack sits on one end of a MemoryWire; the test drives the other end
by hand and throws at it truncations, bit flips and field edits of valid
ARP, IPv4, ICMP and UDP frames, IP options, fragment sets that overlap,
repeat or never complete, oversize frames and random bytes. After every
batch three things must hold:

- nothing escaped a layer: no ``*.internal_error`` drop, every layer task
  still running, the device still open;
- every frame is accounted for, layer by layer (see :func:`unaccounted`):
  each frame the device delivered was dropped with a counted reason or
  counted as received by ARP or IP; each IP packet was dropped with a
  reason, went to reassembly, or was delivered; each delivered datagram
  was counted by ICMP or UDP;
- the stack still answers a ping, and can still ping (and so resolve) us.

Hypothesis runs derandomized (the same examples every run) with a modest
budget; the exhaustive truncation and single-bit-flip sweeps of the corpus
are plain loops.
"""

from __future__ import annotations

import asyncio
import random
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiostack.socket import AF_INET, SOCK_DGRAM, Socket
from aiostack.stack.stack import Stack
from tests.helpers import (
    A_IP,
    B_IP,
    BROADCAST_MAC,
    ETH_ARP,
    ETH_IPV4,
    ICMP_ECHO_REPLY,
    MAC_B,
    PEER_MAC,
    PROTO_ICMP,
    PROTO_TCP,
    PROTO_UDP,
    SUBNET_BROADCAST,
    TIMEOUT,
    RawPeer,
    arp,
    echo,
    echo_frame,
    ether,
    eventually,
    fast_arp,
    fix_checksums,
    icmp,
    ip_of,
    ipv4,
    is_icmp,
    stack_and_peer,
    udp,
)

STACK_IP = B_IP
PEER_IP = A_IP
UDP_PORT = 7777
ZERO_MAC = b"\0" * 6
MULTICAST_MAC = bytes.fromhex("01005e000001")
OTHER_MAC = bytes.fromhex("020000001234")


# ---------------------------------------------------------------- the corpus


def _ip_frame(packet: bytes, dst_mac: bytes = MAC_B) -> bytes:
    return ether(dst_mac, PEER_MAC, ETH_IPV4, packet)


def _udp_packet(
    dport: int, payload: bytes, dst: str = STACK_IP, *, ttl: int = 64, options: bytes = b""
) -> bytes:
    datagram = udp(PEER_IP, dst, 40000, dport, payload)
    return ipv4(PEER_IP, dst, PROTO_UDP, datagram, ttl=ttl, options=options)


def _quote(proto: int, sport: int, dport: int) -> bytes:
    """What an ICMP error about one of the stack's datagrams quotes."""
    inner = struct.pack("!HHHH", sport, dport, 16, 0)
    return ipv4(STACK_IP, PEER_IP, proto, inner + b"12345678")[:28]


def build_corpus() -> dict[str, bytes]:
    """Valid frames of every kind the stack handles, and some it must refuse."""
    tcp_syn = struct.pack("!HHIIBBHHH", 40000, 80, 1, 0, 0x50, 0x02, 65535, 0, 0)
    corpus = {
        "arp_request": ether(
            BROADCAST_MAC, PEER_MAC, ETH_ARP, arp(1, PEER_MAC, PEER_IP, ZERO_MAC, STACK_IP)
        ),
        "arp_reply": ether(MAC_B, PEER_MAC, ETH_ARP, arp(2, PEER_MAC, PEER_IP, MAC_B, STACK_IP)),
        "arp_gratuitous": ether(
            BROADCAST_MAC, PEER_MAC, ETH_ARP, arp(1, PEER_MAC, PEER_IP, ZERO_MAC, PEER_IP)
        ),
        "arp_probe": ether(
            BROADCAST_MAC, PEER_MAC, ETH_ARP, arp(1, PEER_MAC, "0.0.0.0", ZERO_MAC, STACK_IP)
        ),
        "echo_request": echo_frame(PEER_IP, STACK_IP, 0x1111, 1, b"abcdefgh" * 4),
        "echo_request_broadcast": echo_frame(
            PEER_IP, SUBNET_BROADCAST, 0x1111, 2, b"bcast", dst_mac=BROADCAST_MAC
        ),
        "echo_reply": _ip_frame(ipv4(PEER_IP, STACK_IP, PROTO_ICMP, echo(7, 7, b"x", reply=True))),
        "port_unreachable": _ip_frame(
            ipv4(PEER_IP, STACK_IP, PROTO_ICMP, icmp(3, 3, 0, _quote(PROTO_UDP, UDP_PORT, 53)))
        ),
        "frag_needed": _ip_frame(
            ipv4(PEER_IP, STACK_IP, PROTO_ICMP, icmp(3, 4, 576, _quote(PROTO_UDP, UDP_PORT, 53)))
        ),
        "time_exceeded": _ip_frame(
            ipv4(PEER_IP, STACK_IP, PROTO_ICMP, icmp(11, 0, 0, _quote(PROTO_ICMP, 1, 1)))
        ),
        "param_problem": _ip_frame(
            ipv4(PEER_IP, STACK_IP, PROTO_ICMP, icmp(12, 0, 20 << 24, _quote(PROTO_TCP, 1, 2)))
        ),
        "redirect": _ip_frame(
            ipv4(PEER_IP, STACK_IP, PROTO_ICMP, icmp(5, 1, 0xC6120009, _quote(PROTO_UDP, 1, 2)))
        ),
        "source_quench": _ip_frame(
            ipv4(PEER_IP, STACK_IP, PROTO_ICMP, icmp(4, 0, 0, _quote(PROTO_UDP, 1, 2)))
        ),
        "timestamp": _ip_frame(ipv4(PEER_IP, STACK_IP, PROTO_ICMP, icmp(13, 0, 0, bytes(12)))),
        "icmp_unknown_type": _ip_frame(ipv4(PEER_IP, STACK_IP, PROTO_ICMP, icmp(200, 9, 0, b""))),
        "udp_open_port": _ip_frame(_udp_packet(UDP_PORT, b"hello udp")),
        "udp_closed_port": _ip_frame(_udp_packet(9, b"nobody")),
        "udp_zero_checksum": _ip_frame(
            ipv4(
                PEER_IP,
                STACK_IP,
                PROTO_UDP,
                udp(PEER_IP, STACK_IP, 1, UDP_PORT, b"no checksum", udp_checksum=0),
            )
        ),
        "udp_limited_broadcast": _ip_frame(
            _udp_packet(UDP_PORT, b"all", dst="255.255.255.255"), BROADCAST_MAC
        ),
        "udp_directed_broadcast": _ip_frame(
            _udp_packet(UDP_PORT, b"subnet", dst=SUBNET_BROADCAST), BROADCAST_MAC
        ),
        "udp_empty": _ip_frame(_udp_packet(UDP_PORT, b"")),
        "ip_options_nop_eol": _ip_frame(_udp_packet(UDP_PORT, b"opt", options=b"\x01\x01\x00")),
        "ip_option_record_route": _ip_frame(
            _udp_packet(UDP_PORT, b"rr", options=b"\x07\x0b\x04" + bytes(8))
        ),
        "ip_option_timestamp": _ip_frame(
            _udp_packet(UDP_PORT, b"ts", options=b"\x44\x0c\x05\x00" + bytes(8))
        ),
        "ip_option_lsrr": _ip_frame(
            _udp_packet(UDP_PORT, b"lsrr", options=b"\x83\x07\x04" + bytes(4) + b"\x00")
        ),
        "ip_option_router_alert": _ip_frame(
            _udp_packet(UDP_PORT, b"ra", options=b"\x94\x04\x00\x00")
        ),
        "tcp_syn": _ip_frame(ipv4(PEER_IP, STACK_IP, PROTO_TCP, tcp_syn)),
        "not_for_us": _ip_frame(_udp_packet(UDP_PORT, b"x", dst="198.18.0.99")),
        "multicast": _ip_frame(_udp_packet(UDP_PORT, b"m", dst="224.0.0.1"), MULTICAST_MAC),
        "other_mac": _ip_frame(_udp_packet(UDP_PORT, b"o"), OTHER_MAC),
        "vlan_tagged": MAC_B
        + PEER_MAC
        + b"\x81\x00\x00\x05\x08\x00"
        + _udp_packet(UDP_PORT, b"vlan"),
        "ipv6_ethertype": ether(MAC_B, PEER_MAC, 0x86DD, bytes(40)),
        "ieee802_3_length": ether(MAC_B, PEER_MAC, 46, bytes(46)),
        "ttl_zero": _ip_frame(_udp_packet(UDP_PORT, b"ttl0", ttl=0)),
        "echo_from_our_own_address": echo_frame(STACK_IP, STACK_IP, 0x2222, 1, b"spoof"),
        "udp_from_our_own_address": _ip_frame(
            ipv4(STACK_IP, STACK_IP, PROTO_UDP, udp(STACK_IP, STACK_IP, 9, 9, b"spoof"))
        ),
        "echo_from_zero_address": echo_frame("0.0.0.0", STACK_IP, 0x2222, 2, b"zero"),
        "echo_from_loopback": echo_frame("127.0.0.1", STACK_IP, 0x2222, 3, b"lo"),
        "echo_from_off_subnet": echo_frame("192.0.2.1", STACK_IP, 0x2222, 4, b"far"),
        "arp_conflict": ether(
            BROADCAST_MAC, OTHER_MAC, ETH_ARP, arp(1, OTHER_MAC, STACK_IP, ZERO_MAC, STACK_IP)
        ),
        "arp_from_multicast_mac": ether(
            BROADCAST_MAC,
            MULTICAST_MAC,
            ETH_ARP,
            arp(1, MULTICAST_MAC, PEER_IP, ZERO_MAC, STACK_IP),
        ),
    }
    for i, fragment in enumerate(fragment_frames(b"F" * 100 + bytes(range(256)), 0x5A5A, 64)):
        corpus[f"fragment_{i}"] = fragment
    return corpus


def fragment_frames(payload: bytes, ident: int, size: int) -> list[bytes]:
    """A UDP datagram to UDP_PORT cut into fragments of ``size`` bytes (a multiple of 8)."""
    body = udp(PEER_IP, STACK_IP, 40000, UDP_PORT, payload)
    frames = []
    for start in range(0, len(body), size):
        more = start + size < len(body)
        packet = ipv4(
            PEER_IP,
            STACK_IP,
            PROTO_UDP,
            body[start : start + size],
            ident=ident,
            mf=more,
            offset=start,
        )
        frames.append(_ip_frame(packet))
    return frames


CORPUS = build_corpus()
NAMES = sorted(CORPUS)


# ---------------------------------------------------------------- the target and its checks


@dataclass
class Target:
    stack: Stack
    peer: RawPeer
    sock: Socket
    pings: int = 0

    async def check(self) -> None:
        """Wait until every frame is processed; assert the invariants and liveness."""
        stack = self.stack
        await eventually(
            lambda: not unaccounted(self),
            what=lambda: "every frame accounted for: " + "; ".join(unaccounted(self)),
        )
        drops = stack.statistics()["drops"]
        errors = {k: v for k, v in drops.items() if k.endswith("internal_error")}
        assert not errors, errors
        alive = {t.get_name() for t in asyncio.all_tasks() if not t.done()}
        name = stack.device.name
        for layer in ("link-rx", "link-tx", "ip", "transport", "timer"):
            assert f"{name}:{layer}" in alive, f"the {layer} task died"
        assert stack.running and not self.peer.stack_port.closed
        while True:  # keep the socket's queue short
            try:
                await self.sock.recv(65535)
            except BlockingIOError:
                break
        await self.answers_ping()

    async def answers_ping(self) -> None:
        self.pings += 1
        sequence = self.pings & 0xFFFF
        peer = self.peer
        since = peer.mark()
        peer.send(echo_frame(PEER_IP, STACK_IP, 0xACE, sequence, b"still alive?"))

        def is_answer(frame: bytes) -> bool:
            if not is_icmp(frame, ICMP_ECHO_REPLY):
                return False
            packet = ip_of(frame)
            return packet.src == STACK_IP and packet.payload[4:8] == struct.pack(
                "!HH", 0xACE, sequence
            )

        reply = await peer.expect(is_answer, since=since, what="the echo reply")
        assert ip_of(reply).payload[8:] == b"still alive?"
        peer.answer_echo = True
        assert await self.stack.ping(PEER_IP, timeout=TIMEOUT) >= 0
        peer.answer_echo = False


def unaccounted(target: Target) -> list[str]:
    """The accounting equations that do not hold (yet); see the module docstring."""
    stack, peer = target.stack, target.peer
    stats = stack.statistics()
    mib, drops, device = stats["mib"], stats["drops"], stats["device"]

    def dropped(prefix: str) -> int:
        return sum(v for k, v in drops.items() if k.startswith(prefix))

    problems = []
    offered = peer.device.stats.tx_frames + peer.injected
    taken = device["rx_frames"] + device["drops"].get("rx_queue_full", 0)
    if taken != offered:
        problems.append(f"device took {taken} of {offered} frames")
    link = (
        dropped("ethernet.")
        + dropped("virtio.")
        + dropped("arp.")
        - drops.get("arp.bad_sender_mac", 0)
        + mib["ArpInRequests"]
        + mib["ArpInReplies"]
        + mib["IpInReceives"]
        + drops.get("queue.ip_in_full", 0)
    )
    if link != device["rx_frames"]:
        problems.append(f"link layer accounts for {link} of {device['rx_frames']} frames")
    before_reassembly = (
        dropped("ipv4.") - dropped("ipv4.reassembly_") - drops.get("ipv4.unknown_protocol", 0)
    )
    ip = (
        before_reassembly
        + mib["IpReasmReqds"]
        + mib["IpInDelivers"]
        + mib["IpInUnknownProtos"]
        - mib["IpReasmOKs"]
    )
    if ip != mib["IpInReceives"]:
        problems.append(f"IP accounts for {ip} of {mib['IpInReceives']} packets")
    transport = (
        mib["IcmpInMsgs"]
        + mib["UdpInDatagrams"]
        + mib["UdpNoPorts"]
        + mib["UdpInErrors"]
        + mib["TcpInSegs"]
        + mib["TcpInErrs"]
        + drops.get("tcp.broadcast", 0)
    )
    if transport != mib["IpInDelivers"]:
        problems.append(f"ICMP, UDP and TCP account for {transport} of {mib['IpInDelivers']}")
    if dropped("queue."):
        problems.append(f"queue drops: { {k: v for k, v in drops.items() if 'queue.' in k} }")
    return problems


@pytest.fixture
async def target() -> AsyncIterator[Target]:
    async with stack_and_peer(settings=fast_arp()) as (stack, peer):
        sock = stack.socket(AF_INET, SOCK_DGRAM)
        sock.bind(("", UDP_PORT))
        sock.setblocking(False)
        yield Target(stack, peer, sock)


# ---------------------------------------------------------------- exhaustive sweeps


async def test_corpus_is_accepted_and_accounted(target: Target) -> None:
    target.peer.inject([CORPUS[name] for name in NAMES])
    await target.check()
    mib = target.stack.statistics()["mib"]
    # The corpus reached every layer: a sanity check on the corpus itself.
    assert mib["UdpInDatagrams"] > 5 and mib["UdpNoPorts"] >= 1
    assert mib["IpReasmOKs"] == 1 and mib["IcmpInEchos"] >= 2
    assert mib["TcpInSegs"] + mib["TcpInErrs"] == 1 and mib["ArpInRequests"] >= 3


async def test_every_truncation_of_every_corpus_frame(target: Target) -> None:
    for name in NAMES:
        frame = CORPUS[name]
        target.peer.inject([frame[:cut] for cut in range(len(frame))])
        await target.check()
    drops = target.stack.statistics()["drops"]
    # Cuts 0..13 leave less than an Ethernet header (plus a cut VLAN tag).
    assert drops["ethernet.truncated"] >= 14 * len(NAMES)
    assert drops["ipv4.truncated"] > 0 and drops["arp.truncated"] > 0


@pytest.mark.parametrize("fix", [False, True], ids=["raw", "checksums-fixed"])
async def test_every_single_bit_flip_of_every_corpus_frame(target: Target, fix: bool) -> None:
    for name in NAMES:
        frame = CORPUS[name]
        flipped = []
        for bit in range(min(len(frame), 80) * 8):
            mutated = bytearray(frame)
            mutated[bit >> 3] ^= 0x80 >> (bit & 7)
            flipped.append(fix_checksums(bytes(mutated)) if fix else bytes(mutated))
        target.peer.inject(flipped)
        await target.check()


# ---------------------------------------------------------------- hypothesis


IPV4_FIELDS = [(0, 1), (1, 1), (2, 2), (4, 2), (6, 2), (8, 1), (9, 1), (12, 4), (16, 4)]
TRANSPORT_FIELDS = [(0, 1), (1, 1), (0, 2), (2, 2), (4, 2), (4, 4), (6, 2)]
ARP_FIELDS = [(0, 2), (2, 2), (4, 1), (5, 1), (6, 2), (8, 6), (14, 4), (24, 4)]


def _poke(frame: bytearray, offset: int, size: int, value: int) -> None:
    if offset + size <= len(frame):
        frame[offset : offset + size] = (value % (1 << (8 * size))).to_bytes(size, "big")


def _interesting(size: int) -> st.SearchStrategy[int]:
    top = (1 << (8 * size)) - 1
    return st.one_of(
        st.sampled_from([0, 1, 7, 8, 20, 24, 28, 60, 64, 576, 1480, 1500, 65535, top]),
        st.integers(0, top),
    )


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A corpus frame, damaged in one of several ways."""
    frame = bytearray(CORPUS[draw(st.sampled_from(NAMES))])
    how = draw(st.sampled_from(["truncate", "flip", "bytes", "ip", "transport", "arp", "extend"]))
    if how == "truncate":
        del frame[draw(st.integers(0, len(frame))) :]
    elif how == "flip":
        for bit in draw(st.lists(st.integers(0, len(frame) * 8 - 1), min_size=1, max_size=8)):
            frame[bit >> 3] ^= 0x80 >> (bit & 7)
    elif how == "bytes":
        for _ in range(draw(st.integers(1, 4))):
            frame[draw(st.integers(0, len(frame) - 1))] = draw(st.integers(0, 255))
    elif how == "ip":
        offset, size = draw(st.sampled_from(IPV4_FIELDS))
        _poke(frame, 14 + offset, size, draw(_interesting(size)))
    elif how == "transport":
        offset, size = draw(st.sampled_from(TRANSPORT_FIELDS))
        ihl = (frame[14] & 0xF) * 4 if len(frame) > 14 else 20
        _poke(frame, 14 + ihl + offset, size, draw(_interesting(size)))
    elif how == "arp":
        offset, size = draw(st.sampled_from(ARP_FIELDS))
        _poke(frame, 14 + offset, size, draw(_interesting(size)))
    else:
        frame += draw(st.binary(min_size=1, max_size=64))
    if draw(st.booleans()):
        return fix_checksums(bytes(frame))
    return bytes(frame)


@st.composite
def with_options(draw: st.DrawFn) -> bytes:
    """A UDP or ICMP packet carrying arbitrary IP option bytes."""
    options = draw(st.binary(max_size=40))
    if draw(st.booleans()):
        packet = _udp_packet(UDP_PORT, b"options", options=options)
    else:
        packet = ipv4(PEER_IP, STACK_IP, PROTO_ICMP, echo(1, 1, b"o"), options=options)
    return _ip_frame(packet)


@st.composite
def random_frame(draw: st.DrawFn) -> bytes:
    dst = draw(st.sampled_from([MAC_B, BROADCAST_MAC, MULTICAST_MAC, OTHER_MAC]))
    ethertype = draw(st.sampled_from([ETH_IPV4, ETH_ARP, 0x8100, 0x86DD, 0x88CC]))
    payload = draw(st.binary(max_size=200))
    if ethertype == ETH_IPV4 and payload and draw(st.booleans()):
        payload = bytes([0x45]) + payload[1:]  # look like IPv4 at first glance
    return ether(dst, PEER_MAC, ethertype, payload)


@st.composite
def oversize(draw: st.DrawFn) -> bytes:
    """A frame beyond the MTU, as a misbehaving NIC might hand over."""
    size = draw(st.integers(1501, 9000))
    return _ip_frame(_udp_packet(UDP_PORT, bytes(size - 28)))


@st.composite
def fragment_set(draw: st.DrawFn) -> list[bytes]:
    """Fragments of one datagram: reordered, repeated, overlapping, lost, or bogus."""
    size = draw(st.integers(1, 3000))
    piece = max(draw(st.sampled_from([8, 16, 64, 512, 1480])), (size // 32 + 8) & ~7)
    rng = random.Random(draw(st.integers(0, 2**32)))
    # A drawn identification often repeats across examples, so fragments
    # meet leftovers of earlier datagrams; a random one starts afresh.
    ident = draw(st.integers(0, 0xFFFF)) if draw(st.booleans()) else rng.randrange(0x10000)
    frames = fragment_frames(bytes(size), ident, piece)
    ops = draw(
        st.lists(st.sampled_from(["shuffle", "dup", "lose", "overlap", "mutate"]), max_size=3)
    )
    for op in ops:
        if op == "shuffle":
            rng.shuffle(frames)
        elif op == "dup" and frames:
            frames.append(rng.choice(frames))
        elif op == "lose" and len(frames) > 1:
            frames.pop(rng.randrange(len(frames)))
        elif op == "overlap" and frames:
            i = rng.randrange(len(frames))
            raw = bytearray(frames[i])
            frag = struct.unpack_from("!H", raw, 20)[0]
            offset = (frag & 0x1FFF) + rng.choice([-1, 1, 2])
            struct.pack_into("!H", raw, 20, (frag & 0xE000) | (offset & 0x1FFF))
            frames[i] = fix_checksums(bytes(raw))
        elif op == "mutate" and frames:
            i = rng.randrange(len(frames))
            raw = bytearray(frames[i])
            raw[rng.randrange(14, len(raw))] ^= 1 << rng.randrange(8)
            frames[i] = fix_checksums(bytes(raw))
    return frames


BATCHES: st.SearchStrategy[list[bytes]] = st.one_of(
    st.lists(
        st.one_of(
            mutated(),
            with_options(),
            random_frame(),
            oversize(),
            st.sampled_from(NAMES).map(CORPUS.__getitem__),
        ),
        min_size=1,
        max_size=8,
    ),
    fragment_set(),
)


@settings(
    max_examples=500,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(batch=BATCHES)
async def test_fuzzed_frames_never_break_the_stack(target: Target, batch: list[bytes]) -> None:
    target.peer.inject(batch)
    await target.check()


async def test_reassembly_still_completes_after_fuzzed_fragments(target: Target) -> None:
    # Junk fragments first (some share the identification used below).
    junk = fragment_frames(bytes(700), 0x7777, 64)[1:]
    junk += fragment_frames(bytes(300), 0x7778, 8)[:-1]
    target.peer.inject(junk)
    await target.check()
    # A well-formed, shuffled fragmented datagram still arrives whole.
    payload = bytes(range(256)) * 10
    frames = fragment_frames(payload, 0x7779, 512)
    random.Random(5).shuffle(frames)
    target.peer.inject(frames)
    target.sock.settimeout(TIMEOUT)
    assert await target.sock.recv(65535) == payload
    target.sock.setblocking(False)
    await target.check()
