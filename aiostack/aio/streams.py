"""Loop-style connection and server helpers, and asyncio Streams, on an aiostack stack.

These mirror the event loop's ``create_connection``/``create_server`` and
the module-level ``asyncio.open_connection``/``asyncio.start_server``, with
the stack as the first argument (an aiostack stack is not the event loop:
the loop still runs everything, the stack only replaces the kernel's
sockets). Streams are the stdlib's own ``StreamReader``,
``StreamReaderProtocol`` and ``StreamWriter``, unchanged: as the stdlib's
``open_connection`` docstring says, there is nothing special here except
some convenience, and keeping the stdlib classes means every stream
behaviour (``readline``, ``readexactly``, ``drain`` back-pressure, limits)
is exactly asyncio's.

:class:`Server` is an :class:`asyncio.AbstractServer` with asyncio 3.12's
semantics: ``wait_closed()`` returns once the server is closed *and* every
connection it accepted has been lost (3.11's returned early), and it also
offers 3.13's ``close_clients()``/``abort_clients()``.

TLS is the loop's ``ssl=`` (with ``server_hostname``,
``ssl_handshake_timeout`` and ``ssl_shutdown_timeout``): see
:mod:`aiostack.aio.tls`. With TLS the application's transport is the
stdlib's SSL app transport over a :class:`TcpTransport`.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import socket as _socket
import ssl as _ssl
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from aiostack.aio import tls
from aiostack.aio.transport import TcpTransport, TransportSocket, _nowait
from aiostack.socket.socket import Socket

if TYPE_CHECKING:
    from aiostack.stack.stack import Stack

logger = logging.getLogger("aiostack.aio")

P = TypeVar("P", bound=asyncio.BaseProtocol)

#: asyncio's pause after accept() ran out of resources (``constants.ACCEPT_RETRY_DELAY``).
ACCEPT_RETRY_DELAY = 1.0

#: asyncio's StreamReader buffer limit.
DEFAULT_LIMIT = 2**16

ClientConnectedCallback = Callable[
    [asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None] | None
]


async def create_connection(
    stack: Stack,
    protocol_factory: Callable[[], P],
    host: str | None = None,
    port: int | None = None,
    *,
    ssl: tls.SslArg = None,
    server_hostname: str | None = None,
    local_addr: tuple[str, int] | None = None,
    sock: Socket | None = None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
) -> tuple[asyncio.Transport, P]:
    """Connect to ``(host, port)`` over ``stack``; as ``loop.create_connection``.

    Returns once ``connection_made`` has run (with ``ssl``, after the TLS
    handshake). ``sock`` is an already connected aiostack stream socket to
    wrap instead. The host must be a dotted quad: aiostack has no resolver
    (a name raises ``socket.gaierror``). With ``ssl`` the name checked
    against the certificate is ``server_hostname``, by default ``host``.
    """
    server_hostname = tls.check_client_args(
        ssl, host, server_hostname, ssl_handshake_timeout, ssl_shutdown_timeout
    )
    if sock is None:
        if host is None or port is None:
            raise ValueError("host and port was not specified and no sock specified")
        sock = stack.socket(_socket.AF_INET, _socket.SOCK_STREAM)
        try:
            if local_addr is not None:
                sock.bind(local_addr)
            await sock.connect((host, port))
        except BaseException:
            sock.close()
            raise
    elif host is not None or port is not None:
        raise ValueError("host/port and sock can not be specified at the same time")
    elif sock.type != _socket.SOCK_STREAM:
        raise ValueError(f"A Stream Socket was expected, got {sock!r}")
    loop = asyncio.get_running_loop()
    try:
        protocol = protocol_factory()
    except BaseException:
        sock.close()
        raise
    waiter: asyncio.Future[None] = loop.create_future()
    if not ssl:
        transport: asyncio.Transport = TcpTransport(loop, sock, protocol, waiter)
        raw = transport
    else:
        ssl_protocol = tls.wrap(
            loop,
            protocol,
            tls.client_context(ssl),
            waiter,
            server_side=False,
            server_hostname=server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
        )
        raw = TcpTransport(loop, sock, ssl_protocol)
        transport = tls.app_transport(ssl_protocol)
    try:
        await waiter
    except BaseException:
        transport.close()
        raw.close()
        raise
    return transport, protocol


async def open_connection(
    stack: Stack,
    host: str | None = None,
    port: int | None = None,
    *,
    limit: int = DEFAULT_LIMIT,
    **kwds: Any,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """``asyncio.open_connection`` over ``stack``: the stdlib reader and writer."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    transport, _ = await create_connection(stack, lambda: protocol, host, port, **kwds)
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    return reader, writer


