"""TCP with virtio-net offloads in memory: checksum offload, TSO, super-segments received.

:class:`OffloadPort` plays the kernel's side of a TAP opened with
``IFF_VNET_HDR`` and TSO4, around an in-memory wire. Towards a plain peer
it does what the kernel does with a frame from the TAP: it checks the
virtio header, cuts a TSO super-frame into ``gso_size`` segments (headers
copied, sequence numbers advanced, PSH/FIN on the last only, IP length, id
and checksum redone) and fills every ``NEEDS_CSUM`` checksum, so the peer
stack, which verifies every checksum, is the judge of what aiostack asked
for. Towards a peer that has offloads too it hands the frame over whole, as
the kernel hands a GSO packet to a TAP reader: the peer then receives
64 KB segments through its IP and TCP input.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import struct
from collections.abc import Sequence

from aiostack.link.base import DeviceWrapper, NetDevice
from aiostack.link.memory import MemoryWire
from aiostack.socket import AF_INET, SO_SNDBUF, SOCK_STREAM, SOL_SOCKET
from aiostack.stack.stack import Stack
from aiostack.wire import tcp, virtio
from aiostack.wire.checksum import internet_checksum
from aiostack.wire.types import BytesLike
from tests.helpers import A_IP, B_IP, MAC_A, MAC_B, TIMEOUT

PORT = 7000
ETH = 14


class OffloadPort(DeviceWrapper):
    """One wire end with a virtio-net header and TSO; see the module docstring."""

    def __init__(self, inner: NetDevice, *, mtu: int, peer_offloads: bool) -> None:
        super().__init__(inner)
        self._mtu = mtu
        self.peer_offloads = peer_offloads
        #: (gso_size, frame length) of every super-frame sent.
        self.gso_frames: list[tuple[int, int]] = []
        self.csum_requests = 0
        #: Frames the stack handed over (the inner device counts what went on the wire).
        self.frames_from_stack = 0
        self.errors: list[str] = []

    @property
    def mtu(self) -> int:
        return self._mtu

    @mtu.setter
    def mtu(self, value: int) -> None:
        self._mtu = value

    @property
    def vnet_hdr(self) -> bool:
        return True

    @property
    def tso(self) -> bool:
        return True

    async def recv_batch(self) -> list[bytes]:
        frames = await self.inner.recv_batch()
        if self.peer_offloads:
            return frames
        return [virtio.NO_OFFLOAD + frame for frame in frames]

    def send_batch(self, frames: Sequence[BytesLike]) -> None:
        out: list[BytesLike] = []
        self.frames_from_stack += len(frames)
        for frame in frames:
            hdr, eth = virtio.parse(frame)
            if hdr.needs_csum:
                self.csum_requests += 1
            elif eth[12:14] == b"\x08\x00" and eth[ETH + 9] == tcp.PROTO:
                self.errors.append("TCP frame without NEEDS_CSUM")
            if hdr.is_gso:
                self.gso_frames.append((hdr.gso_size, len(eth)))
                if not self._valid_gso(hdr, eth):
                    continue
            if self.peer_offloads:
                if len(eth) - ETH > self.mtu and not hdr.is_gso:
                    self.errors.append("oversize frame without GSO")
                    continue
                out.append(frame)
            elif hdr.is_gso:
                out.extend(self._segment(hdr, bytes(eth)))
            else:
                data = bytearray(eth)
                if hdr.needs_csum:
                    virtio.complete_checksum(data, hdr.csum_start, hdr.csum_offset)
                out.append(data)
        self.inner.send_batch(out)

    def _valid_gso(self, hdr: virtio.VnetHeader, eth: memoryview) -> bool:
        """What the kernel's ``virtio_net_hdr_to_skb`` insists on for a TSO frame."""
        ihl = (eth[ETH] & 0x0F) * 4
        thl = (eth[ETH + ihl + 12] >> 4) * 4
        checks = {
            "gso_type": hdr.gso_type == virtio.GSO_TCPV4,
            "needs_csum": hdr.needs_csum,
            "csum_start": hdr.csum_start == ETH + ihl,
            "csum_offset": hdr.csum_offset == virtio.CSUM_OFFSET_TCP,
            "hdr_len": hdr.hdr_len == ETH + ihl + thl,
            "gso_size": 0 < hdr.gso_size <= self.mtu - ihl - thl,
            "longer than one segment": len(eth) - hdr.hdr_len > hdr.gso_size,
        }
        bad = [name for name, ok in checks.items() if not ok]
        self.errors.extend(bad)
        return not bad

    def _segment(self, hdr: virtio.VnetHeader, eth: bytes) -> list[bytearray]:
        """Cut a super-frame as the kernel's ``tcp_gso_segment`` does."""
        ihl = (eth[ETH] & 0x0F) * 4
        headers = eth[: hdr.hdr_len]
        payload = eth[hdr.hdr_len :]
        tcp_at = ETH + ihl
        seq = struct.unpack_from("!I", eth, tcp_at + 4)[0]
        flags = eth[tcp_at + 13]
        ident = struct.unpack_from("!H", eth, ETH + 4)[0]
        out = []
        pieces = range(0, len(payload), hdr.gso_size)
        for i, start in enumerate(pieces):
            piece = payload[start : start + hdr.gso_size]
            frame = bytearray(headers + piece)
            last = i == len(pieces) - 1
            struct.pack_into("!H", frame, ETH + 2, len(frame) - ETH)
            struct.pack_into("!H", frame, ETH + 4, (ident + i) & 0xFFFF)
            struct.pack_into("!H", frame, ETH + 10, 0)
            struct.pack_into("!H", frame, ETH + 10, internet_checksum(frame[ETH:tcp_at]))
            struct.pack_into("!I", frame, tcp_at + 4, (seq + start) & 0xFFFFFFFF)
            frame[tcp_at + 13] = flags if last else flags & ~(tcp.PSH | tcp.FIN)
            # The seed for this segment's length, then the checksum over it.
            src, dst = struct.unpack_from("!II", frame, ETH + 12)
            seed_sum = (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF)
            seed_sum += tcp.PROTO + len(frame) - tcp_at
            while seed_sum >> 16:
                seed_sum = (seed_sum & 0xFFFF) + (seed_sum >> 16)
            struct.pack_into("!H", frame, tcp_at + 16, seed_sum)
            virtio.complete_checksum(frame, tcp_at, virtio.CSUM_OFFSET_TCP)
            out.append(frame)
        return out


