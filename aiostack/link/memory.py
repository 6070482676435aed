"""In-memory devices: a point-to-point wire and a learning switch.

They let whole stacks talk to each other inside one event loop, with no
privileges, no kernel and (on a virtual-time loop) no wall clock, which is
what the protocol and fault-injection tests run on. They behave like the
real thing where it matters to a stack: frames move in batches, every port
has a bounded receive queue that drops and counts when full (like a NIC's
ring), frames larger than the MTU are dropped on send, and a switch learns
source MACs and floods broadcast, multicast and unknown destinations.

Delivery is immediate: ``send_batch`` appends to the peer's queue and wakes
its pending ``recv_batch``. Latency, loss and reordering come from wrapping
a port in :class:`aiostack.link.fault.FaultInjector`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from aiostack.link.base import DEFAULT_MAX_BATCH, DeviceClosed, DeviceStats, NetDevice
from aiostack.wire.ethernet import is_multicast
from aiostack.wire.types import BytesLike

ETH_HLEN = 14
VLAN_HLEN = 4
#: Default receive queue bound per port, in frames (Linux's txqueuelen is 1000).
DEFAULT_QUEUE_LEN = 1000
_TPID_8021Q = b"\x81\x00"


def _check_mtu(mtu: int) -> int:
    if not 68 <= mtu <= 65535:
        raise ValueError(f"mtu: {mtu} is outside 68..65535")
    return mtu


def _check_positive(name: str, value: int) -> int:
    if value < 1:
        raise ValueError(f"{name}: {value} is not a positive count")
    return value


class QueuePort(NetDevice):
    """A device fed by a bounded in-memory queue; the base of wire ends and switch ports.

    ``transmit`` is where sent frames go (the peer, the switch); it is
    called with the frames that passed the MTU check, as one list.
    """

    def __init__(
        self,
        name: str,
        *,
        mtu: int,
        queue_len: int,
        max_batch: int,
        transmit: Callable[[QueuePort, list[bytes]], None],
    ) -> None:
        self.name = name
        self.mtu = _check_mtu(mtu)
        self.max_batch = _check_positive("max_batch", max_batch)
        self.queue_len = _check_positive("queue_len", queue_len)
        self.stats = DeviceStats()
        self._transmit = transmit
        self._queue: deque[bytes] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def deliver(self, frames: Iterable[bytes]) -> None:
        """Queue frames for this port's reader; drop and count what exceeds ``queue_len``."""
        if self._closed:
            return
        queue = self._queue
        room = self.queue_len - len(queue)
        frames = frames if isinstance(frames, list) else list(frames)
        if len(frames) > room:
            self.stats.drop("rx_queue_full", len(frames) - max(room, 0))
            frames = frames[: max(room, 0)]
        if not frames:
            return
        queue.extend(frames)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def recv_batch(self) -> list[bytes]:
        while True:
            if self._closed:
                raise DeviceClosed(f"{self.name!r} is closed")
            queue = self._queue
            if queue:
                n = min(len(queue), self.max_batch)
                if n == len(queue):
                    batch = list(queue)
                    queue.clear()
                else:
                    popleft = queue.popleft
                    batch = [popleft() for _ in range(n)]
                self.stats.rx_frames += n
                self.stats.rx_bytes += sum(map(len, batch))
                return batch
            if self._waiter is not None:
                raise RuntimeError(f"recv_batch on {self.name!r} is already being awaited")
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                if self._waiter is waiter:
                    self._waiter = None

    def poll_batch(self) -> list[bytes] | None:
        """Frames already queued, up to ``max_batch``, without waiting (see NetDevice)."""
        if self._closed:
            return None
        queue = self._queue
        popleft = queue.popleft
        batch = [popleft() for _ in range(min(len(queue), self.max_batch))]
        self.stats.rx_frames += len(batch)
        self.stats.rx_bytes += sum(map(len, batch))
        return batch

    def send_batch(self, frames: Sequence[BytesLike]) -> None:
        if self._closed:
            raise DeviceClosed(f"{self.name!r} is closed")
        max_len = ETH_HLEN + self.mtu
        out: list[bytes] = []
        nbytes = 0
        for frame in frames:
            n = len(frame)
            if n > max_len and not (n <= max_len + VLAN_HLEN and frame[12:14] == _TPID_8021Q):
                self.stats.drop("oversize")
                continue
            if n < ETH_HLEN:
                self.stats.drop("runt")
                continue
            out.append(frame if type(frame) is bytes else bytes(frame))
            nbytes += n
        if out:
            self.stats.tx_frames += len(out)
            self.stats.tx_bytes += nbytes
            self._transmit(self, out)

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        """Synchronous close, for owners tearing down a whole wire or switch."""
        if self._closed:
            return
        self._closed = True
        self._queue.clear()
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(DeviceClosed(f"{self.name!r} was closed"))


