"""``Stack``: one TCP/IP stack on one device, as an async context manager.

::

    async with Stack(device, address="198.18.0.2/24", gateway="198.18.0.1") as stack:
        sock = stack.socket(AF_INET, SOCK_DGRAM)
        ...

A stack owns its device and five tasks: link receive, IP, transport, link
transmit, and the timer (see docs/architecture.md for the path of a
packet). Between the receive side's tasks sit :class:`BatchQueue` s; the
transmit side has one queue in front of the device, which never drops what
the stack produced: at its bound the producer writes the backlog to the
device itself (:class:`TransmitQueue`). Sending from a socket
runs the (pure) transport and IP output code right in the caller, because
the caller is already running and a queue hop there would add a task switch
without batching anything; the frames then join the transmit queue. A
layer whose consumer is idle with nothing queued hands its batch on in the
same pass of the loop (:meth:`BatchQueue.hand_on`, docs/decisions.md): the
consumer would have taken exactly that batch on its next pass. A TAP hands
its batch to the link layer in its own readiness callback while the
receive task is parked, and the sockets' readiness callbacks (the asyncio
transports) run when the batch is done, still in that pass
(:meth:`Stack.run_batch`, :meth:`Stack.call_after_batch`).

Every protocol rule lives in :mod:`aiostack.core`; this module only builds
the core objects, moves batches between them, reads the clock and wakes
sockets. Several stacks can share one process and one event loop.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import os
import random
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Self, TypeVar

from aiostack.core.arp import ArpLayer
from aiostack.core.counters import Counters
from aiostack.core.icmp import TransportError
from aiostack.core.ipv4 import Ipv4Layer
from aiostack.core.neighbor import NeighborTable
from aiostack.core.ping import PingTable
from aiostack.core.route import Interface, RoutingTable
from aiostack.core.udp import UdpLayer
from aiostack.link.base import DeviceClosed, NetDevice
from aiostack.settings import Settings
from aiostack.stack.l2 import LinkLayer, LinkOutput
from aiostack.stack.l3 import IpTask, TransportInput
from aiostack.stack.l4 import TransportTask
from aiostack.stack.ping import Pinger
from aiostack.stack.queues import BatchQueue, TransmitQueue
from aiostack.stack.tcp import TcpLayer
from aiostack.stack.timer import TimerTask
from aiostack.wire import ethernet, ipv4

if TYPE_CHECKING:
    import ssl as _ssl

    from aiostack.aio.datagram import DatagramTransport
    from aiostack.aio.streams import Server
    from aiostack.socket.socket import Socket

_P = TypeVar("_P", bound=asyncio.BaseProtocol)
_B = TypeVar("_B")

log = logging.getLogger("aiostack")


def random_mac(rng: random.Random) -> bytes:
    """A random locally administered unicast MAC (the 0x02 bit set, 0x01 clear)."""
    octets = bytearray(rng.getrandbits(8) for _ in range(6))
    octets[0] = (octets[0] & 0xFC) | 0x02
    return bytes(octets)


class Stack:
    """See the module docstring.

    ``address`` is one ``"ADDRESS/PREFIX"`` or several; ``gateway`` adds a
    default route. ``mac`` defaults to a random locally administered one.
    ``seed`` makes everything random in the stack (MAC, ports, ICMP
    identifiers, IP IDs) repeatable. ``privileged`` says whether sockets may
    bind ports below ``ip_unprivileged_port_start``; by default they may
    when the process runs as root, as with the kernel.
    """

    def __init__(
        self,
        device: NetDevice,
        *,
        address: str | Iterable[str] = (),
        gateway: str | None = None,
        mac: bytes | str | None = None,
        settings: Settings | None = None,
        seed: int | None = None,
        privileged: bool | None = None,
        queue_limit: int = 4096,
    ) -> None:
        self.device = device
        self.settings = settings if settings is not None else Settings()
        self.rng = random.Random(seed)
        if isinstance(mac, str):
            mac = ethernet.mac_from_str(mac)
        if mac is not None and (len(mac) != 6 or mac[0] & 1):
            raise ValueError(f"mac: {mac.hex(':')} is not a unicast MAC address")
        self.mac: bytes = mac if mac is not None else random_mac(self.rng)
        self.privileged = os.geteuid() == 0 if privileged is None else privileged
        self.counters = Counters()
        self.routes = RoutingTable()
        for text in [address] if isinstance(address, str) else address:
            self.routes.add_address(Interface.parse(text))
        if gateway is not None:
            self.routes.set_default_gateway(ipv4.addr(gateway))
        self.neighbors = NeighborTable(self.settings, self.counters)
        self.arp = ArpLayer(self.mac, self.routes, self.neighbors, self.counters)
        self.queue_limit = queue_limit
        self.sockets: dict[int, Socket] = {}
        # Descriptor numbers: the next never used, and the freed ones below it.
        self._next_fd = 3
        self._free_fds: list[int] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._state = "new"
        # Readiness callbacks to run once the batch being processed is done;
        # None while no batch is being processed (see call_after_batch).
        self._after_batch: list[Callable[[], object]] | None = None
        #: Set when the device went away under a running stack (a TAP deleted
        #: with ``ip link del`` or with its namespace): the layers have stopped,
        #: and whoever runs the stack (``aiostack up``) should close it.
        self.device_lost = asyncio.Event()

    # -- life cycle ---------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Open the device, start the layer tasks and announce our addresses."""
        if self._state != "new":
            raise RuntimeError(f"stack: cannot start a stack that is {self._state}")
        self._state = "starting"
        self._loop = asyncio.get_running_loop()
        await self.device.open()
        device = self.device
        self.link = LinkLayer(self)
        self.ip = Ipv4Layer(
            self.settings,
            self.counters,
            self.routes,
            mtu=device.mtu,
            headroom=self.link.eth_offset + ethernet.HEADER_LEN,
            rng=self.rng,
        )
        self.udp = UdpLayer(self.settings, self.counters, self.ip, self.rng)
        self.pinger = Pinger(self, self.rng.getrandbits(16))
        self.ping_sockets = PingTable(self.counters)
        self.ip_queue: BatchQueue[tuple[memoryview, bool, bool]] = BatchQueue(
            "ip_in", self.counters, self.queue_limit
        )
        self.l4_queue: BatchQueue[TransportInput] = BatchQueue(
            "transport_in", self.counters, self.queue_limit
        )
        # Locally produced frames: pushes back at the bound instead of dropping.
        self.tx_queue: TransmitQueue[LinkOutput] = TransmitQueue(
            "link_out", self.counters, self.link.transmit_direct, self.queue_limit
        )
        self.timer = TimerTask(self)
        self.tcp = TcpLayer(self)
        self.ip_task = ip_task = IpTask(self)
        self.transport_task = transport = TransportTask(self)
        name = device.name
        self._tasks = [
            asyncio.create_task(self._guard("link-rx", self.link.rx_task), name=f"{name}:link-rx"),
            asyncio.create_task(self._guard("link-tx", self.link.tx_task), name=f"{name}:link-tx"),
            asyncio.create_task(self._guard("ip", ip_task.run), name=f"{name}:ip"),
            asyncio.create_task(self._guard("transport", transport.run), name=f"{name}:transport"),
            asyncio.create_task(self._guard("timer", self.timer.run), name=f"{name}:timer"),
        ]
        self._state = "running"
        if self.settings.arp_notify:
            frames = [
                self.link.arp_frame(self.arp.announce(i.address)) for i in self.routes.interfaces
            ]
            if frames:
                device.send_batch(frames)

    async def aclose(self) -> None:
        """Close every socket, stop the tasks, close the device. Idempotent."""
        if self._state in ("closed", "closing"):
            return
        if self._state == "new":
            self._state = "closed"
            await self.device.aclose()
            return
        self._state = "closing"
        for sock in list(self.sockets.values()):
            sock.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self.device.aclose()
        self._state = "closed"

    async def _guard(self, layer: str, body: Any) -> None:
        """Run a layer task; a closed device ends it quietly."""
        try:
            await body()
        except DeviceClosed:
            log.debug("%s: device closed, %s task ends", self.device.name, layer)
            if self._state == "running":
                self.device_lost.set()

    def internal_error(self, layer: str) -> None:
        """A bug in a layer: count and log it, and keep the stack running."""
        self.counters.drop(f"{layer}.internal_error")
        log.exception("%s: internal error in the %s layer", self.device.name, layer)

    @property
    def running(self) -> bool:
        return self._state == "running"

    # -- plumbing used by the layer tasks -----------------------------------

    def now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def run_batch(self, process: Callable[[_B], None], batch: _B) -> None:
        """Run a layer's batch function, then the readiness callbacks it asked for.

        Every layer task (and the device's direct receive) enters the stack
        through here. While ``process`` runs, :meth:`call_after_batch` only
        collects callbacks; they run when the outermost batch is done, in
        the same pass of the event loop, where no layer is mid-batch and
        protocol code may write (and so re-enter the stack) safely. This is
        what lets a segment's data reach ``Protocol.data_received`` in the
        pass that read the frame, as a selector transport's ``_read_ready``
        reaches it in the pass that saw the descriptor readable.
        If ``process`` raises, the callbacks still run and the exception
        goes on to the caller (a layer task that ends on ``DeviceClosed``).
        """
        if self._after_batch is not None:  # nested: the outermost batch runs them
            process(batch)
            return
        pending: list[Callable[[], object]] = []
        self._after_batch = pending
        try:
            process(batch)
        finally:
            self._after_batch = None
            if pending:
                self._run_callbacks(pending)

    def call_after_batch(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` as soon as no layer is mid-batch.

        Inside a batch (:meth:`run_batch`): when the batch is done, in this
        pass of the loop. Anywhere else (a socket call, which must not be
        re-entered from its own wake-up): on the next pass, with
        ``call_soon``. Socket readiness hooks (:attr:`Socket.on_wake`) use
        this instead of ``call_soon``, which cost every received segment
        one more pass of the event loop before the application saw it.
        """
        pending = self._after_batch
        if pending is not None:
            pending.append(callback)
        else:
            assert self._loop is not None
            self._loop.call_soon(callback)

    def _run_callbacks(self, callbacks: list[Callable[[], object]]) -> None:
        """Readiness callbacks after a batch; an exception is the loop's to report, as
        an exception in a ``call_soon`` callback would have been."""
        for callback in callbacks:
            try:
                callback()
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                assert self._loop is not None
                self._loop.call_exception_handler(
                    {"message": f"Exception in callback {callback!r}", "exception": exc}
                )

    def flush_ip_output(self) -> None:
        """Hand whatever the IP layer produced to the transmit task."""
        ip = self.ip
        if ip.outbox:
            self.tx_queue.hand_on(ip.outbox, self.link.transmit_direct)
            ip.outbox = []

    def take_pending_input(self, until: float, max_frames: int) -> int:
        """Run the input already waiting up the stack, oldest first; return the frames taken.

        The timer task calls this once when timers fall due: an ACK waiting
        in a layer queue or in the device must cancel the retransmission
        that its connection's timer would otherwise send, as in Linux, where
        the NAPI poll processes it on arrival (docs/decisions.md). Layer
        queues go first (their items arrived before anything still in the
        device), then the device's frames (:meth:`NetDevice.poll_batch`), a
        batch at a time, until it has none, ``max_frames`` were taken or the
        clock passed ``until``: the bound that keeps an input flood from
        starving timers. It runs to completion without yielding, so what it
        drains is the backlog, not a peer's steady flow (in one process, a
        peer cannot add to it meanwhile). A device that cannot be polled
        (every wrapper) is left to its receive task. Nothing is done per
        connection.
        """
        self._run_queued()
        device = self.device
        receive = self.link.receive_direct
        taken = 0
        while taken < max_frames:
            frames = device.poll_batch()
            if not frames:
                break
            taken += len(frames)
            receive(frames)
            self._run_queued()  # behind a consumer that was already woken: run it now too
            if self.now() >= until:
                break
        return taken

    def _run_queued(self) -> None:
        """Run what waits in the IP and transport queues, IP first.

        The IP layer's output joins the transport queue behind what was
        already there, so taking the transport queue last keeps arrival order.
        """
        ip_queue = self.ip_queue
        if ip_queue:
            self.run_batch(self.ip_task.process, ip_queue.get_nowait())
        l4_queue = self.l4_queue
        if l4_queue:
            self.run_batch(self.transport_task.process, l4_queue.get_nowait())

    def next_deadline(self) -> float | None:
        deadlines = [
            d
            for d in (self.neighbors.poll_at(), self.ip.poll_at(), self.tcp.poll_at())
            if d is not None
        ]
        return min(deadlines) if deadlines else None

    def poll_timers(self, now: float) -> None:
        neighbors = self.neighbors
        neighbors.poll(now)
        if neighbors.solicitations:
            self.device.send_batch(self.link.solicit())
        if neighbors.failures:
            errors: list[TransportInput] = []
            for _address, frames in neighbors.failures:
                for frame in frames:
                    error: TransportError | None = self.ip.link_failure(frame)
                    if error is not None:
                        errors.append(error)
            neighbors.failures.clear()
            self.l4_queue.put(errors)
        self.ip.poll(now)
        self.tcp.poll(now)
        self.flush_ip_output()

    # -- the user's API -----------------------------------------------------

    def socket(self, family: int = 2, type: int = 1, proto: int = 0) -> Socket:
        """A new socket, as ``socket.socket(family, type, proto)`` (AF_INET only)."""
        from aiostack.socket.family import create_socket

        if not self.running:
            raise RuntimeError("stack: sockets need a running stack (use 'async with Stack(...)')")
        return create_socket(self, family, type, proto)

    async def ping(
        self, address: str, payload: bytes = bytes(range(56)), timeout: float | None = 5.0
    ) -> float:
        """Send one ICMP echo request; return the round-trip time in seconds.

        Raises TimeoutError without a reply, or the OSError an ICMP error or
        a failed ARP resolution gives (EHOSTUNREACH, ENETUNREACH...).
        """
        if not self.running:
            raise RuntimeError("stack: ping needs a running stack (use 'async with Stack(...)')")
        return await self.pinger.ping(ipv4.addr(address), payload, timeout)

    # -- asyncio (thin wrappers over aiostack.aio, with the loop's signatures) --

    async def create_connection(
        self,
        protocol_factory: Callable[[], _P],
        host: str | None = None,
        port: int | None = None,
        *,
        ssl: _ssl.SSLContext | bool | None = None,
        server_hostname: str | None = None,
        local_addr: tuple[str, int] | None = None,
        sock: Socket | None = None,
        ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
    ) -> tuple[asyncio.Transport, _P]:
        """``loop.create_connection`` on this stack: see :func:`aiostack.aio.create_connection`."""
        from aiostack import aio

        return await aio.create_connection(
            self,
            protocol_factory,
            host,
            port,
            ssl=ssl,
            server_hostname=server_hostname,
            local_addr=local_addr,
            sock=sock,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
        )

    async def create_server(
        self,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        host: str | Iterable[str] | None = None,
        port: int | None = None,
        *,
        sock: Socket | None = None,
        backlog: int = 100,
        ssl: _ssl.SSLContext | None = None,
        reuse_address: bool | None = None,
        reuse_port: bool | None = None,
        ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
        start_serving: bool = True,
    ) -> Server:
        """``loop.create_server`` on this stack: see :func:`aiostack.aio.create_server`."""
        from aiostack import aio

        return await aio.create_server(
            self,
            protocol_factory,
            host,
            port,
            sock=sock,
            backlog=backlog,
            ssl=ssl,
            reuse_address=reuse_address,
            reuse_port=reuse_port,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
            start_serving=start_serving,
        )

    async def open_connection(
        self, host: str | None = None, port: int | None = None, *, limit: int = 2**16, **kwds: Any
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """``asyncio.open_connection`` on this stack (``kwds`` as :meth:`create_connection`)."""
        from aiostack import aio

        return await aio.open_connection(self, host, port, limit=limit, **kwds)

    async def start_server(
        self,
        client_connected_cb: Callable[
            [asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None] | None
        ],
        host: str | Iterable[str] | None = None,
        port: int | None = None,
        *,
        limit: int = 2**16,
        **kwds: Any,
    ) -> Server:
        """``asyncio.start_server`` on this stack (``kwds`` as :meth:`create_server`)."""
        from aiostack import aio

        return await aio.start_server(self, client_connected_cb, host, port, limit=limit, **kwds)

    async def create_datagram_endpoint(
        self,
        protocol_factory: Callable[[], _P],
        local_addr: tuple[str, int] | None = None,
        remote_addr: tuple[str, int] | None = None,
        *,
        family: int = 0,
        proto: int = 0,
        flags: int = 0,
        reuse_port: bool | None = None,
        allow_broadcast: bool | None = None,
        sock: Socket | None = None,
    ) -> tuple[DatagramTransport, _P]:
        """``loop.create_datagram_endpoint`` on this stack (UDP over IPv4)."""
        from aiostack import aio

        return await aio.create_datagram_endpoint(
            self,
            protocol_factory,
            local_addr,
            remote_addr,
            family=family,
            proto=proto,
            flags=flags,
            reuse_port=reuse_port,
            allow_broadcast=allow_broadcast,
            sock=sock,
        )

    def add_neighbor(self, address: str, mac: bytes | str) -> None:
        """A permanent ARP entry, like ``ip neigh add ADDRESS lladdr MAC nud permanent``."""
        if isinstance(mac, str):
            mac = ethernet.mac_from_str(mac)
        if len(mac) != 6 or mac[0] & 1:
            raise ValueError(f"mac: {mac.hex(':')} is not a unicast MAC address")
        waiting = self.neighbors.add_permanent(self.now(), ipv4.addr(address), mac)
        if waiting:
            for frame in waiting:
                self.link.frame(frame, mac)
            self.device.send_batch(waiting)

    @property
    def addresses(self) -> list[str]:
        return [str(i) for i in self.routes.interfaces]

    def statistics(self) -> dict[str, Any]:
        """Counters: ``mib`` (Linux SNMP names), ``drops`` by reason, ``device``."""
        stats = self.device.stats
        return {
            "mib": self.counters.snapshot(),
            "drops": dict(self.counters.drops),
            "device": {
                "rx_frames": stats.rx_frames,
                "rx_bytes": stats.rx_bytes,
                "tx_frames": stats.tx_frames,
                "tx_bytes": stats.tx_bytes,
                "drops": dict(stats.drops),
            },
        }

    # -- descriptor table ---------------------------------------------------

    def register_socket(self, sock: Socket) -> int:
        """Give ``sock`` the lowest free descriptor number from 3 up, as Linux does.

        Like the kernel's ``next_fd`` hint over its open-fds bitmap, this is
        not a scan from 3: numbers above :attr:`_next_fd` were never handed
        out, and freed ones below it wait in a min-heap. A scan cost O(n)
        per socket, which made accepting 10,000 connections quadratic.
        """
        if self._free_fds:
            fd = heapq.heappop(self._free_fds)
        else:
            fd = self._next_fd
            self._next_fd += 1
        self.sockets[fd] = sock
        return fd

    def unregister_socket(self, fd: int) -> None:
        if self.sockets.pop(fd, None) is not None:
            heapq.heappush(self._free_fds, fd)
