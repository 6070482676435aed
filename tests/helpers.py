"""Helpers for whole-stack tests: stacks on in-memory wires, a hand-driven peer, frames.

Frames are built and parsed here with ``struct`` and a local RFC 1071
checksum, independently of :mod:`aiostack.wire`, so that a codec bug cannot
hide by sitting on both sides of a test.

Waiting is always on a condition with a deadline (:func:`eventually`,
:meth:`RawPeer.expect`), never a bare sleep: the stacks run as tasks of the
test's own event loop and finish a batch in well under a millisecond, so a
condition that is still false after :data:`TIMEOUT` seconds is a failure.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass

from aiostack.link.base import DeviceClosed
from aiostack.link.memory import MemoryWire, QueuePort
from aiostack.settings import Settings
from aiostack.stack.stack import Stack

#: Deadline for anything a test waits on.
TIMEOUT = 10.0

PREFIX = 24
A_IP = "198.18.0.1"
B_IP = "198.18.0.2"
C_IP = "198.18.0.3"
#: On the subnet, but nobody has it.
ABSENT_IP = "198.18.0.77"
SUBNET_BROADCAST = "198.18.0.255"
#: Locally administered unicast MACs for the stacks and the hand-driven peer.
MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")
MAC_C = bytes.fromhex("020000000003")
PEER_MAC = bytes.fromhex("0200000000fe")
BROADCAST_MAC = b"\xff" * 6

ETH_IPV4 = 0x0800
ETH_ARP = 0x0806
PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
ICMP_ECHO_REPLY = 0
ICMP_DEST_UNREACH = 3
ICMP_ECHO_REQUEST = 8


def fast_arp(**overrides: int) -> Settings:
    """Settings whose ARP resolution gives up in 3 x 20 ms instead of 3 x 1 s."""
    settings = Settings(retrans_time_ms=20, mcast_solicit=3)
    for name, value in overrides.items():
        settings.set(name, value)
    return settings


async def eventually(
    predicate: Callable[[], bool],
    *,
    timeout: float = TIMEOUT,
    what: str | Callable[[], str] = "condition",
) -> None:
    """Wait until ``predicate()`` holds; fail the test after ``timeout`` seconds.

    The stacks are tasks of this loop: yielding lets them run. The first
    rounds yield without sleeping (most conditions hold after one or two
    layer hops); later rounds sleep a millisecond so that timers can fire.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    rounds = 0
    while not predicate():
        if loop.time() > deadline:
            text = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout} s waiting for {text}")
        rounds += 1
        await asyncio.sleep(0 if rounds < 50 else 0.001)


@asynccontextmanager
async def wired_stacks(
    *,
    mtu: int = 1500,
    settings: Sequence[Settings | None] = (None, None),
    privileged: bool | None = None,
    queue_limit: int = 4096,
) -> AsyncIterator[tuple[Stack, Stack]]:
    """Two running stacks, A_IP/24 and B_IP/24, on the two ends of one MemoryWire."""
    a, b = MemoryWire.pair(mtu=mtu, names=("wireA", "wireB"))
    async with (
        Stack(
            a,
            address=f"{A_IP}/{PREFIX}",
            mac=MAC_A,
            settings=settings[0],
            seed=1,
            privileged=privileged,
            queue_limit=queue_limit,
        ) as sa,
        Stack(
            b,
            address=f"{B_IP}/{PREFIX}",
            mac=MAC_B,
            settings=settings[1],
            seed=2,
            privileged=privileged,
            queue_limit=queue_limit,
        ) as sb,
    ):
        yield sa, sb


@asynccontextmanager
async def stack_and_peer(
    *,
    mtu: int = 1500,
    settings: Settings | None = None,
    privileged: bool | None = None,
    queue_limit: int = 4096,
) -> AsyncIterator[tuple[Stack, RawPeer]]:
    """A running stack at B_IP whose wire's other end is driven by hand as A_IP."""
    a, b = MemoryWire.pair(mtu=mtu, names=("peer", "stack"))
    async with (
        Stack(
            b,
            address=f"{B_IP}/{PREFIX}",
            mac=MAC_B,
            settings=settings,
            seed=2,
            privileged=privileged,
            queue_limit=queue_limit,
        ) as stack,
        RawPeer(a, b, PEER_MAC, A_IP) as peer,
    ):
        yield stack, peer