class MemoryWire:
    """Two devices joined back to back: what one sends, the other receives.

    ``a, b = MemoryWire.pair(mtu=1500)``. A frame sent while the other end is
    closed is lost, counted on the sender as ``no_carrier``.
    """

    def __init__(
        self,
        *,
        mtu: int = 1500,
        queue_len: int = DEFAULT_QUEUE_LEN,
        max_batch: int = DEFAULT_MAX_BATCH,
        names: tuple[str, str] = ("wire0a", "wire0b"),
    ) -> None:
        self.a = QueuePort(
            names[0], mtu=mtu, queue_len=queue_len, max_batch=max_batch, transmit=self._carry
        )
        self.b = QueuePort(
            names[1], mtu=mtu, queue_len=queue_len, max_batch=max_batch, transmit=self._carry
        )

    @classmethod
    def pair(
        cls,
        *,
        mtu: int = 1500,
        queue_len: int = DEFAULT_QUEUE_LEN,
        max_batch: int = DEFAULT_MAX_BATCH,
        names: tuple[str, str] = ("wire0a", "wire0b"),
    ) -> tuple[QueuePort, QueuePort]:
        wire = cls(mtu=mtu, queue_len=queue_len, max_batch=max_batch, names=names)
        return wire.a, wire.b

    def _carry(self, sender: QueuePort, frames: list[bytes]) -> None:
        peer = self.b if sender is self.a else self.a
        if peer.closed:
            sender.stats.drop("no_carrier", len(frames))
            return
        peer.deliver(frames)


@dataclass(slots=True)
class SwitchStats:
    """Forwarding counters of a :class:`VirtualSwitch` as a whole."""

    forwarded: int = 0
    flooded: int = 0
    #: Unicast frames whose destination was learned on the port they came in on.
    filtered: int = 0
    learned: int = 0
    moved: int = 0


class VirtualSwitch:
    """A learning Ethernet switch with named ports, each a :class:`NetDevice`.

    Like a Linux bridge: the source MAC of every frame is learned on its
    ingress port (entries age out after ``ageing_time`` seconds of loop
    time), a unicast frame to a learned MAC goes to that port only, and
    broadcast, multicast and unknown unicast are flooded to every other
    port. Frames are forwarded as one batch per egress port.
    """

    def __init__(
        self,
        *,
        mtu: int = 1500,
        queue_len: int = DEFAULT_QUEUE_LEN,
        max_batch: int = DEFAULT_MAX_BATCH,
        ageing_time: float = 300.0,
    ) -> None:
        self.mtu = _check_mtu(mtu)
        self.queue_len = _check_positive("queue_len", queue_len)
        self.max_batch = _check_positive("max_batch", max_batch)
        if ageing_time <= 0:
            raise ValueError(f"ageing_time: {ageing_time} is not a positive number of seconds")
        self.ageing_time = ageing_time
        self.stats = SwitchStats()
        self._ports: dict[str, QueuePort] = {}
        #: MAC -> (port, loop time last seen).
        self._fdb: dict[bytes, tuple[QueuePort, float]] = {}

    def port(self, name: str) -> QueuePort:
        """Return the open port called ``name``, adding it on first use."""
        existing = self._ports.get(name)
        if existing is not None and not existing.closed:
            return existing
        port = QueuePort(
            name,
            mtu=self.mtu,
            queue_len=self.queue_len,
            max_batch=self.max_batch,
            transmit=self._switch,
        )
        self._ports[name] = port
        return port

    @property
    def ports(self) -> dict[str, QueuePort]:
        return {name: p for name, p in self._ports.items() if not p.closed}

    def fdb(self) -> dict[bytes, str]:
        """The forwarding table: learned MAC -> port name (like ``bridge fdb show``)."""
        return {mac: port.name for mac, (port, _) in self._fdb.items() if not port.closed}

    def close(self) -> None:
        for port in self._ports.values():
            port.close()
        self._ports.clear()
        self._fdb.clear()

    def _switch(self, ingress: QueuePort, frames: list[bytes]) -> None:
        now = asyncio.get_running_loop().time()
        fdb = self._fdb
        stats = self.stats
        ageing = self.ageing_time
        out: dict[QueuePort, list[bytes]] = {}
        flood_to: list[QueuePort] | None = None
        for frame in frames:
            src = frame[6:12]
            if not src[0] & 1:
                entry = fdb.get(src)
                if entry is None:
                    stats.learned += 1
                elif entry[0] is not ingress:
                    stats.moved += 1
                fdb[src] = (ingress, now)
            dst = frame[:6]
            target: QueuePort | None = None
            if not is_multicast(dst):
                entry = fdb.get(dst)
                if entry is not None:
                    port, seen = entry
                    if port.closed or now - seen > ageing:
                        del fdb[dst]
                    else:
                        target = port
            if target is not None:
                if target is ingress:
                    stats.filtered += 1
                    continue
                stats.forwarded += 1
                out.setdefault(target, []).append(frame)
                continue
            stats.flooded += 1
            if flood_to is None:
                flood_to = [p for p in self._ports.values() if p is not ingress and not p.closed]
            for port in flood_to:
                out.setdefault(port, []).append(frame)
        for port, batch in out.items():
            port.deliver(batch)
