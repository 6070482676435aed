"""The Linux kernel under test, packetdrill-style: a TUN device in a namespace of our own.

For each script the runner creates a uniquely named network namespace
(always deleted afterwards) holding a TUN device (``IFF_TUN | IFF_NO_PI``:
bare IPv4 packets, no link layer) with the stack's address 192.168.0.1/24
and a route to the script's side, 192.0.2.0/24. Script packets are written
to the TUN; the kernel's packets are read, with the kernel's own transmit
timestamps, from a packet socket on the TUN (see
:meth:`LinuxTarget._sniffed`). System calls are made on real sockets
created inside the namespace; a call that need not wait is made at once
(see :meth:`LinuxKernel._call`), and one that must wait on a thread of its
own, so that it blocks only itself. Sysctls are set with ``sysctl`` run by
``ip netns exec`` (``net.ipv4.tcp_*`` are per namespace, so the host is
untouched; the runner never sets the global ``net.core.*``).

Time is real: a script takes as long as it says, and the tolerance has a
floor (:data:`MIN_TOLERANCE_USECS`) because a loaded two-core machine
schedules a thread several milliseconds late now and then. The runner is
the clock the kernel is judged by, so it runs at a raised CPU priority
(:data:`RUNNER_NICE`, as root may) for the script's duration: on a machine
busy with other work, a late injected ACK lengthens the kernel's RTT sample
and with it every later timer, which no tolerance can fully absorb.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import platform
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from aiostack.errors import os_error
from aiostack.link import netlink
from aiostack.testing.netns import NetNamespace, tap_unavailable_reason, unique_name

from .ast import Script
from .kernel import Kernel
from .packets import LOCAL_IP
from .report import Result
from .target import Target

__all__ = [
    "MIN_TOLERANCE_USECS",
    "RUNNER_NICE",
    "LinuxKernel",
    "LinuxTarget",
    "linux_unavailable_reason",
    "punctual",
    "run_on_linux",
]

T = TypeVar("T")

#: Timing tolerance floor on real time (see the module docstring).
MIN_TOLERANCE_USECS = 50_000
#: The nice value the runner (and the call threads it starts) takes while a script
#: runs, when it may: well ahead of ordinary work, below anything real-time.
RUNNER_NICE = -10
#: The kernel's built-in values of the per-namespace TCP sysctls aiostack also has.
#: A new namespace copies the host's values, which a host may have tuned (a
#: larger tcp_rmem maximum changes the window scale), so every run starts here.
BASELINE_SYSCTLS: tuple[tuple[str, str], ...] = (
    ("net.ipv4.tcp_rmem", "4096 131072 6291456"),
    ("net.ipv4.tcp_wmem", "4096 16384 4194304"),
    ("net.ipv4.tcp_timestamps", "1"),
    ("net.ipv4.tcp_sack", "1"),
    ("net.ipv4.tcp_dsack", "1"),
    ("net.ipv4.tcp_window_scaling", "1"),
    ("net.ipv4.tcp_syn_retries", "6"),
    ("net.ipv4.tcp_synack_retries", "5"),
    ("net.ipv4.tcp_retries2", "15"),
    ("net.ipv4.tcp_fin_timeout", "60"),
    ("net.ipv4.tcp_syncookies", "1"),
    ("net.ipv4.tcp_slow_start_after_idle", "1"),
    ("net.ipv4.tcp_rfc1337", "0"),
    ("net.ipv4.tcp_ecn", "2"),
)
_SIOCINQ = 0x541B
_ETH_P_ALL = 0x0003
#: ``SO_TIMESTAMPNS`` (the stdlib does not name it): a ``struct timespec`` per packet.
_SO_TIMESTAMPNS = 35
_SIOCOUTQ = 0x5411
#: futex(2) and futex_waitv(2) numbers: a thread asleep in one waits for a lock
#: (Python's GIL), not for the network.
_FUTEX_SYSCALLS = {"x86_64": {202, 449}, "aarch64": {98, 449}, "i686": {240, 449}}


def linux_unavailable_reason() -> str | None:
    """Why the Linux target cannot run here (root, /dev/net/tun, iproute2), or None."""
    return tap_unavailable_reason()


async def _in_thread(
    fn: Callable[[], T],
    started: Callable[[], None] | None = None,
    finished: Callable[[], None] | None = None,
) -> T:
    """Run ``fn`` on a fresh daemon thread: a call that never returns strands a thread, not us.

    ``started`` runs on the thread just before ``fn``, ``finished`` just after
    it returns or raises (before the event loop hears of it).
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def deliver(ok: bool, value: object) -> None:
        if future.done():
            return
        if ok:
            future.set_result(value)  # type: ignore[arg-type]
        else:
            assert isinstance(value, BaseException)
            future.set_exception(value)

    def worker() -> None:
        if started is not None:
            started()
        try:
            value = fn()
        except BaseException as exc:
            if finished is not None:
                finished()
            if not loop.is_closed():
                loop.call_soon_threadsafe(deliver, False, exc)
            return
        if finished is not None:
            finished()
        if not loop.is_closed():
            loop.call_soon_threadsafe(deliver, True, value)

    threading.Thread(target=worker, name="packetdrill-syscall", daemon=True).start()
    return await future


