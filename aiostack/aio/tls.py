"""TLS for aiostack transports: the stdlib's ``SSLProtocol`` on top of a TcpTransport.

The event loop's own ``ssl=`` support is the layering used here: the raw
:class:`~aiostack.aio.transport.TcpTransport` carries an ``SSLProtocol``
(a ``BufferedProtocol`` around an ``ssl.MemoryBIO`` pair), and the
application gets that protocol's app transport. Nothing is loop-specific,
so it runs the same on the stdlib loop and on uvloop, whose own
``start_tls`` refuses transports it did not make. Why this rather than a
MemoryBIO protocol of our own: docs/decisions.md ("TLS over aiostack").

The argument checks and their messages are the loop's (``create_connection``
/ ``create_server`` / ``start_tls`` in ``asyncio.base_events``).
"""

from __future__ import annotations

import asyncio
import ssl as _ssl
from asyncio import sslproto
from typing import Any

#: What ``ssl=`` accepts: a context, True (a default client context) or nothing.
SslArg = _ssl.SSLContext | bool | None


def check_client_args(
    ssl: SslArg,
    host: str | None,
    server_hostname: str | None,
    ssl_handshake_timeout: float | None,
    ssl_shutdown_timeout: float | None,
) -> str | None:
    """Validate ``create_connection``'s TLS arguments; return the name to verify."""
    if server_hostname is not None and not ssl:
        raise ValueError("server_hostname is only meaningful with ssl")
    if server_hostname is None and ssl:
        if not host:
            raise ValueError("You must set server_hostname when using ssl without a host")
        server_hostname = host
    _check_timeouts(ssl, ssl_handshake_timeout, ssl_shutdown_timeout)
    return server_hostname


def check_server_args(
    ssl: SslArg, ssl_handshake_timeout: float | None, ssl_shutdown_timeout: float | None
) -> _ssl.SSLContext | None:
    """Validate ``create_server``'s TLS arguments: a server needs a real context."""
    if isinstance(ssl, bool):
        raise TypeError("ssl argument must be an SSLContext or None")
    _check_timeouts(ssl, ssl_handshake_timeout, ssl_shutdown_timeout)
    return ssl


def _check_timeouts(
    ssl: SslArg, ssl_handshake_timeout: float | None, ssl_shutdown_timeout: float | None
) -> None:
    if ssl_handshake_timeout is not None and not ssl:
        raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
    if ssl_shutdown_timeout is not None and not ssl:
        raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
    for name, value in (
        ("ssl_handshake_timeout", ssl_handshake_timeout),
        ("ssl_shutdown_timeout", ssl_shutdown_timeout),
    ):
        if value is not None and value <= 0:
            raise ValueError(f"{name} should be a positive number, got {value}")


def client_context(ssl: SslArg) -> _ssl.SSLContext:
    """``ssl=True`` means the default client context (certificates and hostname checked)."""
    if isinstance(ssl, _ssl.SSLContext):
        return ssl
    return _ssl.create_default_context()


def wrap(
    loop: asyncio.AbstractEventLoop,
    app_protocol: asyncio.BaseProtocol,
    context: _ssl.SSLContext,
    waiter: asyncio.Future[None],
    *,
    server_side: bool,
    server_hostname: str | None = None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
    call_connection_made: bool = True,
) -> sslproto.SSLProtocol:
    """The protocol to give the raw transport; ``waiter`` completes after the handshake."""
    # typeshed types the timeouts as int; the stdlib takes any positive number.
    factory: Any = sslproto.SSLProtocol
    protocol: sslproto.SSLProtocol = factory(
        loop,
        app_protocol,
        context,
        waiter,
        server_side,
        server_hostname,
        call_connection_made=call_connection_made,
        ssl_handshake_timeout=ssl_handshake_timeout,
        ssl_shutdown_timeout=ssl_shutdown_timeout,
    )
    return protocol


def app_transport(protocol: sslproto.SSLProtocol) -> asyncio.Transport:
    """The transport the application writes to (``SSLProtocol._app_transport``)."""
    transport: asyncio.Transport = protocol._app_transport
    return transport


async def start_tls(
    transport: asyncio.BaseTransport,
    protocol: asyncio.BaseProtocol,
    sslcontext: _ssl.SSLContext,
    *,
    server_side: bool = False,
    server_hostname: str | None = None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
) -> asyncio.Transport:
    """Upgrade an established aiostack connection to TLS; as ``loop.start_tls``.

    Works on both loops (uvloop's ``start_tls`` refuses an aiostack
    transport). Returns the new transport ``protocol`` must use from now on.
    """
    from aiostack.aio.transport import TcpTransport

    if not isinstance(sslcontext, _ssl.SSLContext):
        raise TypeError(
            f"sslcontext is expected to be an instance of ssl.SSLContext, got {sslcontext!r}"
        )
    if not isinstance(transport, TcpTransport):
        raise TypeError(f"transport {transport!r} is not supported by start_tls()")
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()
    ssl_protocol = wrap(
        loop,
        protocol,
        sslcontext,
        waiter,
        server_side=server_side,
        server_hostname=server_hostname,
        ssl_handshake_timeout=ssl_handshake_timeout,
        ssl_shutdown_timeout=ssl_shutdown_timeout,
        call_connection_made=False,
    )
    # Paused first, so that no data reaches the SSL protocol before connection_made.
    transport.pause_reading()
    transport.set_protocol(ssl_protocol)
    made = loop.call_soon(ssl_protocol.connection_made, transport)
    resumed = loop.call_soon(transport.resume_reading)
    try:
        await waiter
    except BaseException:
        transport.close()
        made.cancel()
        resumed.cancel()
        raise
    return app_transport(ssl_protocol)


__all__ = [
    "SslArg",
    "app_transport",
    "check_client_args",
    "check_server_args",
    "client_context",
    "start_tls",
    "wrap",
]
