"""Record every frame a device receives and sends into a pcap file.

``PcapWriter(device, "run.pcap")`` is itself a device, so it stacks with the
others (``PcapWriter(FaultInjector(tap))`` records what the stack saw after
the faults; ``FaultInjector(PcapWriter(tap))`` records what the wire saw).
Frames are recorded where the stack hands them over, so a transmitted frame
that the inner device then drops (oversize, full queue) is still in the file,
as ``tcpdump`` on a Linux interface shows frames the driver later drops.

Timestamps: wall-clock nanoseconds, computed as the wall time at open plus
the running loop's ``time()`` elapsed since, so a capture of a virtual-time
loop carries virtual time and a real loop's capture is monotonic even if the
wall clock steps. A ``clock`` callable (seconds since the epoch) overrides
this, for tests and replays. The frames of one batch share one timestamp:
they crossed the device together, and reading the clock once per batch
keeps the cost per frame at one ``struct`` call and one buffered write.

With offloads (``vnet_hdr``) the virtio header is removed, since pcap readers
expect plain Ethernet, and a partial checksum (``NEEDS_CSUM``) is completed
in a copy of the frame so that Wireshark does not flag every offloaded
segment; TSO super-frames are recorded whole, as ``tcpdump`` shows them.

Records go through a buffered file and are flushed after every batch (or
explicitly with :meth:`PcapWriter.flush`), so ``tcpdump -r`` of a running
capture sees everything up to the last batch. The writes are blocking file
I/O on the loop thread: fine for a debugging aid, which is what this is.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Sequence
from typing import BinaryIO

from aiostack.link.base import DeviceWrapper, NetDevice
from aiostack.wire import pcap, virtio
from aiostack.wire.errors import ParseError
from aiostack.wire.types import BytesLike


class PcapWriter(DeviceWrapper):
    """A wrapper that records rx and tx frames of ``inner`` to ``target``.

    ``target`` is a path (opened at :meth:`open`, closed at :meth:`aclose`)
    or a binary file object that the caller owns and closes.
    """

    def __init__(
        self,
        inner: NetDevice,
        target: str | os.PathLike[str] | BinaryIO,
        *,
        nanosecond: bool = False,
        snaplen: int = pcap.DEFAULT_SNAPLEN,
        clock: Callable[[], float] | None = None,
        flush_each_batch: bool = True,
        rx: bool = True,
        tx: bool = True,
    ) -> None:
        super().__init__(inner)
        pcap.global_header(snaplen=snaplen)  # validates snaplen now, not at open
        self.target = target
        self.nanosecond = nanosecond
        self.snaplen = snaplen
        self.clock = clock
        self.flush_each_batch = flush_each_batch
        self.record_rx = rx
        self.record_tx = tx
        #: Records written so far.
        self.written = 0
        self._file: BinaryIO | None = None
        self._owns_file = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wall0_ns = 0
        self._loop0 = 0.0

    async def open(self) -> None:
        await self.inner.open()
        self.start()

    def start(self) -> None:
        """Open the file and write its header (:meth:`open` does, after the inner device).

        Public so that a writer can be put around a device that is already
        open; recording starts with the first batch after this call.
        """
        if self._file is not None:
            return
        if isinstance(self.target, (str, os.PathLike)):
            self._file = open(self.target, "wb")  # noqa: SIM115 (closed in aclose)
            self._owns_file = True
        else:
            self._file = self.target
        self._loop = asyncio.get_running_loop()
        self._loop0 = self._loop.time()
        self._wall0_ns = time.time_ns()
        self._file.write(pcap.global_header(nanosecond=self.nanosecond, snaplen=self.snaplen))
        self._file.flush()

    def _now_ns(self) -> int:
        if self.clock is not None:
            return round(self.clock() * 1e9)
        assert self._loop is not None
        return self._wall0_ns + round((self._loop.time() - self._loop0) * 1e9)

    def _record(self, frames: Sequence[BytesLike]) -> None:
        file = self._file
        if file is None:
            return
        ts = self._now_ns()
        strip = self.vnet_hdr
        snaplen = self.snaplen
        nanosecond = self.nanosecond
        encode = pcap.encode_record
        for frame in frames:
            data: BytesLike = frame
            if strip:
                data = _plain_frame(frame)
            file.write(encode(ts, data, snaplen=snaplen, nanosecond=nanosecond))
        self.written += len(frames)
        if self.flush_each_batch:
            file.flush()

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    async def recv_batch(self) -> list[bytes]:
        frames = await self.inner.recv_batch()
        if self.record_rx:
            self._record(frames)
        return frames

    def send_batch(self, frames: Sequence[BytesLike]) -> None:
        if self.record_tx:
            self._record(frames)
        self.inner.send_batch(frames)

    async def aclose(self) -> None:
        try:
            await self.inner.aclose()
        finally:
            file, self._file = self._file, None
            if file is not None:
                try:
                    file.flush()
                finally:
                    if self._owns_file:
                        file.close()


def _plain_frame(frame: BytesLike) -> BytesLike:
    """The Ethernet frame behind a virtio header, its partial checksum completed if any."""
    try:
        header, eth = virtio.parse(frame)
    except ParseError:
        return memoryview(frame)[virtio.HEADER_LEN :]
    if not header.needs_csum:
        return eth
    copy = bytearray(eth)
    virtio.complete_checksum(copy, header.csum_start, header.csum_offset)
    return copy


def read_pcap(path: str | os.PathLike[str]) -> tuple[pcap.PcapHeader, list[pcap.PcapRecord]]:
    """Read a whole capture file (for tests and tools)."""
    with open(path, "rb") as file:
        return pcap.read(file.read())