async def _transfer(sender: Stack, receiver: Stack, dst_ip: str, data: bytes) -> bytes:
    listener = receiver.socket(AF_INET, SOCK_STREAM)
    listener.bind(("", PORT))
    listener.listen(1)
    client = sender.socket(AF_INET, SOCK_STREAM)
    got = bytearray()
    async with asyncio.timeout(TIMEOUT * 3):
        await client.connect((dst_ip, PORT))
        server, _ = await listener.accept()

        async def write() -> None:
            await client.sendall(data)
            client.close()

        writer = asyncio.ensure_future(write())
        while chunk := await server.recv(1 << 20):
            got += chunk
        await writer
        server.close()
    listener.close()
    return bytes(got)


async def _pair(peer_offloads: bool) -> tuple[Stack, Stack, OffloadPort]:
    a_end, b_end = MemoryWire.pair(mtu=65535 if peer_offloads else 1500, queue_len=4096)
    a_dev = OffloadPort(a_end, mtu=1500, peer_offloads=peer_offloads)
    b_dev: NetDevice = OffloadPort(b_end, mtu=1500, peer_offloads=True) if peer_offloads else b_end
    a = Stack(a_dev, address=f"{A_IP}/24", mac=MAC_A, seed=1)
    b = Stack(b_dev, address=f"{B_IP}/24", mac=MAC_B, seed=2)
    return a, b, a_dev


