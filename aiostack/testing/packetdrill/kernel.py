"""The system calls a script makes, as one interface both targets implement.

:class:`Kernel` is the small set of socket calls packetdrill scripts use,
with C-shaped arguments (descriptor numbers, option values as the bytes
``setsockopt`` takes) and C-shaped failures (``OSError`` with the errno).
The syscall interpreter (:mod:`.syscalls`) evaluates a script line into one
of these calls and checks its result; :class:`AiostackKernel` maps them onto
aiostack's socket layer and its descriptor table, and the Linux target
(:mod:`.linux`) onto real sockets in a network namespace.
"""

from __future__ import annotations

import abc
import asyncio
import errno
import os
import select
from typing import TYPE_CHECKING

from aiostack.core.tcp.state import TcpState
from aiostack.errors import os_error
from aiostack.socket.options import SIOCINQ, SIOCOUTQ
from aiostack.socket.tcp import TcpOps

if TYPE_CHECKING:
    from aiostack.socket.socket import Socket
    from aiostack.stack.stack import Stack

__all__ = ["AiostackKernel", "Kernel"]


class Kernel(abc.ABC):
    """Socket system calls by descriptor number; every failure is an ``OSError``."""

    #: When the last call really began, on the loop's clock, if that can lag
    #: behind the moment it was asked for (a call handed to a thread).
    last_call_started: float | None = None
    #: When the last call really returned, on the loop's clock, if that can be
    #: earlier than the moment the event loop hears of it (a call on a thread).
    last_call_returned: float | None = None

    def call_waiting(self) -> bool:
        """Whether the call in progress is asleep waiting for the network (or a timer).

        The runner asks when a call written to return at once has not returned
        within the tolerance. Here (a stack on virtual time) only waiting can
        make time pass during a call, so the answer is yes; a target on real
        time answers from the kernel's view of the calling thread, so that a
        call merely not yet scheduled on a loaded machine is not "blocked".
        """
        return True

    @abc.abstractmethod
    async def socket(self, domain: int, type: int, proto: int) -> int: ...

    @abc.abstractmethod
    async def bind(self, fd: int, address: tuple[str, int]) -> None: ...

    @abc.abstractmethod
    async def listen(self, fd: int, backlog: int) -> None: ...

    @abc.abstractmethod
    async def connect(self, fd: int, address: tuple[str, int]) -> None: ...

    @abc.abstractmethod
    async def accept(self, fd: int) -> int: ...

    @abc.abstractmethod
    async def send(self, fd: int, nbytes: int, flags: int) -> int: ...

    @abc.abstractmethod
    async def recv(self, fd: int, nbytes: int, flags: int) -> int:
        """Receive up to ``nbytes``; the number of bytes received."""

    @abc.abstractmethod
    async def shutdown(self, fd: int, how: int) -> None: ...

    @abc.abstractmethod
    async def close(self, fd: int) -> None: ...

    @abc.abstractmethod
    async def get_flags(self, fd: int) -> int:
        """``fcntl(fd, F_GETFL)``."""

    @abc.abstractmethod
    async def set_flags(self, fd: int, flags: int) -> None:
        """``fcntl(fd, F_SETFL, flags)``: only O_NONBLOCK changes anything on a socket."""

    @abc.abstractmethod
    async def ioctl(self, fd: int, request: int) -> int: ...

    @abc.abstractmethod
    async def setsockopt(self, fd: int, level: int, option: int, value: bytes) -> None: ...

    @abc.abstractmethod
    async def getsockopt(self, fd: int, level: int, option: int, buflen: int) -> bytes: ...

    @abc.abstractmethod
    async def poll(self, fds: list[tuple[int, int]], timeout_ms: int) -> list[int]:
        """``revents`` of each ``(fd, events)``; waits up to ``timeout_ms`` (-1: forever)."""

    @abc.abstractmethod
    async def close_all(self) -> None:
        """End of script: close every descriptor still open."""


