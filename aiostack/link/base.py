"""The one small interface every device and device wrapper implements.

A device moves whole Ethernet frames, in batches, between the stack and
something else: a TAP file descriptor, an in-memory wire, a switch. Wrappers
(:mod:`aiostack.link.pcap`, :mod:`aiostack.link.fault`) take a device and are
one, so the CLI and tests stack them freely: ``PcapWriter(FaultInjector(tap))``.

Call grammar::

    open -> (recv_batch | send_batch)* -> aclose

- ``recv_batch()`` waits until at least one frame is there, then returns
  every frame available up to ``max_batch`` in arrival order. Draining per
  wake-up is what makes a Python stack fast (``ref/performance-facts.md``):
  one loop wake-up and one queue hop per batch instead of per frame.
- ``send_batch(frames)`` never blocks: a frame the device cannot take now
  (kernel queue full, larger than the MTU) is dropped and counted in
  ``stats``, exactly as a NIC drops on a full ring. After the call the
  device owns the frames: callers must not mutate them.
- With ``vnet_hdr`` true every frame, both ways, starts with a 10-byte
  ``virtio_net_hdr`` (see :mod:`aiostack.wire.virtio`) carrying checksum and
  segmentation offload metadata; the link layer strips and adds it.
- ``aclose()`` is idempotent; a ``recv_batch()`` waiting when the device is
  closed raises :class:`DeviceClosed`.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Self

from aiostack.wire.types import BytesLike

#: Frames handed over per wake-up at most (the kernel's NAPI budget is 64 too).
DEFAULT_MAX_BATCH = 64


class DeviceClosed(Exception):
    """The device was closed while, or before, it was used."""


@dataclass(slots=True)
class DeviceStats:
    """Frame counters kept by every device (``ip -s link`` style)."""

    rx_frames: int = 0
    rx_bytes: int = 0
    tx_frames: int = 0
    tx_bytes: int = 0
    #: Frames dropped on the way in or out, by reason ("tx_queue_full", "oversize", ...).
    drops: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str, count: int = 1) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + count


class NetDevice(abc.ABC):
    """A source and sink of Ethernet frames; see the module docstring."""

    #: Interface name, for logs, pcaps and the CLI.
    name: str
    #: Largest IP packet (L3 MTU); frames may be up to ``mtu + 14`` bytes (+4 with a VLAN tag).
    mtu: int
    #: Frames carry a virtio-net header prefix (TAP offloads negotiated).
    vnet_hdr: bool = False
    #: The device segments TCP super-frames up to 64 KiB that the stack hands it (TSO4).
    tso: bool = False
    max_batch: int = DEFAULT_MAX_BATCH
    stats: DeviceStats

    async def open(self) -> None:  # noqa: B027 (optional hook, deliberately not abstract)
        """Attach to the running event loop. Called once, before any I/O.

        Not abstract: a device with nothing to set up inherits this no-op.
        """

    @abc.abstractmethod
    async def recv_batch(self) -> list[bytes]:
        """Wait for frames and return every one available, up to ``max_batch``."""

    def set_receiver(self, receiver: Callable[[list[bytes]], None] | None) -> bool:
        """Offer to hand batches to ``receiver`` directly; True if this device does.

        A device that learns of frames in a callback of its own (a TAP's
        readiness callback) may, while a :meth:`recv_batch` is parked and
        so has nothing in hand, read the batch there and call ``receiver``
        with it instead of waking the parked task, which would take the
        batch one pass of the event loop later; order is unchanged because
        the parked reader holds nothing. ``receiver`` must not raise. The
        default, and every wrapper (which must see each frame itself), says
        no: frames then only come out of :meth:`recv_batch`.
        """
        return False

    def poll_batch(self) -> list[bytes] | None:
        """Frames already waiting, up to ``max_batch``, without waiting; None: cannot tell.

        The stack's timer task calls this when timers fall due, to take in
        input that is already there before it acts on a timer (an ACK
        waiting here must cancel the retransmission it would otherwise
        fire; see docs/decisions.md). ``[]`` means nothing is waiting. Only
        a device whose :meth:`recv_batch` holds nothing between calls may
        answer, so that taking frames here keeps their order. The default,
        and every wrapper (which must see each frame in its own
        :meth:`recv_batch`), answers None: the stack then relies on the
        receive task alone.
        """
        return None

    @abc.abstractmethod
    def send_batch(self, frames: Sequence[BytesLike]) -> None:
        """Transmit ``frames`` in order without blocking; count what cannot go."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Release the device and whatever it created; idempotent."""

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class DeviceWrapper(NetDevice):
    """Base for wrappers: forwards everything to ``inner`` unless overridden.

    The descriptive attributes are live views of the inner device rather
    than copies taken at construction: a TAP learns its MTU and offloads
    only when it opens, which is after the wrappers around it were built.
    Setting one sets the inner device's. ``stats`` is the inner device's
    too; a wrapper keeps its own counters under another name.
    """

    def __init__(self, inner: NetDevice) -> None:
        self.inner = inner

    @property
    def name(self) -> str:
        return self.inner.name

    @name.setter
    def name(self, value: str) -> None:
        self.inner.name = value

    @property
    def mtu(self) -> int:
        return self.inner.mtu

    @mtu.setter
    def mtu(self, value: int) -> None:
        self.inner.mtu = value

    @property
    def vnet_hdr(self) -> bool:
        return self.inner.vnet_hdr

    @vnet_hdr.setter
    def vnet_hdr(self, value: bool) -> None:
        self.inner.vnet_hdr = value

    @property
    def tso(self) -> bool:
        return self.inner.tso

    @tso.setter
    def tso(self, value: bool) -> None:
        self.inner.tso = value

    @property
    def max_batch(self) -> int:
        return self.inner.max_batch

    @max_batch.setter
    def max_batch(self, value: int) -> None:
        self.inner.max_batch = value

    @property
    def stats(self) -> DeviceStats:
        return self.inner.stats

    @stats.setter
    def stats(self, value: DeviceStats) -> None:
        self.inner.stats = value

    async def open(self) -> None:
        await self.inner.open()

    async def recv_batch(self) -> list[bytes]:
        return await self.inner.recv_batch()

    def send_batch(self, frames: Sequence[BytesLike]) -> None:
        self.inner.send_batch(frames)

    async def aclose(self) -> None:
        await self.inner.aclose()
