"""The ceilings: the least a Python program on a TAP can do for TCP bulk and for ping.

These are not stacks. :func:`bare_tcp_receiver` accepts one TCP connection
at a time and only acknowledges what arrives in order: no retransmission,
no reassembly, no timers, no checksum verification, a fixed 8 MiB window
(65535 << 7), one cumulative ACK per batch of frames read. Whatever it
reaches is the upper bound for any Python TCP receiver on the same TAP,
since every real stack does at least this much per frame
(``ref/performance-facts.md``: about 378 MB/s at MTU 1500). With offloads
the kernel hands it TCP super-frames of up to 64 KiB and vouches for their
checksums.

:func:`bare_ping_responder` turns every ICMP echo request around in place
(addresses swapped, type 8 -> 0, checksum patched): the floor for the
latency of anything that answers on a TAP.

Both rely on the kernel having a static ARP entry for the TAP's far end
(``tap_in_netns(static_neighbor=True)``), so neither answers ARP.
"""

from __future__ import annotations

import asyncio
import struct
import time

from aiostack.link.tap import TapDevice

_ETH = struct.Struct("!6s6sH")
_TCP_PORTS = struct.Struct("!HHII")
_WSCALE = 7


def _fold(total: int) -> int:
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def _checksum(data: bytes | bytearray, initial: int = 0) -> int:
    if len(data) % 2:
        data = bytes(data) + b"\0"
    total = initial + int.from_bytes(data, "big") % 0xFFFF
    value = ~_fold(total) & 0xFFFF
    return value


class _Conn:
    """The one connection the bare receiver follows."""

    __slots__ = ("fin", "ip_id", "peer", "rcv_nxt", "received", "snd_nxt", "start")

    def __init__(self, peer: tuple[bytes, int], irs: int) -> None:
        self.peer = peer
        self.rcv_nxt = (irs + 1) & 0xFFFFFFFF
        self.snd_nxt = 1000
        self.received = 0
        self.start = time.monotonic()
        self.fin = False
        self.ip_id = 0


def _segment(
    frame: bytes,
    o: int,
    conn: _Conn,
    flags: int,
    options: bytes = b"",
) -> bytearray:
    """A reply to ``frame`` (addresses swapped) carrying ``flags`` and ``conn``'s numbers."""
    ip = o + 14
    ihl = (frame[ip] & 0x0F) * 4
    src_ip, dst_ip = frame[ip + 12 : ip + 16], frame[ip + 16 : ip + 20]
    src_port, dst_port = struct.unpack_from("!HH", frame, ip + ihl)
    tcp_len = 20 + len(options)
    out = bytearray(o + 14 + 20 + tcp_len)
    _ETH.pack_into(out, o, frame[o + 6 : o + 12], frame[o : o + 6], 0x0800)
    conn.ip_id = (conn.ip_id + 1) & 0xFFFF
    iph = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + tcp_len, conn.ip_id, 0x4000, 64, 6, 0, dst_ip, src_ip
    )
    out[o + 14 : o + 34] = iph
    struct.pack_into("!H", out, o + 24, _checksum(iph))
    window = 0xFFFF
    tcp = bytearray(
        struct.pack(
            "!HHIIBBHHH",
            dst_port,
            src_port,
            conn.snd_nxt,
            conn.rcv_nxt,
            (tcp_len // 4) << 4,
            flags,
            window,
            0,
            0,
        )
        + options
    )
    pseudo = int.from_bytes(dst_ip + src_ip, "big") + 6 + tcp_len
    struct.pack_into("!H", tcp, 16, _checksum(tcp, pseudo))
    out[o + 34 :] = tcp
    return out


async def bare_tcp_receiver(
    device: TapDevice, port: int, connections: int, mss: int
) -> list[dict[str, float]]:
    """Receive ``connections`` TCP connections to ``port`` in turn; bytes and seconds of each."""
    o = 10 if device.vnet_hdr else 0
    results: list[dict[str, float]] = []
    conn: _Conn | None = None
    syn_options = struct.pack("!BBH", 2, 4, mss) + bytes((1, 3, 3, _WSCALE))
    while len(results) < connections:
        frames = await device.recv_batch()
        reply: list[bytearray] = []
        last: bytes | None = None
        for frame in frames:
            ip = o + 14
            if frame[o + 12 : o + 14] != b"\x08\x00" or frame[ip + 9] != 6:
                continue
            ihl = (frame[ip] & 0x0F) * 4
            t = ip + ihl
            _sport, dport, seq, _ack = _TCP_PORTS.unpack_from(frame, t)
            if dport != port:
                continue
            flags = frame[t + 13]
            peer = (frame[ip + 12 : ip + 16], _sport)
            if flags & 0x02:  # SYN: (re)start
                conn = _Conn(peer, seq)
                reply.append(_segment(frame, o, conn, 0x12, syn_options))
                conn.snd_nxt += 1
                continue
            if conn is None or peer != conn.peer or conn.fin:
                continue
            total_len = (frame[ip + 2] << 8) | frame[ip + 3]
            payload = total_len - ihl - (frame[t + 12] >> 4) * 4
            if seq == conn.rcv_nxt:
                if payload:
                    conn.rcv_nxt = (conn.rcv_nxt + payload) & 0xFFFFFFFF
                    conn.received += payload
                if flags & 0x01:  # FIN
                    conn.rcv_nxt = (conn.rcv_nxt + 1) & 0xFFFFFFFF
                    conn.fin = True
                    results.append(
                        {"bytes": conn.received, "seconds": time.monotonic() - conn.start}
                    )
                    reply.append(_segment(frame, o, conn, 0x11))
                    conn.snd_nxt += 1
                    last = None
                    continue
            if payload or flags & 0x01:
                last = frame
        if last is not None and conn is not None:
            reply.append(_segment(last, o, conn, 0x10))
        if reply:
            device.send_batch(reply)
    return results


async def bare_ping_responder(device: TapDevice) -> None:
    """Answer every ICMP echo request on ``device`` until cancelled."""
    o = 10 if device.vnet_hdr else 0
    while True:
        frames = await device.recv_batch()
        replies = []
        for frame in frames:
            ip = o + 14
            if frame[o + 12 : o + 14] != b"\x08\x00" or frame[ip + 9] != 1:
                continue
            icmp = ip + (frame[ip] & 0x0F) * 4
            if frame[icmp] != 8:
                continue
            out = bytearray(frame)
            out[:o] = bytes(o)
            out[o : o + 6], out[o + 6 : o + 12] = frame[o + 6 : o + 12], frame[o : o + 6]
            out[ip + 12 : ip + 16], out[ip + 16 : ip + 20] = (
                frame[ip + 16 : ip + 20],
                frame[ip + 12 : ip + 16],
            )
            out[icmp] = 0
            # Type 8 -> 0 lowers the sum by 0x0800; the one's complement checksum rises by it.
            csum = _fold(((out[icmp + 2] << 8) | out[icmp + 3]) + 0x0800)
            out[icmp + 2], out[icmp + 3] = csum >> 8, csum & 0xFF
            replies.append(out)
        if replies:
            device.send_batch(replies)


async def serve_ping(device: TapDevice, stop: asyncio.Event) -> None:
    """:func:`bare_ping_responder` until ``stop`` is set."""
    task = asyncio.create_task(bare_ping_responder(device))
    try:
        await stop.wait()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
