"""A Linux TAP device as a :class:`~aiostack.link.base.NetDevice`.

The device owns one ``/dev/net/tun`` descriptor, attached with
``TUNSETIFF(IFF_TAP | IFF_NO_PI)`` to a TAP that lives in the caller's or a
named network namespace. The descriptor is opened by a short-lived thread
that has joined the namespace (:func:`aiostack.link.netlink.run_in_netns`):
the TUN driver resolves the name in the namespace of the opener, and the
event loop's own thread never leaves the namespace it started in.

``open()`` returns once the kernel has activated the link. Attaching gives
the TAP its carrier, but the kernel installs the real qdisc and marks the
link RUNNING a little later, from a work queue (up to a second under load),
and drops everything it sends into the link until then. A stack that
starts talking right after ``open()`` would lose its first frames, which
matters most when nothing retries them (static neighbours, UDP).

Receive path: the descriptor is non-blocking and registered once with
``loop.add_reader``. ``recv_batch`` reads every frame that is ready, up to
``max_batch`` (one ``read`` per frame, the only way a TAP gives them), and
only when a read finds nothing does it park on a future that the reader
callback completes. No loop handle is made per frame or per batch, which
keeps the stdlib loop as fast as uvloop (``ref/performance-facts.md``). The
reader is taken out only when it fires while nobody waits, so a busy stack
that has stopped reading does not make the loop spin on a level-triggered
descriptor; it goes back in the next time ``recv_batch`` has to wait. With a
receiver set (:meth:`TapDevice.set_receiver`, the stack's link layer) and a
``recv_batch`` parked, the reader callback reads the batch and hands it over
itself: the frames climb the stack in the pass that found them, instead of
waking the parked task for the next pass.

Reads are sized for the largest frame the kernel can hand over, 64 KiB plus
headers, whatever the MTU: a TAP with offloads delivers TCP super-frames of
that size, the MTU may be raised while the device is open, and ``os.read``
costs the same whether it asks for 1.6 KB or 64 KB (measured: about 1.1 us
either way, and cheaper than ``readv`` into a reused buffer plus a copy).

Offloads (``offload=True``): attach with ``IFF_VNET_HDR``, set the header
size to 10 (``TUNSETVNETHDRSZ``) and enable ``TUN_F_CSUM | TUN_F_TSO4``. Every
frame, both ways, then starts with a ``virtio_net_hdr``
(:mod:`aiostack.wire.virtio`): the kernel may leave transport checksums for
the stack to trust (``NEEDS_CSUM``) and hand over TCP segments of up to 64 KiB,
and it fills checksums and cuts super-frames the stack writes. Offload flags
belong to the device and survive on a persistent TAP, so they are set at
every open, to zero when offloads are off.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from aiostack.link import netlink
from aiostack.link.base import DEFAULT_MAX_BATCH, DeviceClosed, DeviceStats, NetDevice
from aiostack.wire import virtio
from aiostack.wire.types import BytesLike

ETH_HLEN = 14
VLAN_HLEN = 4
#: Largest frame a TAP read can return: an IPv4 packet of 65535 bytes plus an
#: Ethernet header with one VLAN tag plus the virtio header, rounded up.
READ_SIZE = 65535 + ETH_HLEN + VLAN_HLEN + virtio.HEADER_LEN + 64
_TPID_8021Q = b"\x81\x00"
#: How long open() waits for the kernel to activate the link after attaching.
LINK_READY_TIMEOUT = 5.0

T = TypeVar("T")

_OFFLOADS = netlink.TUN_F_CSUM | netlink.TUN_F_TSO4
_VNET_HDR_SZ_ARG = struct.pack("=i", virtio.HEADER_LEN)

#: Write errors and the drop reason they are counted under.
_TX_ERRNO_REASON = {
    errno.EAGAIN: "tx_queue_full",
    errno.EIO: "tx_link_down",
    errno.EINVAL: "tx_invalid",
    errno.ENOBUFS: "tx_no_buffers",
}
#: Read errors that mean the TAP is gone (deleted, or its namespace with it).
_GONE_ERRNOS = (errno.EBADFD, errno.ENODEV, errno.ENXIO)


async def _blocking(fn: Callable[[], T], *, abandoned: Callable[[T], object]) -> T:
    """Run ``fn`` on a worker thread; if cancelled meanwhile, pass its result to ``abandoned``.

    A thread cannot be interrupted, so a cancelled ``open()`` would otherwise
    leave a freshly created TAP or an open descriptor nobody knows about.
    """
    task = asyncio.ensure_future(asyncio.to_thread(fn))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait({task})
        if not task.cancelled() and task.exception() is None:
            abandoned(task.result())
        raise


@dataclass(slots=True, frozen=True)
class _CreateSpec:
    """How :meth:`TapDevice.create` wants the kernel side configured."""

    mtu: int | None
    mac: bytes | str | None
    address: str | None
    ipv6: bool


class TapDevice(NetDevice):
    """A TAP device, created by us or attached to an existing one.

    Build one with :meth:`attach` (an existing TAP, e.g. from
    :func:`aiostack.link.netlink.create_tap` or ``ip tuntap add``) or
    :meth:`create` (a fresh persistent TAP that :meth:`aclose` deletes);
    nothing touches the system until :meth:`open`. ``mtu`` is the kernel's
    value for the link, read at open.
    """

    def __init__(
        self,
        name: str,
        *,
        netns: str | None = None,
        offload: bool = False,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> None:
        netlink.validate_ifname(name)
        if netns is not None:
            netlink.validate_netns_name(netns)
        if max_batch < 1:
            raise ValueError(f"max_batch: {max_batch} is not a positive frame count")
        self.name = name
        self.netns = netns
        self.offload = offload
        self.max_batch = max_batch
        self.mtu = 1500
        self.vnet_hdr = offload
        self.tso = offload
        self.stats = DeviceStats()
        #: The kernel side of the link as found at open (MAC, index, MTU).
        self.link: netlink.LinkInfo | None = None
        self._create: _CreateSpec | None = None
        self._created = False
        self._fd = -1
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reading = False
        self._readable = True
        self._waiter: asyncio.Future[None] | None = None
        self._receiver: Callable[[list[bytes]], None] | None = None
        self._opened = False
        self._closed = False

    @classmethod
    def attach(
        cls,
        name: str,
        *,
        netns: str | None = None,
        offload: bool = False,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> TapDevice:
        """A device for the existing TAP ``name`` in ``netns``; closing leaves the TAP."""
        return cls(name, netns=netns, offload=offload, max_batch=max_batch)

    @classmethod
    def create(
        cls,
        name: str,
        *,
        netns: str | None = None,
        mtu: int | None = None,
        kernel_mac: bytes | str | None = None,
        kernel_address: str | None = None,
        ipv6: bool = False,
        offload: bool = False,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> TapDevice:
        """A device that creates TAP ``name`` in ``netns`` at open and deletes it at close.

        ``kernel_mac``, ``kernel_address`` ("198.18.0.1/24") and ``mtu``
        configure the kernel's end (see :func:`~aiostack.link.netlink.create_tap`).
        Argument errors are raised here, before any I/O.
        """
        device = cls(name, netns=netns, offload=offload, max_batch=max_batch)
        # Validate now, so mistakes surface at the call site rather than at open.
        netlink.normalize_mac(kernel_mac)
        if kernel_address is not None:
            netlink.parse_interface(kernel_address)
        if mtu is not None:
            if not 68 <= mtu <= 65535:
                raise ValueError(f"mtu: {mtu} is outside 68..65535")
            device.mtu = mtu
        device._create = _CreateSpec(mtu, kernel_mac, kernel_address, ipv6)
        return device

    @property
    def fileno(self) -> int:
        """The TUN descriptor, -1 when not open."""
        return self._fd

    @property
    def created(self) -> bool:
        """Whether this device created its TAP (and so deletes it when closed)."""
        return self._created

    # ------------------------------------------------------------------ open/close

    async def open(self) -> None:
        if self._closed:
            raise DeviceClosed(f"TAP {self.name!r} is closed")
        if self._opened:
            raise RuntimeError(f"TAP {self.name!r} is already open")
        self._opened = True
        loop = asyncio.get_running_loop()
        try:
            if self._create is not None:
                spec = self._create
                await _blocking(
                    lambda: netlink.create_tap(
                        self.name,
                        netns=self.netns,
                        mtu=spec.mtu,
                        mac=spec.mac,
                        address=spec.address,
                        ipv6=spec.ipv6,
                    ),
                    abandoned=self._mark_created,
                )
                self._created = True
            self._fd, link = await _blocking(
                self._open_descriptor, abandoned=lambda result: os.close(result[0])
            )
        except BaseException:
            self._closed = True
            await self._delete_created()
            raise
        self.link = link
        self.mtu = link.mtu
        self._loop = loop
        loop.add_reader(self._fd, self._on_readable)
        self._reading = True

    def _mark_created(self, _: object) -> None:
        self._created = True

    def _open_descriptor(self) -> tuple[int, netlink.LinkInfo]:
        """Open, attach and configure the TUN descriptor; blocking, run off the loop thread.

        Everything happens on one thread inside the namespace: the
        descriptor must be opened there, and waiting for the link to become
        RUNNING needs sockets there too.
        """
        netlink.require_tun()

        def job() -> tuple[int, netlink.LinkInfo]:
            try:
                netlink.query_link(self.name, self.netns)
            except OSError as exc:
                if exc.errno == errno.ENODEV:
                    raise OSError(
                        errno.ENODEV,
                        f"{exc.strerror}; create it first (TapDevice.create or netlink.create_tap)",
                    ) from None
                raise
            fd = os.open(netlink.TUN_DEVICE, os.O_RDWR | os.O_CLOEXEC)
            try:
                flags = netlink.IFF_TAP | netlink.IFF_NO_PI
                if self.offload:
                    flags |= netlink.IFF_VNET_HDR
                try:
                    fcntl.ioctl(fd, netlink.TUNSETIFF, netlink.tun_ifreq(self.name, flags))
                except OSError as exc:
                    raise self._attach_error(exc) from None
                if self.offload:
                    fcntl.ioctl(fd, netlink.TUNSETVNETHDRSZ, _VNET_HDR_SZ_ARG)
                fcntl.ioctl(fd, netlink.TUNSETOFFLOAD, _OFFLOADS if self.offload else 0)
                os.set_blocking(fd, False)
                # Not fatal if slow: the link works once the kernel gets to it.
                netlink.wait_until_running(self.name, LINK_READY_TIMEOUT)
                return fd, netlink.query_link(self.name, self.netns)
            except BaseException:
                os.close(fd)
                raise

        return netlink.run_in_netns(self.netns, job)

    def _attach_error(self, exc: OSError) -> OSError:
        where = f" in network namespace {self.netns!r}" if self.netns else ""
        if exc.errno == errno.EINVAL:
            return OSError(errno.EINVAL, f"link {self.name!r}{where} is not a TAP device")
        if exc.errno == errno.EBUSY:
            return OSError(errno.EBUSY, f"TAP {self.name!r}{where} is attached by another process")
        if exc.errno == errno.EPERM:
            return OSError(
                errno.EPERM, f"attaching TAP {self.name!r}{where} needs CAP_NET_ADMIN or ownership"
            )
        return OSError(exc.errno, f"attaching TAP {self.name!r}{where}: {exc.strerror}")

    async def aclose(self) -> None:
        self._shutdown(DeviceClosed(f"TAP {self.name!r} was closed"))
        await self._delete_created()

    def _shutdown(self, reason: DeviceClosed) -> None:
        """Drop the descriptor and fail a parked ``recv_batch``; synchronous and idempotent."""
        self._closed = True
        self._receiver = None
        fd, self._fd = self._fd, -1
        if fd >= 0:
            if self._reading and self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(fd)
            self._reading = False
            os.close(fd)
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(reason)

    async def _delete_created(self) -> None:
        if not self._created:
            return
        self._created = False
        try:
            await asyncio.to_thread(netlink.delete_link, self.name, netns=self.netns)
        except OSError as exc:
            # Already gone (deleted by hand, or with its namespace): nothing left to do.
            if exc.errno not in (errno.ENODEV, errno.ENOENT):
                raise

    def _not_open(self) -> DeviceClosed:
        state = "is closed" if self._closed else "is not open yet (await open() first)"
        return DeviceClosed(f"TAP {self.name!r} {state}")

    def __repr__(self) -> str:
        where = f", netns={self.netns!r}" if self.netns else ""
        return f"<TapDevice {self.name!r}{where} offload={self.offload} fd={self._fd}>"

    # ------------------------------------------------------------------ receive

    def set_receiver(self, receiver: Callable[[list[bytes]], None] | None) -> bool:
        """Batches go to ``receiver`` from the readiness callback while a reader is parked."""
        self._receiver = receiver
        return True

    def _on_readable(self) -> None:
        self._readable = True
        waiter = self._waiter
        if waiter is not None:
            receiver = self._receiver
            if receiver is not None and not waiter.done():
                # The reader is parked, holding nothing: hand the batch over here
                # rather than one pass of the loop later (see set_receiver). A
                # batch that stops at max_batch leaves the descriptor readable,
                # so the next pass comes back here for the rest.
                try:
                    frames = self._drain()
                except DeviceClosed:
                    return  # _shutdown failed the parked reader: it ends
                if frames:
                    receiver(frames)
                return
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
        elif self._loop is not None:
            # Nobody is waiting: stop the level-triggered wake-ups until someone is.
            self._loop.remove_reader(self._fd)
            self._reading = False

    async def recv_batch(self) -> list[bytes]:
        while True:
            if self._fd < 0:
                raise self._not_open()
            if self._readable:
                frames = self._drain()
                if frames:
                    return frames
            if self._waiter is not None:
                raise RuntimeError(f"recv_batch on TAP {self.name!r} is already being awaited")
            loop = self._loop
            assert loop is not None
            if not self._reading:
                loop.add_reader(self._fd, self._on_readable)
                self._reading = True
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                if self._waiter is waiter:
                    self._waiter = None

    def poll_batch(self) -> list[bytes] | None:
        """Frames the kernel already queued, up to ``max_batch``; one ``read`` when none.

        Tried whatever ``_readable`` says: the readiness callback of this
        pass may not have run yet (see :meth:`NetDevice.poll_batch`). The
        receive task holds nothing between its calls (it runs each batch up
        the stack before it reads again), so order is kept.
        """
        if self._fd < 0:
            return None
        return self._drain()

    def _drain(self) -> list[bytes]:
        """Read every ready frame, up to ``max_batch``; clears ``_readable`` when empty."""
        frames: list[bytes] = []
        append = frames.append
        read = os.read
        fd = self._fd
        try:
            for _ in range(self.max_batch):
                append(read(fd, READ_SIZE))
        except BlockingIOError:
            self._readable = False
        except OSError as exc:
            if exc.errno in _GONE_ERRNOS:
                self._shutdown(DeviceClosed(f"TAP {self.name!r} went away: {exc.strerror}"))
                if not frames:
                    raise DeviceClosed(f"TAP {self.name!r} went away: {exc.strerror}") from None
            else:
                # Count it and wait for the next readiness rather than retrying at once.
                self.stats.drop("rx_error")
                self._readable = False
        if frames:
            stats = self.stats
            stats.rx_frames += len(frames)
            stats.rx_bytes += sum(map(len, frames))
            if self.vnet_hdr:
                stats.rx_bytes -= virtio.HEADER_LEN * len(frames)
        return frames

    # ------------------------------------------------------------------ transmit

    def send_batch(self, frames: Sequence[BytesLike]) -> None:
        fd = self._fd
        if fd < 0:
            raise self._not_open()
        stats = self.stats
        hdr = virtio.HEADER_LEN if self.vnet_hdr else 0
        min_len = hdr + ETH_HLEN
        max_len = hdr + ETH_HLEN + self.mtu
        write = os.write
        sent = 0
        sent_bytes = 0
        for frame in frames:
            n = len(frame)
            if n > max_len and not self._oversize_allowed(frame, n, hdr, max_len):
                stats.drop("oversize")
                continue
            if n < min_len:
                stats.drop("runt")
                continue
            try:
                write(fd, frame)
            except OSError as exc:
                stats.drop(_TX_ERRNO_REASON.get(exc.errno or 0, "tx_error"))
                continue
            sent += 1
            sent_bytes += n - hdr
        stats.tx_frames += sent
        stats.tx_bytes += sent_bytes

    def _oversize_allowed(self, frame: BytesLike, n: int, hdr: int, max_len: int) -> bool:
        """A frame over ``mtu + 14`` is still fine if VLAN-tagged or a TSO super-frame."""
        if hdr and self.tso and frame[1] & ~virtio.GSO_ECN != virtio.GSO_NONE:
            return n <= READ_SIZE
        return n <= max_len + VLAN_HLEN and frame[hdr + 12 : hdr + 14] == _TPID_8021Q