async def test_tso_super_frames_are_cut_into_valid_segments_for_a_plain_peer() -> None:
    data = os.urandom(3 << 20)
    a, b, a_dev = await _pair(peer_offloads=False)
    async with a, b:
        a.add_neighbor(B_IP, MAC_B)
        b.add_neighbor(A_IP, MAC_A)
        got = await _transfer(a, b, B_IP, data)
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
        assert a_dev.errors == []
        # Super-frames were used, each cut at the MSS minus the timestamp option.
        assert a_dev.gso_frames
        assert {size for size, _ in a_dev.gso_frames} == {1500 - 40 - 12}
        assert max(length for _, length in a_dev.gso_frames) > 32 * 1024
        sent = a.statistics()
        assert a_dev.frames_from_stack < len(data) // 1448 // 4
        # TcpOutSegs counts wire segments, as Linux's does with TSO.
        assert sent["mib"]["TcpOutSegs"] >= len(data) // 1448
        # The plain peer verified every checksum the kernel-side filled in.
        assert b.statistics()["mib"]["TcpInCsumErrors"] == 0
        assert b.statistics()["drops"] == {}


async def test_super_segments_are_received_whole_and_acked() -> None:
    data = os.urandom(3 << 20)
    a, b, a_dev = await _pair(peer_offloads=True)
    async with a, b:
        a.add_neighbor(B_IP, MAC_B)
        b.add_neighbor(A_IP, MAC_A)
        got = await _transfer(a, b, B_IP, data)
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
        assert a_dev.errors == []
        received = b.statistics()
        # b's IP and TCP took 64 KB segments as they came (no MTU check on input).
        assert received["device"]["rx_frames"] < len(data) // 1448 // 4
        assert received["mib"]["TcpInErrs"] == 0
        assert received["drops"] == {}
        # Every TCP frame asked the device to fill its checksum (else an error above).
        assert a_dev.csum_requests > 0


async def test_no_super_segments_without_tso() -> None:
    a_end, b_end = MemoryWire.pair(mtu=1500)
    a = Stack(a_end, address=f"{A_IP}/24", mac=MAC_A, seed=1)
    b = Stack(b_end, address=f"{B_IP}/24", mac=MAC_B, seed=2)
    data = os.urandom(1 << 20)
    async with a, b:
        got = await _transfer(a, b, B_IP, data)
        assert got == data
        # Every frame fitted the MTU, so the wire (which drops oversize) took them all.
        assert a.statistics()["device"]["drops"] == {}
        assert a.statistics()["mib"]["TcpOutSegs"] <= a.statistics()["device"]["tx_frames"]
        assert a.tcp.gso_max_size == 0


async def test_send_buffer_grows_with_cwnd_unless_so_sndbuf_was_set() -> None:
    a_end, b_end = MemoryWire.pair(mtu=1500)
    a = Stack(a_end, address=f"{A_IP}/24", mac=MAC_A, seed=1)
    b = Stack(b_end, address=f"{B_IP}/24", mac=MAC_B, seed=2)
    async with a, b:
        listener = b.socket(AF_INET, SOCK_STREAM)
        listener.bind(("", PORT))
        listener.listen(2)
        auto = a.socket(AF_INET, SOCK_STREAM)
        fixed = a.socket(AF_INET, SOCK_STREAM)
        fixed.setsockopt(SOL_SOCKET, SO_SNDBUF, 16384)
        at_connect = {}
        async with asyncio.timeout(TIMEOUT):
            for sock in (auto, fixed):
                await sock.connect((B_IP, PORT))
                conn = sock.protocol_state.conn
                assert conn is not None
                at_connect[sock] = conn.sndbuf.capacity
                server, _ = await listener.accept()
                writer = asyncio.ensure_future(sock.sendall(bytes(1 << 20)))
                got = 0
                while got < 1 << 20:
                    got += len(await server.recv(1 << 20))
                await writer
        auto_conn = auto.protocol_state.conn
        fixed_conn = fixed.protocol_state.conn
        assert auto_conn is not None and fixed_conn is not None
        wmem = a.settings.tcp_wmem
        # Twice cwnd, as tcp_sndbuf_expand: past the 16 KiB default, within tcp_wmem[2].
        assert wmem[1] < auto_conn.sndbuf.capacity <= wmem[2]
        assert auto_conn.sndbuf.capacity >= 2 * auto_conn.cc.cwnd * auto_conn.mss_clamp
        assert fixed_conn.cc.cwnd * fixed_conn.mss_clamp > at_connect[fixed]
        # SO_SNDBUF locks the size (Linux SOCK_SNDBUF_LOCK).
        assert fixed_conn.sndbuf.capacity == at_connect[fixed]
        assert at_connect[auto] < auto_conn.sndbuf.capacity
