"""What every built-in service shares: a handle to stop it, and the UDP and TCP plumbing.

A service is a function ``await serve(stack, port=...)`` that starts
listening and returns a :class:`Service`. The handle is the one thing a
caller needs: it says what listens where (for the ``aiostack up`` ready
line and ``ss``), and :meth:`Service.aclose` (or ``async with``) stops the
listeners, ends the connections still open and waits for all of it, so
that a stack can be closed right after without tasks left behind.

TCP goes through aiostack's asyncio Streams
(:func:`aiostack.aio.streams.start_server`), so each service's TCP side
is ordinary ``StreamReader``/``StreamWriter`` code. UDP has no asyncio
Streams equivalent; a service's UDP side is one task looping on
``recvfrom`` of one aiostack socket, answering each datagram through a
plain function ``respond(payload, peer) -> reply or None``, which keeps
the per-datagram logic testable without a stack.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Self

from aiostack.aio.streams import Server, start_server
from aiostack.socket import AF_INET, SOCK_DGRAM
from aiostack.socket.address import Address

if TYPE_CHECKING:
    from aiostack.stack.stack import Stack

log = logging.getLogger("aiostack.services")

#: The largest datagram a UDP service reads (the largest IPv4 UDP payload).
MAX_DATAGRAM = 65507

StreamHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
DatagramResponder = Callable[[bytes, Address], bytes | None]


class Service:
    """A running service: its TCP server and/or UDP task on one port. Close it to stop it."""

    def __init__(
        self,
        name: str,
        port: int,
        *,
        tcp: Server | None = None,
        udp: asyncio.Task[None] | None = None,
        handlers: set[asyncio.Task[None]] | None = None,
    ) -> None:
        self.name = name
        self.port = port
        self.tcp = tcp
        self.udp = udp
        #: The running connection handlers (filled by :func:`tcp_server`).
        self.handlers: set[asyncio.Task[None]] = handlers if handlers is not None else set()
        self._closed = False

    @property
    def connections(self) -> int:
        """TCP connections whose handler is still running."""
        return len(self.handlers)

    def __repr__(self) -> str:
        return f"<Service {self.describe()}>"

    @property
    def protocols(self) -> tuple[str, ...]:
        """``("tcp", "udp")``, or the one the service speaks."""
        return tuple(p for p, on in (("tcp", self.tcp), ("udp", self.udp)) if on is not None)

    def describe(self) -> str:
        """``echo:7/tcp+udp``: what the ready line and the control socket report."""
        return f"{self.name}:{self.port}/{'+'.join(self.protocols)}"

    def close(self) -> None:
        """Stop listening and end every open connection now (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self.tcp is not None:
            self.tcp.close()
            self.tcp.close_clients()
        if self.udp is not None:
            self.udp.cancel()

    async def wait_closed(self) -> None:
        """Wait until the listeners and every connection are gone."""
        if self.tcp is not None:
            await self.tcp.wait_closed()
        if self.udp is not None:
            await asyncio.gather(self.udp, return_exceptions=True)

    async def aclose(self) -> None:
        self.close()
        await self.wait_closed()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def guarded(
    name: str, handler: StreamHandler, handlers: set[asyncio.Task[None]] | None = None
) -> StreamHandler:
    """Wrap a connection handler: a peer going away is normal, and the writer always closes.

    A bug in a handler is logged, never left to the loop's exception
    handler, so that one bad connection cannot disturb the others. The
    running handler's task is in ``handlers`` while it runs.
    """

    async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if handlers is not None and task is not None:
            handlers.add(task)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        except Exception:
            log.exception("%s: connection handler failed", name)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, TimeoutError):
                await writer.wait_closed()
            if handlers is not None and task is not None:
                handlers.discard(task)

    return run


async def tcp_server(
    stack: Stack,
    name: str,
    handler: StreamHandler,
    host: str,
    port: int,
    handlers: set[asyncio.Task[None]] | None = None,
    **kwds: object,
) -> Server:
    """Listen on ``(host, port)`` with ``handler`` wrapped by :func:`guarded`."""
    return await start_server(stack, guarded(name, handler, handlers), host, port, **kwds)  # type: ignore[arg-type]


async def udp_service(
    stack: Stack, name: str, respond: DatagramResponder, host: str, port: int
) -> asyncio.Task[None]:
    """Bind a UDP socket now (so errors surface here) and answer datagrams in a task."""
    sock = stack.socket(AF_INET, SOCK_DGRAM)
    try:
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise

    async def loop() -> None:
        try:
            while True:
                try:
                    data, peer = await sock.recvfrom(MAX_DATAGRAM)
                except OSError as exc:
                    if exc.errno == errno.EBADF or sock.closed:
                        return  # the stack closed the socket under us
                    continue  # a queued ICMP error (IP_RECVERR): nothing to answer
                if peer is None:
                    continue
                reply = respond(data, peer)
                if reply is not None:
                    try:
                        await sock.sendto(reply, peer)
                    except OSError as exc:
                        log.debug("%s: reply to %s failed: %s", name, peer, exc)
        finally:
            sock.close()

    return asyncio.create_task(loop(), name=f"{name}:udp:{port}")


async def serve_both(
    stack: Stack,
    name: str,
    port: int,
    host: str,
    *,
    handler: StreamHandler | None,
    respond: DatagramResponder | None,
) -> Service:
    """Start a service's TCP side (``handler``) and UDP side (``respond``); None skips a side.

    If the UDP side cannot start (its port is taken), the TCP side already
    listening is closed again, so a failed start leaves nothing behind.
    """
    check_port(port)
    handlers: set[asyncio.Task[None]] = set()
    server = await tcp_server(stack, name, handler, host, port, handlers) if handler else None
    try:
        task = await udp_service(stack, name, respond, host, port) if respond else None
    except BaseException:
        if server is not None:
            server.close()
        raise
    return Service(name, port, tcp=server, udp=task, handlers=handlers)


def check_port(port: int) -> int:
    """A port number in 1..65535, else ValueError naming ``port``."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"port: {port!r} is not a port number in 1..65535")
    return port
