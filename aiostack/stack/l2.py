"""The link layer's two tasks: receive (Ethernet demux, ARP) and transmit.

Receive: one ``recv_batch()`` per wake-up; each frame is classified with a
few byte reads (the common untagged IPv4 frame never builds a header
object), ARP is answered right here, and IPv4 packets go on to the IP task
as one batch. Transmit: the IP layer's ``(next_hop, frame)`` items get their
Ethernet header written into the headroom left for it, after the neighbour
table supplies the MAC (or keeps the frame until ARP does); the whole batch
goes to the device in one ``send_batch``.

With a virtio-net header on the device (TAP offloads), received frames say
whether the kernel already vouched for the transport checksum (and may be
TCP super-frames of up to 64 KB, which go up the stack whole), and every
transmitted frame starts with the header its producer wrote into the
headroom: zeros ("no offload") from ``ip.alloc``, or TCP's checksum and TSO
requests (:mod:`aiostack.stack.tcp`).
"""

from __future__ import annotations

import asyncio
import struct
from typing import TYPE_CHECKING

from aiostack.core.arp import ArpOutput
from aiostack.link.base import DeviceClosed
from aiostack.wire import arp, ethernet, virtio
from aiostack.wire.errors import ParseError
from aiostack.wire.ethernet import BROADCAST, EtherType
from aiostack.wire.ipv4 import LIMITED_BROADCAST

if TYPE_CHECKING:
    from aiostack.stack.stack import Stack

_ETH_HEADER = struct.Struct("!6s6sH")
_TRUSTED_CSUM = virtio.F_NEEDS_CSUM | virtio.F_DATA_VALID
_IPV4 = EtherType.IPV4
_ARP = EtherType.ARP

#: What the IP task receives per packet: (IP packet, link broadcast?, checksum trusted?).
IpInput = tuple[memoryview, bool, bool]
#: What the transmit task receives per packet: (next hop, frame with headroom).
LinkOutput = tuple[int, bytearray]


