"""Frame builders and waiting helpers shared by the link-layer tests."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable

from aiostack.link.base import NetDevice
from aiostack.wire import arp, ethernet, icmpv4, ipv4, udp, virtio
from aiostack.wire.checksum import pseudo_header_sum

TIMEOUT = 10.0

MAC_A = bytes.fromhex("02aa00000001")
MAC_B = bytes.fromhex("02bb00000002")
MAC_C = bytes.fromhex("02cc00000003")


def frame(dst: bytes, src: bytes, payload: bytes = b"", ethertype: int = 0x88B5) -> bytes:
    """A minimal Ethernet frame (0x88B5 is the IEEE local experimental EtherType)."""
    buf = bytearray(ethernet.HEADER_LEN + len(payload))
    ethernet.emit_into(buf, 0, dst, src, ethertype)
    buf[ethernet.HEADER_LEN :] = payload
    return bytes(buf)


def numbered(i: int, size: int = 60, src: bytes = MAC_A, dst: bytes = MAC_B) -> bytes:
    """Frame number ``i``: the number sits in the first payload bytes, for order checks."""
    payload = struct.pack("!I", i).ljust(size - ethernet.HEADER_LEN, b"\0")
    return frame(dst, src, payload)


def number_of(data: bytes, offset: int = 0) -> int:
    return int(struct.unpack_from("!I", data, offset + ethernet.HEADER_LEN)[0])


def arp_packet(
    op: int, sender_mac: bytes, sender_ip: str, target_mac: bytes, target_ip: str, dst: bytes
) -> bytes:
    buf = bytearray(ethernet.HEADER_LEN + arp.PACKET_LEN)
    ethernet.emit_into(buf, 0, dst, sender_mac, ethernet.EtherType.ARP)
    arp.emit_into(
        buf,
        ethernet.HEADER_LEN,
        arp.ArpPacket(op, sender_mac, ipv4.addr(sender_ip), target_mac, ipv4.addr(target_ip)),
    )
    return bytes(buf)


def udp_frame(
    *,
    dst_mac: bytes,
    src_mac: bytes,
    src: str,
    dst: str,
    sport: int,
    dport: int,
    payload: bytes,
    vnet: str | None = None,
) -> bytes:
    """An Ethernet/IPv4/UDP frame.

    ``vnet`` None: no virtio header, full checksum. "none": a zero virtio
    header and a full checksum. "partial": NEEDS_CSUM with the pseudo-header
    seed in the field (the correct form). "zero": NEEDS_CSUM with 0 in the
    field (the kernel completes a checksum that lacks the pseudo-header).
    """
    hdr = 0 if vnet is None else virtio.HEADER_LEN
    ulen = udp.HEADER_LEN + len(payload)
    buf = bytearray(hdr + ethernet.HEADER_LEN + ipv4.MIN_HEADER_LEN + ulen)
    l3 = hdr + ethernet.HEADER_LEN
    l4 = l3 + ipv4.MIN_HEADER_LEN
    s, d = ipv4.addr(src), ipv4.addr(dst)
    ethernet.emit_into(buf, hdr, dst_mac, src_mac, ethernet.EtherType.IPV4)
    ipv4.emit_into(buf, l3, src=s, dst=d, proto=udp.PROTO, payload_len=ulen)
    buf[l4 + udp.HEADER_LEN :] = payload
    full = vnet in (None, "none")
    udp.emit_into(
        buf,
        l4,
        src_port=sport,
        dst_port=dport,
        payload_len=len(payload),
        src=s,
        dst=d,
        checksum=full,
    )
    if vnet in ("partial", "zero"):
        virtio.emit_into(
            buf,
            0,
            flags=virtio.F_NEEDS_CSUM,
            csum_start=ethernet.HEADER_LEN + ipv4.MIN_HEADER_LEN,
            csum_offset=virtio.CSUM_OFFSET_UDP,
        )
        seed = pseudo_header_sum(s, d, udp.PROTO, ulen) if vnet == "partial" else 0
        struct.pack_into("!H", buf, l4 + 6, seed)
    return bytes(buf)


def icmp_echo_reply(request: bytes, my_mac: bytes) -> bytes | None:
    """Answer an Ethernet/IPv4/ICMP echo request frame, or None if it is not one."""
    eth, payload = ethernet.parse(request)
    if eth.ethertype != ethernet.EtherType.IPV4:
        return None
    ip, body = ipv4.parse(payload)
    if ip.proto != icmpv4.PROTO:
        return None
    icmp, data = icmpv4.parse(body)
    if icmp.type != icmpv4.IcmpType.ECHO_REQUEST:
        return None
    total = icmpv4.HEADER_LEN + len(data)
    buf = bytearray(ethernet.HEADER_LEN + ipv4.MIN_HEADER_LEN + total)
    ethernet.emit_into(buf, 0, eth.src, my_mac, ethernet.EtherType.IPV4)
    ipv4.emit_into(buf, 14, src=ip.dst, dst=ip.src, proto=icmpv4.PROTO, payload_len=total)
    start = 14 + ipv4.MIN_HEADER_LEN
    buf[start + icmpv4.HEADER_LEN :] = data
    icmpv4.emit_into(
        buf, start, type=icmpv4.IcmpType.ECHO_REPLY, code=0, rest=icmp.rest, body_len=len(data)
    )
    return bytes(buf)


async def recv_all(device: NetDevice, count: int, timeout: float = TIMEOUT) -> list[bytes]:
    """Receive until ``count`` frames arrived (batches concatenated)."""
    got: list[bytes] = []

    async def loop() -> None:
        while len(got) < count:
            got.extend(await device.recv_batch())

    await asyncio.wait_for(loop(), timeout)
    return got


async def recv_until(
    device: NetDevice, match: Callable[[bytes], bool], timeout: float = TIMEOUT
) -> bytes:
    """Receive until a frame satisfies ``match``; return it (others are dropped)."""

    async def loop() -> bytes:
        while True:
            for data in await device.recv_batch():
                if match(data):
                    return data

    return await asyncio.wait_for(loop(), timeout)