async def create_server(
    stack: Stack,
    protocol_factory: Callable[[], asyncio.BaseProtocol],
    host: str | Iterable[str] | None = None,
    port: int | None = None,
    *,
    sock: Socket | None = None,
    backlog: int = 100,
    reuse_address: bool | None = None,
    reuse_port: bool | None = None,
    ssl: _ssl.SSLContext | None = None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
    start_serving: bool = True,
) -> Server:
    """Listen on ``(host, port)`` of ``stack``; as ``loop.create_server``.

    ``host`` None or ``""`` listens on every address of the stack; a
    sequence of hosts makes one listening socket each. SO_REUSEADDR is on
    by default, as asyncio sets it on POSIX. ``sock`` is an already bound
    aiostack stream socket to listen on instead. ``ssl`` (a server-side
    context) makes every accepted connection TLS; a failed handshake closes
    that connection only (logged at debug level, as asyncio does).
    """
    context = tls.check_server_args(ssl, ssl_handshake_timeout, ssl_shutdown_timeout)
    if sock is not None:
        if host is not None or port is not None:
            raise ValueError("host/port and sock can not be specified at the same time")
        if sock.type != _socket.SOCK_STREAM:
            raise ValueError(f"A Stream Socket was expected, got {sock!r}")
        listeners = [sock]
    else:
        hosts = (
            [""] if host is None or host == "" else [host] if isinstance(host, str) else list(host)
        )
        listeners = []
        try:
            for name in hosts:
                lsock = stack.socket(_socket.AF_INET, _socket.SOCK_STREAM)
                listeners.append(lsock)
                if reuse_address is None or reuse_address:
                    lsock.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
                if reuse_port:
                    lsock.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEPORT, 1)
                lsock.bind((name, port or 0))
        except BaseException:
            for lsock in listeners:
                lsock.close()
            raise
    server = Server(
        asyncio.get_running_loop(),
        listeners,
        protocol_factory,
        backlog,
        ssl=context,
        ssl_handshake_timeout=ssl_handshake_timeout,
        ssl_shutdown_timeout=ssl_shutdown_timeout,
    )
    if start_serving:
        server._start_serving()
        # One loop iteration, as asyncio does, so a client can connect at once.
        await asyncio.sleep(0)
    return server


async def start_server(
    stack: Stack,
    client_connected_cb: ClientConnectedCallback,
    host: str | Iterable[str] | None = None,
    port: int | None = None,
    *,
    limit: int = DEFAULT_LIMIT,
    **kwds: Any,
) -> Server:
    """``asyncio.start_server`` over ``stack``: ``client_connected_cb(reader, writer)`` each."""
    loop = asyncio.get_running_loop()

    def factory() -> asyncio.StreamReaderProtocol:
        reader = asyncio.StreamReader(limit=limit, loop=loop)
        return asyncio.StreamReaderProtocol(reader, client_connected_cb, loop=loop)

    return await create_server(stack, factory, host, port, **kwds)


def _handshake_done(transport: TcpTransport, waiter: asyncio.Future[None]) -> None:
    """A server-side TLS handshake ended; on failure the connection goes (SSLProtocol aborts it)."""
    if waiter.cancelled():
        return
    exc = waiter.exception()
    if exc is not None:
        logger.debug("aiostack server: TLS handshake failed on %r: %r", transport, exc)
        transport.close()