# ---------------------------------------------------------------- the hand-driven peer


class RawPeer:
    """The far end of a wire, driven by the test: send raw frames, watch what comes back.

    A reader task collects every frame the stack sends into :attr:`frames`
    and answers ARP requests for the peer's own address (so the stack can
    reply to it), like a minimal host; with :attr:`answer_echo` it answers
    pings too. ``stack_port`` is the stack's end of
    the wire: :meth:`inject` hands frames straight to it, bypassing the
    sending end's MTU and runt checks, as a misbehaving NIC might.
    """

    def __init__(self, device: QueuePort, stack_port: QueuePort, mac: bytes, ip: str) -> None:
        self.device = device
        self.stack_port = stack_port
        self.mac = mac
        self.ip = ip
        self.frames: list[bytes] = []
        #: Frames given to the stack through :meth:`inject`.
        self.injected = 0
        self.answer_arp = True
        #: Also answer echo requests for :attr:`ip`, like a host would.
        self.answer_echo = False
        self._arrived = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> RawPeer:
        await self.device.open()
        self._reader = asyncio.create_task(self._read(), name=f"rawpeer:{self.device.name}")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        reader = self._reader
        if reader is not None:
            reader.cancel()
            with suppress(asyncio.CancelledError):
                await reader
        await self.device.aclose()

    async def _read(self) -> None:
        while True:
            try:
                batch = await self.device.recv_batch()
            except DeviceClosed:
                return
            for frame in batch:
                self.frames.append(frame)
                if self.answer_arp:
                    self._maybe_answer_arp(frame)
                if (
                    self.answer_echo
                    and is_icmp(frame, ICMP_ECHO_REQUEST)
                    and ip_of(frame).dst == self.ip
                ):
                    self.send(echo_reply_for(frame))
            self._arrived.set()

    def _maybe_answer_arp(self, frame: bytes) -> None:
        if len(frame) < 42 or frame[12:14] != b"\x08\x06":
            return
        request = parse_arp(frame[14:])
        if request.op == 1 and request.tpa == self.ip:
            reply = arp(2, self.mac, self.ip, request.sha, request.spa)
            self.send(ether(request.sha, self.mac, ETH_ARP, reply))

    def send(self, *frames: bytes) -> None:
        """Send frames from the peer's end, as one batch (the wire's checks apply)."""
        self.device.send_batch(list(frames))

    def inject(self, frames: Sequence[bytes]) -> None:
        """Queue frames straight into the stack's device, whatever their size."""
        self.injected += len(frames)
        self.stack_port.deliver(list(frames))

    def mark(self) -> int:
        """Position in :attr:`frames`: pass to :meth:`expect` to look only at later frames."""
        return len(self.frames)

    async def expect(
        self,
        predicate: Callable[[bytes], bool],
        *,
        since: int = 0,
        timeout: float = TIMEOUT,
        what: str = "a frame",
    ) -> bytes:
        """The first frame at or after ``since`` that satisfies ``predicate``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        index = since
        while True:
            while index < len(self.frames):
                frame = self.frames[index]
                index += 1
                if predicate(frame):
                    return frame
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            self._arrived.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._arrived.wait()
            except TimeoutError:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}") from None

    def sent_by_stack(self, predicate: Callable[[bytes], bool], since: int = 0) -> list[bytes]:
        return [f for f in self.frames[since:] if predicate(f)]


# ---------------------------------------------------------------- checksums and addresses


def checksum(data: bytes, initial: int = 0) -> int:
    """RFC 1071 Internet checksum (the value to store in the field)."""
    if len(data) & 1:
        data += b"\0"
    words: tuple[int, ...] = struct.unpack(f"!{len(data) // 2}H", data)
    total = initial + sum(words)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ip_bytes(text: str) -> bytes:
    return socket.inet_aton(text)


def ip_text(raw: bytes) -> str:
    return socket.inet_ntoa(raw)


def _pseudo_sum(src: bytes, dst: bytes, proto: int, length: int) -> int:
    words: tuple[int, ...] = struct.unpack("!4H", src + dst)
    return sum(words) + proto + length


# ---------------------------------------------------------------- builders


def ether(dst: bytes, src: bytes, ethertype: int, payload: bytes) -> bytes:
    return dst + src + struct.pack("!H", ethertype) + payload


def arp(
    op: int,
    sha: bytes,
    spa: str,
    tha: bytes,
    tpa: str,
    *,
    htype: int = 1,
    ptype: int = ETH_IPV4,
    hlen: int = 6,
    plen: int = 4,
) -> bytes:
    header = struct.pack("!HHBBH", htype, ptype, hlen, plen, op)
    return header + sha + ip_bytes(spa) + tha + ip_bytes(tpa)


def ipv4(
    src: str,
    dst: str,
    proto: int,
    payload: bytes,
    *,
    ttl: int = 64,
    tos: int = 0,
    ident: int = 0,
    df: bool = False,
    mf: bool = False,
    offset: int = 0,
    options: bytes = b"",
    total_length: int | None = None,
    ihl: int | None = None,
    version: int = 4,
    header_checksum: int | None = None,
) -> bytes:
    """An IPv4 packet; ``offset`` is in bytes (a multiple of 8)."""
    options = options + b"\0" * (-len(options) % 4)
    hlen = 20 + len(options)
    words = hlen // 4 if ihl is None else ihl
    total = hlen + len(payload) if total_length is None else total_length
    frag = (0x4000 if df else 0) | (0x2000 if mf else 0) | (offset >> 3)
    header = bytearray(
        struct.pack(
            "!BBHHHBBH4s4s",
            (version << 4) | words,
            tos,
            total,
            ident,
            frag,
            ttl,
            proto,
            0,
            ip_bytes(src),
            ip_bytes(dst),
        )
        + options
    )
    value = checksum(bytes(header)) if header_checksum is None else header_checksum
    struct.pack_into("!H", header, 10, value)
    return bytes(header) + payload


def icmp(icmp_type: int, code: int, rest: int, body: bytes, *, valid: bool = True) -> bytes:
    message = bytearray(struct.pack("!BBHI", icmp_type, code, 0, rest) + body)
    value = checksum(bytes(message)) if valid else 0x1234
    struct.pack_into("!H", message, 2, value)
    return bytes(message)


def echo(ident: int, sequence: int, data: bytes, *, reply: bool = False) -> bytes:
    kind = ICMP_ECHO_REPLY if reply else ICMP_ECHO_REQUEST
    return icmp(kind, 0, (ident << 16) | sequence, data)


def udp(
    src: str,
    dst: str,
    sport: int,
    dport: int,
    payload: bytes,
    *,
    length: int | None = None,
    udp_checksum: int | None = None,
) -> bytes:
    """A UDP datagram with a correct checksum unless ``udp_checksum`` overrides it."""
    size = 8 + len(payload) if length is None else length
    datagram = bytearray(struct.pack("!HHHH", sport, dport, size, 0) + payload)
    if udp_checksum is None:
        true_len = 8 + len(payload)
        value = checksum(
            bytes(datagram), _pseudo_sum(ip_bytes(src), ip_bytes(dst), PROTO_UDP, true_len)
        )
        value = value or 0xFFFF
    else:
        value = udp_checksum
    struct.pack_into("!H", datagram, 6, value)
    return bytes(datagram)


def udp_frame(
    src: str, dst: str, sport: int, dport: int, payload: bytes, *, dst_mac: bytes = MAC_B
) -> bytes:
    """A complete Ethernet/IPv4/UDP frame from the peer."""
    return ether(
        dst_mac,
        PEER_MAC,
        ETH_IPV4,
        ipv4(src, dst, PROTO_UDP, udp(src, dst, sport, dport, payload)),
    )


def echo_frame(
    src: str, dst: str, ident: int, sequence: int, data: bytes, *, dst_mac: bytes = MAC_B
) -> bytes:
    return ether(
        dst_mac, PEER_MAC, ETH_IPV4, ipv4(src, dst, PROTO_ICMP, echo(ident, sequence, data))
    )


def fix_checksums(frame: bytes) -> bytes:
    """Recompute the IPv4 header checksum and the ICMP/UDP checksum where lengths allow.

    Used after mutating a frame so that the damage reaches the layers past
    the checksums. Anything too broken to locate is returned unchanged.
    """
    if len(frame) < 34 or frame[12:14] != b"\x08\x00":
        return frame
    buf = bytearray(frame)
    ihl = (buf[14] & 0x0F) * 4
    if ihl < 20 or 14 + ihl > len(buf):
        return frame
    buf[24:26] = b"\0\0"
    struct.pack_into("!H", buf, 24, checksum(bytes(buf[14 : 14 + ihl])))
    total = min(struct.unpack_from("!H", buf, 16)[0], len(buf) - 14)
    frag = struct.unpack_from("!H", buf, 20)[0]
    if frag & 0x3FFF or total <= ihl:
        return bytes(buf)
    start, end = 14 + ihl, 14 + total
    proto = buf[23]
    if proto == PROTO_ICMP and end - start >= 8:
        buf[start + 2 : start + 4] = b"\0\0"
        struct.pack_into("!H", buf, start + 2, checksum(bytes(buf[start:end])))
    elif proto == PROTO_UDP and end - start >= 8:
        length = struct.unpack_from("!H", buf, start + 4)[0]
        if 8 <= length <= end - start:
            buf[start + 6 : start + 8] = b"\0\0"
            pseudo = _pseudo_sum(bytes(buf[26:30]), bytes(buf[30:34]), PROTO_UDP, length)
            value = checksum(bytes(buf[start : start + length]), pseudo) or 0xFFFF
            struct.pack_into("!H", buf, start + 6, value)
    return bytes(buf)


# ---------------------------------------------------------------- parsers for what stacks send


@dataclass(frozen=True, slots=True)
class ArpView:
    op: int
    sha: bytes
    spa: str
    tha: bytes
    tpa: str


@dataclass(frozen=True, slots=True)
class IpView:
    src: str
    dst: str
    proto: int
    ident: int
    df: bool
    mf: bool
    offset: int
    ttl: int
    tos: int
    payload: bytes


def parse_arp(data: bytes) -> ArpView:
    _htype, _ptype, _hlen, _plen, op = struct.unpack_from("!HHBBH", data, 0)
    return ArpView(op, data[8:14], ip_text(data[14:18]), data[18:24], ip_text(data[24:28]))


def parse_ipv4(data: bytes) -> IpView:
    """Parse an IPv4 packet the stack sent, asserting that its header is valid."""
    ihl = (data[0] & 0x0F) * 4
    assert data[0] >> 4 == 4 and ihl >= 20, data[:20].hex()
    assert checksum(data[:ihl]) == 0, "bad IPv4 header checksum from the stack"
    total, ident, frag, ttl, proto = struct.unpack_from("!HHHBB", data, 2)
    return IpView(
        ip_text(data[12:16]),
        ip_text(data[16:20]),
        proto,
        ident,
        bool(frag & 0x4000),
        bool(frag & 0x2000),
        (frag & 0x1FFF) << 3,
        ttl,
        data[1],
        data[ihl:total],
    )


def is_arp(frame: bytes) -> bool:
    return len(frame) >= 42 and frame[12:14] == b"\x08\x06"


def is_ipv4(frame: bytes) -> bool:
    return len(frame) >= 34 and frame[12:14] == b"\x08\x00"


def ip_of(frame: bytes) -> IpView:
    return parse_ipv4(frame[14:])


def is_icmp(frame: bytes, icmp_type: int, code: int | None = None) -> bool:
    if not is_ipv4(frame):
        return False
    packet = ip_of(frame)
    if packet.proto != PROTO_ICMP or packet.offset or len(packet.payload) < 8:
        return False
    return packet.payload[0] == icmp_type and (code is None or packet.payload[1] == code)


def echo_reply_for(request: bytes) -> bytes:
    """The peer's echo reply frame to an echo request frame the stack sent."""
    packet = ip_of(request)
    message = packet.payload
    ident = int.from_bytes(message[4:6], "big")
    sequence = int.from_bytes(message[6:8], "big")
    reply = echo(ident, sequence, message[8:], reply=True)
    return ether(request[6:12], request[:6], ETH_IPV4, ipv4(packet.dst, packet.src, 1, reply))