def _nonblocking(sock: socket.socket) -> bool:
    """The descriptor is in O_NONBLOCK mode (the script's fcntl), so no call on it waits."""
    return sock.gettimeout() == 0.0


class LinuxKernel(Kernel):
    """Real sockets in ``namespace``, behind a script-numbered descriptor table (3, 4, ...)."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.sockets: dict[int, socket.socket] = {}
        #: The native id of the thread making the current :meth:`_call`, while it runs.
        self._call_thread: int | None = None
        #: The congestion control new TCP sockets get (see :meth:`socket`).
        self.congestion = "cubic"

    async def _call(
        self,
        fn: Callable[[], T],
        attempt: Callable[[], T] | None = None,
        *,
        nonblocking: bool = False,
    ) -> T:
        """Make a call; notes when it really began and ended.

        A call that cannot block (``nonblocking``: the descriptor is in
        O_NONBLOCK mode) is made right here, and so is ``attempt``, the same
        call asked not to wait (``MSG_DONTWAIT``, or after a zero-timeout
        poll), which raises :class:`BlockingIOError` if it would have to: as
        packetdrill makes its calls on its main thread, so that a run of
        writes leaves at the pace the script gives, not at the pace a loaded
        machine starts threads. Only a call that must wait goes to a thread
        of its own (``fn``), where it blocks only itself.
        """
        self.last_call_started = self.last_call_returned = None
        self._call_thread = None
        here = fn if nonblocking else attempt
        if here is not None:
            began = time.monotonic()
            try:
                return here()
            except BlockingIOError:
                if nonblocking:
                    raise  # EAGAIN is the answer
                # Would wait: the real call, on a thread (below).
            finally:
                self.last_call_started, self.last_call_returned = began, time.monotonic()
            self.last_call_started = self.last_call_returned = None

        def started() -> None:
            # asyncio's standard loop clock is time.monotonic().
            self._call_thread = threading.get_native_id()
            self.last_call_started = time.monotonic()

        def finished() -> None:
            self.last_call_returned = time.monotonic()
            self._call_thread = None

        return await _in_thread(fn, started, finished)

    def call_waiting(self) -> bool:
        """True when the call's thread sleeps inside its socket system call.

        That is the kernel's own answer to "is this call blocked": a thread
        that has not started yet, is runnable but not running (a loaded
        machine), or waits for Python's GIL (a futex) is only late, and the
        runner keeps waiting for it. Read from ``/proc/self/task/TID``:
        ``stat`` gives the scheduler state (``S``: interruptible sleep, which
        is how socket calls wait) and ``syscall`` the call it sleeps in.
        """
        tid = self._call_thread
        if tid is None:
            return False
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            with open(f"/proc/self/task/{tid}/syscall") as f:
                fields = f.read().split()
        except (OSError, IndexError):
            return False  # the thread has finished
        if state != "S" or not fields or fields[0] in ("running", "-1"):
            return False
        futex = _FUTEX_SYSCALLS.get(platform.machine())
        if futex is not None:
            return int(fields[0]) not in futex
        try:  # an architecture whose numbers we do not know: the kernel function's name
            with open(f"/proc/self/task/{tid}/wchan") as f:
                return "futex" not in f.read()
        except OSError:
            return True

    def _sock(self, fd: int) -> socket.socket:
        sock = self.sockets.get(fd)
        if sock is None:
            raise os_error(errno.EBADF)
        return sock

    def _register(self, sock: socket.socket) -> int:
        fd = 3
        while fd in self.sockets:
            fd += 1
        self.sockets[fd] = sock
        return fd

    async def socket(self, domain: int, type: int, proto: int) -> int:
        sock = await _in_thread(
            lambda: netlink.run_in_netns(self.namespace, lambda: socket.socket(domain, type, proto))
        )
        if sock.type == socket.SOCK_STREAM:
            # The namespace's default algorithm is the host's (often bbr, which also
            # paces), and a namespace may only choose among the host's "allowed"
            # ones; with CAP_NET_ADMIN a socket may choose any, so each gets the
            # production default (or what the script's sysctl asked for) itself.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, self.congestion.encode())
        return self._register(sock)

    async def bind(self, fd: int, address: tuple[str, int]) -> None:
        self._sock(fd).bind(address)

    async def listen(self, fd: int, backlog: int) -> None:
        self._sock(fd).listen(backlog)

    async def connect(self, fd: int, address: tuple[str, int]) -> None:
        sock = self._sock(fd)
        # A blocking connect() always waits for the handshake.
        await self._call(lambda: sock.connect(address), nonblocking=_nonblocking(sock))

    async def accept(self, fd: int) -> int:
        sock = self._sock(fd)

        def attempt() -> tuple[socket.socket, object]:
            if not select.select([sock], [], [], 0)[0]:
                raise BlockingIOError(errno.EAGAIN, "nothing to accept yet")
            return sock.accept()  # a connection is queued: returns at once

        child, _address = await self._call(sock.accept, attempt, nonblocking=_nonblocking(sock))
        # accept(2) gives a blocking descriptor whatever the listener's mode.
        child.setblocking(True)
        return self._register(child)

    async def send(self, fd: int, nbytes: int, flags: int) -> int:
        sock = self._sock(fd)
        data = bytes(nbytes)
        if _nonblocking(sock):
            return await self._call(lambda: sock.send(data, flags), nonblocking=True)
        sent = 0

        def attempt() -> int:
            nonlocal sent
            sent = sock.send(data, flags | socket.MSG_DONTWAIT)
            if sent < len(data):
                # The buffer is full: a blocking send() copies what fits (as here)
                # and waits for room for the rest, done below on a thread.
                raise BlockingIOError(errno.EAGAIN, "send buffer full")
            return sent

        def rest() -> int:
            return sent + sock.send(data[sent:], flags)

        return await self._call(rest, attempt)

    async def recv(self, fd: int, nbytes: int, flags: int) -> int:
        sock = self._sock(fd)
        attempt = None
        if not flags & socket.MSG_WAITALL:

            def attempt() -> bytes:
                return sock.recv(nbytes, flags | socket.MSG_DONTWAIT)

        got = await self._call(
            lambda: sock.recv(nbytes, flags), attempt, nonblocking=_nonblocking(sock)
        )
        return len(got)

    async def shutdown(self, fd: int, how: int) -> None:
        self._sock(fd).shutdown(how)

    async def close(self, fd: int) -> None:
        self._sock(fd).close()
        del self.sockets[fd]

    async def get_flags(self, fd: int) -> int:
        return fcntl.fcntl(self._sock(fd).fileno(), fcntl.F_GETFL)

    async def set_flags(self, fd: int, flags: int) -> None:
        # Through the socket object, so Python's idea of the mode follows the descriptor's.
        self._sock(fd).setblocking(not flags & os.O_NONBLOCK)

    async def ioctl(self, fd: int, request: int) -> int:
        if request not in (_SIOCINQ, _SIOCOUTQ):
            raise os_error(errno.ENOTTY)
        raw = fcntl.ioctl(self._sock(fd).fileno(), request, b"\0" * 4)
        return int(struct.unpack("i", raw)[0])

    async def setsockopt(self, fd: int, level: int, option: int, value: bytes) -> None:
        self._sock(fd).setsockopt(level, option, value)

    async def getsockopt(self, fd: int, level: int, option: int, buflen: int) -> bytes:
        return self._sock(fd).getsockopt(level, option, buflen)

    async def poll(self, fds: list[tuple[int, int]], timeout_ms: int) -> list[int]:
        poller = select.poll()
        real: dict[int, int] = {}
        for fd, events in fds:
            sock = self.sockets.get(fd)
            if sock is None:
                continue
            real[sock.fileno()] = fd
            poller.register(sock.fileno(), events)

        def attempt() -> list[tuple[int, int]]:
            ready = poller.poll(0)
            if not ready and timeout_ms != 0:
                raise BlockingIOError(errno.EAGAIN, "nothing ready yet")
            return ready

        got = dict(await self._call(lambda: poller.poll(timeout_ms), attempt))
        return [
            got.get(self.sockets[fd].fileno(), 0) if fd in self.sockets else select.POLLNVAL
            for fd, _events in fds
        ]

    async def close_all(self) -> None:
        for sock in self.sockets.values():
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in accept/recv
            with contextlib.suppress(OSError):
                # Abort rather than linger: a script's SO_LINGER must not stall teardown.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        self.sockets.clear()


class LinuxTarget(Target):
    """See the module docstring. Run it on a standard (real-time) event loop."""

    name = "linux"
    min_tolerance_usecs = MIN_TOLERANCE_USECS
    any_time_wait = 10.0
    late_grace = 0.5

    def __init__(self) -> None:
        super().__init__()
        self.namespace: NetNamespace | None = None
        self.tun_fd = -1
        self.sniffer: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        namespace = NetNamespace(prefix="pdrill")
        self.namespace = namespace
        await _in_thread(namespace.create)
        self.kernel = LinuxKernel(namespace.name)
        ifname = unique_name("pdtun")
        baseline = (
            ("net.ipv6.conf.all.disable_ipv6", "1"),
            ("net.ipv6.conf.default.disable_ipv6", "1"),
            *BASELINE_SYSCTLS,
        )
        await self._write_sysctls(baseline)

        def open_tun() -> int:
            fd = os.open(netlink.TUN_DEVICE, os.O_RDWR | os.O_CLOEXEC | os.O_NONBLOCK)
            try:
                fcntl.ioctl(
                    fd,
                    netlink.TUNSETIFF,
                    netlink.tun_ifreq(ifname, netlink.IFF_TUN | netlink.IFF_NO_PI),
                )
            except BaseException:
                os.close(fd)
                raise
            return fd

        self.tun_fd = await _in_thread(lambda: netlink.run_in_netns(namespace.name, open_tun))
        for argv in (
            ("ip", "link", "set", "lo", "up"),
            ("ip", "addr", "add", f"{LOCAL_IP}/24", "dev", ifname),
            ("ip", "link", "set", ifname, "up"),
            ("ip", "route", "add", "192.0.2.0/24", "dev", ifname),
        ):
            done = await namespace.run_async(*argv)
            if done.returncode != 0:
                raise OSError(f"{' '.join(argv)}: {done.stderr.decode().strip()}")

        def open_sniffer() -> socket.socket:
            # ETH_P_ALL: only "all protocols" taps see outgoing packets (dev_queue_xmit_nit).
            sniffer = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(_ETH_P_ALL))
            try:
                sniffer.bind((ifname, _ETH_P_ALL))
                sniffer.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
                sniffer.setblocking(False)
            except BaseException:
                sniffer.close()
                raise
            return sniffer

        self.sniffer = await _in_thread(lambda: netlink.run_in_netns(namespace.name, open_sniffer))
        self._loop.add_reader(self.tun_fd, self._drain_tun)
        self._loop.add_reader(self.sniffer.fileno(), self._sniffed)
        self.reset_clock()

    def _drain_tun(self) -> None:
        """The TUN's copy of each packet: read only so its queue never fills (see _sniffed)."""
        while True:
            try:
                os.read(self.tun_fd, 65536)
            except OSError:  # BlockingIOError: drained
                break

    def _sniffed(self) -> None:
        """The kernel's packets, stamped by the kernel as they left for the TUN.

        Reading the TUN would stamp a packet when this process gets to run,
        which a loaded machine delays by tens of milliseconds; a packet
        socket's SO_TIMESTAMPNS is taken in the transmit path itself.
        """
        assert self.sniffer is not None
        # CLOCK_REALTIME stamps to the loop's CLOCK_MONOTONIC, read back to back.
        offset = time.time() - time.monotonic()
        while True:
            try:
                packet, ancillary, _flags, address = self.sniffer.recvmsg(
                    65536, socket.CMSG_SPACE(16)
                )
            except OSError:  # BlockingIOError: drained
                break
            if address[2] != socket.PACKET_OUTGOING:
                continue  # our own injected packets come back as incoming
            sent = time.monotonic()
            for level, kind, data in ancillary:
                if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(data) >= 16:
                    seconds, nanoseconds = struct.unpack_from("qq", data)
                    sent = seconds + nanoseconds / 1e9 - offset
            self.deliver(packet, self.script_time(sent))

    async def aclose(self) -> None:
        if isinstance(getattr(self, "kernel", None), LinuxKernel):
            await self.kernel.close_all()
        if self.sniffer is not None:
            if self._loop is not None:
                self._loop.remove_reader(self.sniffer.fileno())
            self.sniffer.close()
            self.sniffer = None
        if self.tun_fd >= 0:
            if self._loop is not None:
                self._loop.remove_reader(self.tun_fd)
            os.close(self.tun_fd)
            self.tun_fd = -1
        namespace, self.namespace = self.namespace, None
        if namespace is not None:
            await _in_thread(namespace.delete)

    def inject(self, packet: bytes) -> None:
        os.write(self.tun_fd, packet)

    async def _write_sysctls(self, settings: tuple[tuple[str, str], ...]) -> None:
        """``sysctl -w`` inside the namespace (``ip netns exec``): its own values, not the host's.

        A thread that joined the namespace with ``setns`` may not write
        ``/proc/sys/net`` (the procfs mount belongs to the host's namespace);
        ``ip netns exec`` gives the command a matching view.
        """
        assert self.namespace is not None
        result = await self.namespace.run_async(
            "sysctl", "-q", "-w", *(f"{name}={value}" for name, value in settings)
        )
        if result.returncode != 0:
            message = result.stderr.decode().strip() or f"exit status {result.returncode}"
            raise OSError(errno.EINVAL, message)

    async def sysctl(self, name: str, value: str) -> None:
        if name == "net.ipv4.tcp_congestion_control" and isinstance(self.kernel, LinuxKernel):
            self.kernel.congestion = value.strip()  # see LinuxKernel.socket
            return
        try:
            await self._write_sysctls(((name, value),))
        except OSError as exc:
            self.notes.append(f"sysctl {name}={value} ignored: {exc.strerror}")


@contextlib.contextmanager
def punctual() -> Iterator[None]:
    """Run the calling thread (and threads it starts) at :data:`RUNNER_NICE`, then restore.

    On Linux the nice value is per thread and inherited by new threads, so
    the event loop and each system call's thread get it. Without the
    privilege (not root) the script runs at the priority it has.
    """
    try:
        before = os.getpriority(os.PRIO_PROCESS, 0)
        if before <= RUNNER_NICE:
            yield
            return
        os.setpriority(os.PRIO_PROCESS, 0, RUNNER_NICE)
    except OSError:
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, before)


def run_on_linux(script: Script) -> Result:
    """Run ``script`` against the kernel in a fresh namespace (needs root)."""
    from .runner import run_target

    reason = linux_unavailable_reason()
    if reason is not None:
        from .packets import Unsupported

        raise Unsupported(f"the linux target: {reason}")
    with punctual():
        return asyncio.run(run_target(script, LinuxTarget()))