class Server(asyncio.AbstractServer):
    """Listening aiostack sockets and the connections accepted on them; see the module docstring.

    No task runs for a server: each listening socket's readiness callback
    schedules an accept pass when its accept queue fills, as a selector loop
    does for a listening file descriptor.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        listeners: list[Socket],
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        backlog: int,
        *,
        ssl: _ssl.SSLContext | None = None,
        ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
    ) -> None:
        self._loop = loop
        self._ssl = ssl
        self._ssl_handshake_timeout = ssl_handshake_timeout
        self._ssl_shutdown_timeout = ssl_shutdown_timeout
        self._listeners: list[Socket] | None = listeners
        self._protocol_factory = protocol_factory
        self._backlog = backlog
        self._serving = False
        #: Listeners with an accept pass scheduled (wakes of one batch coalesce).
        self._accept_scheduled: set[Socket] = set()
        self._clients: set[TcpTransport] = set()
        self._waiters: list[asyncio.Future[None]] | None = []
        self._serving_forever_fut: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        return f"<aiostack.aio.Server sockets={self.sockets!r}>"

    # -- connections ------------------------------------------------------------

    def _attach(self, transport: TcpTransport) -> None:
        assert self._listeners is not None
        self._clients.add(transport)

    def _detach(self, transport: TcpTransport) -> None:
        self._clients.discard(transport)
        if not self._clients and self._listeners is None:
            self._wakeup()

    def _wakeup(self) -> None:
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    # -- serving ----------------------------------------------------------------

    def _start_serving(self) -> None:
        if self._serving or self._listeners is None:
            return
        self._serving = True
        for lsock in self._listeners:
            lsock.listen(self._backlog)
            lsock.setblocking(False)
            lsock.on_wake = functools.partial(self._on_listener_wake, lsock)
            # Connections may already wait in the accept queue: no wake will tell.
            self._on_listener_wake(lsock)

    def _on_listener_wake(self, lsock: Socket) -> None:
        """The listening socket's hook (the stack calls it mid-batch): only schedule.

        Accepting waits only for the end of the batch (``Stack.call_after_batch``),
        not for the next pass of the loop.
        """
        if lsock not in self._accept_scheduled:
            self._accept_scheduled.add(lsock)
            lsock.stack.call_after_batch(functools.partial(self._accept_ready, lsock))

    def _accept_ready(self, lsock: Socket) -> None:
        """Accept up to ``backlog`` connections, as asyncio does per readiness event."""
        self._accept_scheduled.discard(lsock)
        for _ in range(max(self._backlog, 1)):
            if self._listeners is None or lsock.closed:
                return
            try:
                conn, _address = _nowait(lsock.accept())
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.ECONNABORTED:
                    continue
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self._loop.call_exception_handler(
                        {
                            "message": "socket.accept() out of system resource",
                            "exception": exc,
                            "socket": TransportSocket(lsock),
                        }
                    )
                    # As asyncio: stop accepting for a while rather than spin.
                    self._loop.call_later(ACCEPT_RETRY_DELAY, self._on_listener_wake, lsock)
                    return
                self._loop.call_exception_handler(
                    {
                        "message": "aiostack server: accept() failed; no longer accepting",
                        "exception": exc,
                        "socket": TransportSocket(lsock),
                    }
                )
                lsock.on_wake = None
                return
            conn.setblocking(True)
            self._connection(conn)
        # More may be queued: look again on the next iteration.
        self._on_listener_wake(lsock)

    def _connection(self, conn: Socket) -> None:
        """One accepted connection: its protocol and transport (with TLS if configured)."""
        try:
            protocol = self._protocol_factory()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            conn.close()
            self._loop.call_exception_handler(
                {
                    "message": "Error in protocol factory of an aiostack server",
                    "exception": exc,
                    "socket": TransportSocket(conn),
                }
            )
            return
        if self._ssl is None:
            TcpTransport(self._loop, conn, protocol, server=self)
            return
        waiter: asyncio.Future[None] = self._loop.create_future()
        ssl_protocol = tls.wrap(
            self._loop,
            protocol,
            self._ssl,
            waiter,
            server_side=True,
            ssl_handshake_timeout=self._ssl_handshake_timeout,
            ssl_shutdown_timeout=self._ssl_shutdown_timeout,
        )
        transport = TcpTransport(self._loop, conn, ssl_protocol, server=self)
        # A callback, not a task per handshake: the loop holds nothing for it.
        waiter.add_done_callback(functools.partial(_handshake_done, transport))

    # -- asyncio.AbstractServer ---------------------------------------------------

    @property
    def sockets(self) -> tuple[TransportSocket, ...]:
        if self._listeners is None:
            return ()
        return tuple(TransportSocket(lsock) for lsock in self._listeners)

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return self._serving

    async def start_serving(self) -> None:
        self._start_serving()
        await asyncio.sleep(0)

    def close(self) -> None:
        """Stop listening (queued, unaccepted connections are reset); clients stay open."""
        listeners = self._listeners
        if listeners is None:
            return
        self._listeners = None
        for lsock in listeners:
            lsock.on_wake = None
            lsock.close()
        self._serving = False
        fut = self._serving_forever_fut
        if fut is not None and not fut.done():
            fut.cancel()
            self._serving_forever_fut = None
        if not self._clients:
            self._wakeup()

    def close_clients(self) -> None:
        for transport in list(self._clients):
            transport.close()

    def abort_clients(self) -> None:
        for transport in list(self._clients):
            transport.abort()

    async def wait_closed(self) -> None:
        """Wait until :meth:`close` was called and every accepted connection is gone."""
        if self._waiters is None:
            return
        waiter = self._loop.create_future()
        self._waiters.append(waiter)
        await waiter

    async def serve_forever(self) -> None:
        if self._serving_forever_fut is not None:
            raise RuntimeError(f"server {self!r} is already being awaited on serve_forever()")
        if self._listeners is None:
            raise RuntimeError(f"server {self!r} is closed")
        self._start_serving()
        self._serving_forever_fut = self._loop.create_future()
        try:
            await self._serving_forever_fut
        except asyncio.CancelledError:
            try:
                self.close()
                await self.wait_closed()
            finally:
                raise
        finally:
            self._serving_forever_fut = None

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()
        await self.wait_closed()