class LinkLayer:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.device = stack.device
        self.counters = stack.counters
        self.mac = stack.mac
        self.vnet = stack.device.vnet_hdr
        #: Offset of the Ethernet header in a frame (after the virtio header, if any).
        self.eth_offset = virtio.HEADER_LEN if self.vnet else 0

    # -- receive ------------------------------------------------------------

    async def rx_task(self) -> None:
        device = self.device
        stack = self.stack
        # A device that can hand a batch over in its own readiness callback
        # (a TAP) does so while this task is parked in recv_batch(): the
        # frames then go up the stack in the pass of the loop that found the
        # descriptor readable, not one pass later when this task would run.
        device.set_receiver(self.receive_direct)
        while True:
            frames = await device.recv_batch()
            try:
                stack.run_batch(self.receive, frames)
            except DeviceClosed:
                raise  # not a bug: the task ends (Stack._guard)
            except Exception:
                stack.internal_error("link-rx")
            # A device with frames waiting returns from recv_batch() without
            # suspending, so without this the receive task would drain the
            # whole device before the IP task ran once, and overflow its
            # queue. Yielding once per batch makes the layers take turns, a
            # batch at a time: the NAPI budget, in asyncio terms.
            await asyncio.sleep(0)

    def receive_direct(self, frames: list[bytes]) -> None:
        """A batch the device hands over from its readiness callback; nothing escapes."""
        try:
            self.stack.run_batch(self.receive, frames)
        except DeviceClosed:
            pass  # the device failed the parked recv_batch(): the receive task ends
        except Exception:
            self.stack.internal_error("link-rx")

    def receive(self, frames: list[bytes]) -> None:
        """Classify one batch of frames; see the module docstring."""
        counters = self.counters
        mac = self.mac
        vnet = self.vnet
        offset = self.eth_offset
        ip_batch: list[IpInput] = []
        append = ip_batch.append
        for frame in frames:
            view = memoryview(frame)
            trusted = False
            if vnet:
                if len(view) < virtio.HEADER_LEN:
                    counters.drop("virtio.truncated")
                    continue
                trusted = bool(view[0] & _TRUSTED_CSUM)
                view = view[virtio.HEADER_LEN :]
            if len(view) < ethernet.HEADER_LEN:
                counters.drop("ethernet.truncated")
                continue
            dst = frame[offset : offset + 6]  # bytes compare: cheaper than a view's
            if dst != mac:
                if not dst[0] & 1:
                    counters.drop("ethernet.other_host")
                    continue
                broadcast = True
            else:
                broadcast = False
            ethertype = (view[12] << 8) | view[13]
            if ethertype == _IPV4:
                append((view[14:], broadcast, trusted))
                continue
            try:
                header, payload = ethernet.parse(view)
            except ParseError as exc:
                counters.drop("ethernet." + exc.reason)
                continue
            if header.ethertype == _IPV4:
                append((payload, broadcast, trusted))
            elif header.ethertype == _ARP:
                self._arp_input(payload)
            else:
                counters.drop("ethernet.unknown_ethertype")
        if ip_batch:
            stack = self.stack
            stack.ip_queue.hand_on(ip_batch, stack.ip_task.process)

    def _arp_input(self, payload: memoryview) -> None:
        stack = self.stack
        try:
            packet = arp.parse(payload)
        except ParseError as exc:
            self.counters.drop("arp." + exc.reason)
            return
        reply, released = stack.arp.receive(stack.now(), packet)
        frames: list[bytearray] = []
        if reply is not None:
            frames.append(self.arp_frame(reply))
        if released:
            assert packet.sender_mac is not None
            for frame in released:
                self.frame(frame, packet.sender_mac)
                frames.append(frame)
        if frames:
            self.device.send_batch(frames)

    # -- transmit -----------------------------------------------------------

    async def tx_task(self) -> None:
        stack = self.stack
        queue = stack.tx_queue
        while True:
            items = await queue.get()
            try:
                self.transmit(items)
            except DeviceClosed:
                raise  # not a bug: the task ends (Stack._guard)
            except Exception:
                stack.internal_error("link-tx")

    def transmit_direct(self, items: list[LinkOutput]) -> None:
        """Transmit a backlog in the producer's context (the transmit queue is at its bound).

        The producer is a socket call or a layer task, not the transmit
        task, so nothing may escape: a closed device drops the frames and
        counts them, as the transmit task would have found it closed.
        """
        try:
            self.transmit(items)
        except DeviceClosed:
            self.counters.drop("link.device_closed", len(items))
        except Exception:
            self.stack.internal_error("link-tx")

    def transmit(self, items: list[LinkOutput]) -> None:
        """Frame and send one batch of outbound IP packets."""
        stack = self.stack
        neighbors = stack.neighbors
        now = stack.now()
        frames: list[bytearray] = []
        frame_out = self.frame
        resolve = neighbors.resolve
        for next_hop, frame in items:
            if next_hop == LIMITED_BROADCAST:
                frame_out(frame, BROADCAST)
            else:
                dst = resolve(now, next_hop, frame)
                if dst is None:
                    continue
                frame_out(frame, dst)
            frames.append(frame)
        if neighbors.solicitations:
            frames.extend(self.solicit())
            stack.timer.kick()
        if frames:
            self.device.send_batch(frames)

    def solicit(self) -> list[bytearray]:
        """ARP request frames for every solicitation the neighbour table asked for."""
        stack = self.stack
        requests = [
            self.arp_frame(stack.arp.request(s.target, s.mac))
            for s in stack.neighbors.solicitations
        ]
        stack.neighbors.solicitations.clear()
        return requests

    def frame(self, frame: bytearray, dst: bytes) -> None:
        """Write the Ethernet header of an IPv4 frame addressed to ``dst``.

        The virtio header in front of it (if the device has one) is left as
        the producer wrote it: ``ip.alloc`` hands out zeroed headroom, which
        is :data:`virtio.NO_OFFLOAD`, and TCP writes its offload requests
        (NEEDS_CSUM, TSO) there itself.
        """
        _ETH_HEADER.pack_into(frame, self.eth_offset, dst, self.mac, _IPV4)

    def arp_frame(self, out: ArpOutput) -> bytearray:
        offset = self.eth_offset
        frame = bytearray(offset + ethernet.HEADER_LEN + arp.PACKET_LEN)
        if offset:
            frame[:offset] = virtio.NO_OFFLOAD
        _ETH_HEADER.pack_into(frame, offset, out.dst_mac, self.mac, _ARP)
        arp.emit_into(frame, offset + ethernet.HEADER_LEN, out.packet)
        return frame
