"""``Socket``: the BSD-facing object, named and behaving like ``socket.socket``.

Calls that cannot block are plain methods (``bind``, ``listen``,
``setsockopt``, ``getsockname``, ``shutdown``, ``close``...); calls that can
are coroutines (``connect``, ``accept``, ``recv``, ``recvfrom``, ``send``,
``sendto``, ``sendall``...).

**Blocking and non-blocking, one rule.** In blocking mode (the default) an
awaitable call suspends until it can complete, for at most the socket's
timeout (``settimeout``; ``TimeoutError("timed out")`` after it). In
non-blocking mode (``setblocking(False)``, ``SOCK_NONBLOCK``, or the
``MSG_DONTWAIT`` flag on one call) it never suspends: it completes at once
or raises ``BlockingIOError`` (EAGAIN, EINPROGRESS...) exactly where a
non-blocking Linux socket returns that errno. Awaiting is still required, so
code reads the same in both modes.

**Cancellation.** Cancelling an awaiting call leaves the socket as it was:
a cancelled ``recv`` takes no data from the queue.

**Readiness.** :meth:`poll` gives the poll(2) mask Linux's protocol would
(``select.POLLIN``, ``POLLPRI`` for a TCP urgent byte, ``POLLHUP``...) and
:meth:`wait` sleeps until one asked-for bit is set, for code that waits
before it calls. :attr:`on_urgent` stands in for SIGURG.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket as _socket
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Self, overload

from aiostack.errors import os_error
from aiostack.socket import options
from aiostack.socket.address import Address
from aiostack.socket.ops import ProtoOps
from aiostack.socket.poll import ALL_EVENTS, ALWAYS, POLLIN, POLLNVAL
from aiostack.socket.wait import WaitQueue

if TYPE_CHECKING:
    from aiostack.stack.stack import Stack


_TIMEO_OPTIONS = (_socket.SO_RCVTIMEO, _socket.SO_SNDTIMEO)


class _NoDeadline(contextlib.AbstractAsyncContextManager[None]):
    """What :meth:`Socket.deadline` returns when no timeout applies: enters and exits at once."""

    __slots__ = ()

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc_info: object) -> None:
        return None


#: The one do-nothing deadline every untimed call shares.
NO_DEADLINE = _NoDeadline()


@contextlib.asynccontextmanager
async def _expiring(timeout: float, error: OSError) -> AsyncIterator[None]:
    """Run the body under ``asyncio.timeout``; its own expiry becomes ``error``."""
    scope = asyncio.timeout(timeout)
    try:
        async with scope:
            yield
    except TimeoutError:
        if scope.expired():
            raise error from None
        raise


class Socket:
    """See the module docstring."""

    def __init__(
        self,
        stack: Stack,
        family: int,
        type: int,
        proto: int,
        ops: ProtoOps,
        *,
        blocking: bool = True,
    ) -> None:
        self.stack = stack
        self.family = family
        self.type = type
        self.proto = proto
        self.ops = ops
        #: The protocol's control block (UdpEndpoint, ...), owned by ``ops``.
        self.protocol_state: Any = None
        self.readers = WaitQueue()
        self.writers = WaitQueue()
        #: Called (synchronously, from the stack) on every :meth:`wake`: Linux's
        #: ``sk_data_ready``/``sk_write_space``/``sk_state_change`` in one hook, for
        #: owners that are callbacks rather than coroutines (the asyncio transports).
        #: It must only note the readiness and schedule work, never call back into the stack.
        self.on_wake: Callable[[], None] | None = None
        #: Called (synchronously, from the stack) when a new TCP urgent pointer
        #: arrives: where Linux sends SIGURG to the socket's owner (``F_SETOWN``,
        #: ``sk_send_sigurg``). Like :attr:`on_wake` it must not call back into the
        #: stack; the urgent byte itself may still be on its way (``POLLPRI`` says
        #: when it is there).
        self.on_urgent: Callable[[], None] | None = None
        #: RCV_SHUTDOWN (1) | SEND_SHUTDOWN (2), as Linux's ``sk_shutdown``.
        self.shutdown_mask = 0
        self.sndbuf = stack.settings.wmem_default
        self.closed = False
        self._timeout: float | None = None if blocking else 0.0
        #: SO_RCVTIMEO / SO_SNDTIMEO in seconds (None: wait forever). They bound the
        #: waits of a *blocking* socket only, as in the kernel; see :meth:`deadline`.
        self.rcvtimeo: float | None = None
        self.sndtimeo: float | None = None
        self._fd = stack.register_socket(self)

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"fd={self._fd}"
        return f"<aiostack.Socket {state} family={self.family} type={self.type} proto={self.proto}>"

    # -- mode ---------------------------------------------------------------

    @property
    def blocking(self) -> bool:
        return self._timeout != 0.0

    def setblocking(self, flag: bool) -> None:
        self._timeout = None if flag else 0.0

    def getblocking(self) -> bool:
        return self.blocking

    def settimeout(self, value: float | None) -> None:
        if value is not None and value < 0:
            raise ValueError("Timeout value out of range")
        self._timeout = value

    def gettimeout(self) -> float | None:
        return self._timeout

    def deadline(
        self, kernel_timeout: float | None = None, timeout_errno: int = errno.EAGAIN
    ) -> contextlib.AbstractAsyncContextManager[None]:
        """Bound a blocking call: by ``settimeout`` (the stdlib's ``TimeoutError("timed out")``)
        or, in blocking mode without one, by ``kernel_timeout`` (SO_RCVTIMEO/SO_SNDTIMEO,
        ``OSError(timeout_errno)``: EAGAIN for recv/send/accept, EINPROGRESS for connect).

        Only this context's own expiry is translated: an ETIMEDOUT raised by the
        call itself (a connection that timed out) passes through unchanged.

        Without a timeout (the common case: a blocking socket without
        SO_RCVTIMEO, or a non-blocking one, whose calls never wait) this is
        the shared :data:`NO_DEADLINE`, which does nothing: entering a
        generator-based context manager on every ``recv``/``send`` cost about
        7% of a connection's CPU time in the connections/s profile.
        """
        timeout = self._timeout
        if timeout is None:
            if kernel_timeout is None:
                return NO_DEADLINE
            return _expiring(kernel_timeout, os_error(timeout_errno))
        if timeout == 0.0:
            return NO_DEADLINE
        return _expiring(timeout, TimeoutError("timed out"))

    def fileno(self) -> int:
        """The stack's descriptor number (not an OS file descriptor); -1 once closed."""
        return -1 if self.closed else self._fd

    # -- calls that cannot block --------------------------------------------

    def bind(self, address: Any) -> None:
        self._check_open()
        self.ops.bind(self, address)

    def listen(self, backlog: int = 128) -> None:
        self._check_open()
        self.ops.listen(self, backlog)

    def getsockname(self) -> Address:
        self._check_open()
        return self.ops.getname(self, peer=False)

    def getpeername(self) -> Address:
        self._check_open()
        return self.ops.getname(self, peer=True)

    def shutdown(self, how: int) -> None:
        self._check_open()
        if how not in (_socket.SHUT_RD, _socket.SHUT_WR, _socket.SHUT_RDWR):
            raise os_error(errno.EINVAL)
        self.ops.shutdown(self, how)

    def setsockopt(self, level: int, option: int, value: int | bytes) -> None:
        self._check_open()
        if level == _socket.SOL_SOCKET and option in _TIMEO_OPTIONS:
            # sock_setsockopt handles these for every protocol.
            seconds = options.parse_timeval(value)
            if option == _socket.SO_RCVTIMEO:
                self.rcvtimeo = seconds
            else:
                self.sndtimeo = seconds
            return
        self.ops.setsockopt(self, level, option, value)

    @overload
    def getsockopt(self, level: int, option: int) -> int: ...
    @overload
    def getsockopt(self, level: int, option: int, buflen: int) -> bytes: ...
    def getsockopt(self, level: int, option: int, buflen: int | None = None) -> int | bytes:
        """As the stdlib: an int, or with ``buflen`` the option's bytes (TCP_INFO, SO_LINGER)."""
        self._check_open()
        if level == _socket.SOL_SOCKET and option in _TIMEO_OPTIONS:
            seconds = self.rcvtimeo if option == _socket.SO_RCVTIMEO else self.sndtimeo
            raw = options.pack_timeval(seconds)
            if buflen is None:
                return int.from_bytes(raw[:4], "little", signed=True)
            return raw[:buflen]
        if buflen is None:
            return self.ops.getsockopt(self, level, option)
        return self.ops.getsockopt_bytes(self, level, option, buflen)

    def ioctl(self, request: int) -> int:
        """SIOCINQ (bytes readable) and SIOCOUTQ (bytes unsent or unacknowledged)."""
        self._check_open()
        return self.ops.ioctl(self, request)

    def poll(self) -> int:
        """The poll(2) mask of this socket now: Linux's ``tcp_poll`` / ``datagram_poll`` bits.

        Every bit is reported (poll(2) would mask them with the events asked
        for); a closed socket is ``POLLNVAL``.
        """
        if self.closed:
            return POLLNVAL
        return self.ops.poll(self)

    async def wait(self, events: int = POLLIN, timeout: float | None = None) -> int:
        """Sleep until :meth:`poll` reports one of ``events``; return those bits.

        As poll(2): POLLERR, POLLHUP and POLLNVAL end the wait whether asked
        for or not, and when ``timeout`` seconds (None: no limit) pass first
        the result is 0 rather than an exception. The socket's own timeout
        does not apply: this waits for readiness, it does not transfer.
        """
        if not isinstance(events, int) or events < 0 or events & ~ALL_EVENTS:
            raise ValueError(f"events must be a mask of select.POLL* bits, got {events!r}")
        if timeout is not None and not timeout >= 0:
            raise ValueError(f"timeout must be None or >= 0, got {timeout!r}")
        wanted = events | ALWAYS
        mask = self.poll() & wanted
        if mask or timeout == 0:
            return mask
        try:
            async with asyncio.timeout(timeout):
                while not mask:
                    await self.readers.wait()
                    mask = self.poll() & wanted
        except TimeoutError:
            return 0
        return mask

    def close(self) -> None:
        """Release the socket; waiting calls fail with EBADF. Idempotent."""
        if self.closed:
            return
        self.closed = True
        self.ops.release(self)
        self.stack.unregister_socket(self._fd)
        self.wake()

    async def aclose(self) -> None:
        """Close, then wait as a lingering ``close(2)`` would; see docs/decisions.md.

        ``close()`` never waits (it cannot, being synchronous): it starts the
        graceful close (FIN after the queued data) and returns. ``aclose()``
        does the same and then, with SO_LINGER {on, t > 0} on a TCP socket,
        waits until the peer has acknowledged everything including the FIN,
        or ``t`` seconds have passed, whichever is first. As on Linux, it
        returns normally either way (the connection lives on as an orphan).
        """
        if self.closed:
            return
        self.close()
        await self.ops.linger(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- calls that can block -----------------------------------------------

    async def connect(self, address: Any) -> None:
        """Connect to ``(host, port)``; ``connect(AF_UNSPEC)`` dissolves a connection.

        Python's ``socket.connect`` has no way to pass a sockaddr whose family is
        AF_UNSPEC, so the family constant itself stands for it here: TCP aborts
        to CLOSED (RST if synchronised) and the socket may connect or listen
        again; UDP and raw sockets forget their peer.
        """
        self._check_open()
        await self.ops.connect(self, address)

    async def accept(self) -> tuple[Socket, Address]:
        self._check_open()
        return await self.ops.accept(self)

    async def recv(self, bufsize: int, flags: int = 0) -> bytes:
        self._check_open()
        if bufsize == 0:
            # As the stdlib's recv(0): done at once, nothing read, nothing consumed.
            return b""
        data, _address = await self.ops.recvmsg(self, bufsize, flags)
        return data

    def recvfrom(
        self, bufsize: int, flags: int = 0
    ) -> Coroutine[Any, Any, tuple[bytes, Address | None]]:
        """Awaitable: one datagram (or stream data) and the sender's address.

        A plain method returning the protocol's coroutine, rather than a
        coroutine wrapping it, to save a frame on the busiest receive call.
        """
        if self.closed:
            raise os_error(errno.EBADF)
        return self.ops.recvmsg(self, bufsize, flags)

    async def recv_into(
        self, buffer: bytearray | memoryview, nbytes: int = 0, flags: int = 0
    ) -> int:
        if not (nbytes or len(memoryview(buffer))):
            self._check_open()
            return 0  # as the stdlib: a zero-length read does nothing
        nbytes, _address = await self.recvfrom_into(buffer, nbytes, flags)
        return nbytes

    async def recvfrom_into(
        self, buffer: bytearray | memoryview, nbytes: int = 0, flags: int = 0
    ) -> tuple[int, Address | None]:
        self._check_open()
        view = memoryview(buffer)
        size = nbytes or len(view)
        if size > len(view):
            raise ValueError("nbytes is greater than the length of the buffer")
        data, address = await self.ops.recvmsg(self, size, flags)
        view[: len(data)] = data
        return len(data), address

    async def send(self, data: bytes | bytearray | memoryview, flags: int = 0) -> int:
        self._check_open()
        return await self.ops.sendmsg(self, _as_view(data), None, flags)

    async def sendto(self, data: bytes | bytearray | memoryview, *args: Any) -> int:
        """``sendto(data, address)`` or ``sendto(data, flags, address)``, as the stdlib."""
        self._check_open()
        if len(args) == 1:
            flags, address = 0, args[0]
        elif len(args) == 2:
            flags, address = args
        else:
            raise TypeError(f"sendto() takes 2 or 3 arguments ({len(args) + 1} given)")
        return await self.ops.sendmsg(self, _as_view(data), address, flags)

    async def sendall(self, data: bytes | bytearray | memoryview, flags: int = 0) -> None:
        self._check_open()
        view = _as_view(data)
        while view:
            sent = await self.ops.sendmsg(self, view, None, flags)
            view = view[sent:]

    # -- for the stack ------------------------------------------------------

    def wake(self) -> None:
        """Something changed (data, error, shutdown, close): let waiting calls re-check."""
        self.readers.wake_all()
        self.writers.wake_all()
        on_wake = self.on_wake
        if on_wake is not None:
            on_wake()

    def urgent(self) -> None:
        """A new TCP urgent pointer arrived: Linux's SIGURG, as :attr:`on_urgent`."""
        on_urgent = self.on_urgent
        if on_urgent is not None:
            on_urgent()

    def _check_open(self) -> None:
        if self.closed:
            raise os_error(errno.EBADF)


def _as_view(data: bytes | bytearray | memoryview) -> memoryview:
    view = memoryview(data)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")