class AiostackKernel(Kernel):
    """The calls on one aiostack :class:`~aiostack.stack.stack.Stack`, with its fd table."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack

    def _sock(self, fd: int) -> Socket:
        sock = self.stack.sockets.get(fd)
        if sock is None:
            raise os_error(errno.EBADF)
        return sock

    async def socket(self, domain: int, type: int, proto: int) -> int:
        return self.stack.socket(domain, type, proto).fileno()

    async def bind(self, fd: int, address: tuple[str, int]) -> None:
        self._sock(fd).bind(address)

    async def listen(self, fd: int, backlog: int) -> None:
        self._sock(fd).listen(backlog)

    async def connect(self, fd: int, address: tuple[str, int]) -> None:
        await self._sock(fd).connect(address)

    async def accept(self, fd: int) -> int:
        child, _address = await self._sock(fd).accept()
        return child.fileno()

    async def send(self, fd: int, nbytes: int, flags: int) -> int:
        return await self._sock(fd).send(bytes(nbytes), flags)

    async def recv(self, fd: int, nbytes: int, flags: int) -> int:
        return len(await self._sock(fd).recv(nbytes, flags))

    async def shutdown(self, fd: int, how: int) -> None:
        self._sock(fd).shutdown(how)

    async def close(self, fd: int) -> None:
        self._sock(fd).close()

    async def get_flags(self, fd: int) -> int:
        return os.O_RDWR | (0 if self._sock(fd).blocking else os.O_NONBLOCK)

    async def set_flags(self, fd: int, flags: int) -> None:
        self._sock(fd).setblocking(not flags & os.O_NONBLOCK)

    async def ioctl(self, fd: int, request: int) -> int:
        if request not in (SIOCINQ, SIOCOUTQ):
            raise os_error(errno.ENOTTY)
        return self._sock(fd).ioctl(request)

    async def setsockopt(self, fd: int, level: int, option: int, value: bytes) -> None:
        self._sock(fd).setsockopt(level, option, value)

    async def getsockopt(self, fd: int, level: int, option: int, buflen: int) -> bytes:
        return self._sock(fd).getsockopt(level, option, buflen)

    async def poll(self, fds: list[tuple[int, int]], timeout_ms: int) -> list[int]:
        loop = asyncio.get_running_loop()
        deadline = None if timeout_ms < 0 else loop.time() + timeout_ms / 1000
        while True:
            revents = [self._revents(fd, events) for fd, events in fds]
            if any(revents) or (deadline is not None and loop.time() >= deadline):
                return revents
            waits = []
            for fd, _events in fds:
                sock = self.stack.sockets.get(fd)
                if sock is not None:
                    waits += [sock.readers.wait(), sock.writers.wait()]
            tasks = [asyncio.ensure_future(w) for w in waits]
            timeout = None if deadline is None else max(deadline - loop.time(), 0.0)
            try:
                await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in tasks:
                    task.cancel()

    def _revents(self, fd: int, events: int) -> int:
        """poll(2) bits from the socket's state, following ``tcp_poll``."""
        sock = self.stack.sockets.get(fd)
        if sock is None:
            return select.POLLNVAL
        ops = sock.ops
        mask = 0
        if ops.readable(sock):
            mask |= select.POLLIN | select.POLLRDNORM
        if isinstance(ops, TcpOps):
            st = ops.state(sock)
            conn = st.conn
            state = st.tcp_state()
            if sock.shutdown_mask == 3 or (state is TcpState.CLOSE and conn is not None):
                mask |= select.POLLHUP
            if sock.shutdown_mask & 1:
                mask |= select.POLLIN | select.POLLRDNORM | select.POLLRDHUP
            if conn is not None and state not in (TcpState.SYN_SENT, TcpState.SYN_RECV):
                if not sock.shutdown_mask & 2 and conn.is_established:
                    mask |= select.POLLOUT | select.POLLWRNORM
                if conn.error:
                    mask |= select.POLLERR
        return mask & (events | select.POLLERR | select.POLLHUP | select.POLLNVAL)

    async def close_all(self) -> None:
        for sock in list(self.stack.sockets.values()):
            sock.close()
