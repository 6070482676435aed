"""uvicorn on aiostack: serve any ASGI application from a stack's listening socket.

::

    config = uvicorn.Config(app, host="", port=80, lifespan="on")
    server = StackServer(config, stack)
    task = asyncio.create_task(server.serve())      # as uvicorn.Server.serve()
    ...
    server.should_exit = True
    await task

Why a subclass
    ``uvicorn.Server.serve(sockets=...)`` takes kernel sockets, which an
    aiostack stack does not have. What uvicorn does with them is small:
    ``loop.create_server(create_protocol, sock=...)`` with its HTTP protocol
    class (``config.http_protocol_class``: h11 or httptools, with the
    WebSocket upgrade and keep-alive handling inside). :class:`StackServer`
    overrides only :meth:`startup` to make that server with
    :func:`aiostack.aio.create_server` on the stack; the lifespan protocol,
    the main loop, ``should_exit``, limits and the graceful shutdown are
    uvicorn's own (checked against uvicorn 0.54).

Differences from ``uvicorn.Server``
    ``config.host`` is an address of the stack (``""`` or ``"0.0.0.0"``: all
    of them); uvicorn's default ``"127.0.0.1"`` is not one, so it is taken
    to mean "all", as a test server on a private stack wants. A failure to
    listen raises the ``OSError`` (after the lifespan shutdown) instead of
    ``sys.exit``, because the server runs inside someone else's program.
    ``config.uds``/``config.fd`` and ``sockets=`` are refused: they name
    kernel sockets. Signals are captured as ``serve()`` always does; use
    ``should_exit`` to stop. TLS settings (``ssl_certfile``, ...) work as
    usual: uvicorn's context goes to aiostack's TLS transport.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import uvicorn

from aiostack.aio import Server, create_server
from aiostack.stack.stack import Stack

__all__ = ["StackServer"]

logger = logging.getLogger("uvicorn.error")

_ALL = {"", "0.0.0.0", "127.0.0.1"}


class StackServer(uvicorn.Server):
    """A ``uvicorn.Server`` listening on an aiostack stack; see the module docstring."""

    def __init__(self, config: uvicorn.Config, stack: Stack) -> None:
        if config.uds is not None or config.fd is not None:
            raise ValueError("config: uds and fd name kernel sockets; a stack serves host:port")
        super().__init__(config)
        self.stack = stack
        self.servers: list[Server] = []  # type: ignore[assignment]

    @property
    def port(self) -> int:
        """The bound port (useful with ``port=0``); valid once :attr:`started`."""
        if not self.servers:
            raise RuntimeError("StackServer: not started")
        port: int = self.servers[0].sockets[0].getsockname()[1]
        return port

    async def startup(self, sockets: Any = None) -> None:
        if sockets is not None:
            raise ValueError("sockets: kernel sockets cannot serve on an aiostack stack")
        await self.lifespan.startup()
        if self.lifespan.should_exit:
            raise RuntimeError("uvicorn lifespan startup failed; see the uvicorn.error log")
        config = self.config

        def create_protocol(_loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Protocol:
            protocol: asyncio.Protocol = config.http_protocol_class(  # type: ignore[call-arg]
                config=config,
                server_state=self.server_state,
                app_state=self.lifespan.state,
                _loop=_loop,
            )
            return protocol

        host = "" if config.host in _ALL else config.host
        extra: dict[str, Any] = {}
        if config.ssl is not None:
            extra["ssl"] = config.ssl
        try:
            server = await create_server(
                self.stack, create_protocol, host, config.port, backlog=config.backlog, **extra
            )
        except OSError as exc:
            logger.error("cannot listen on %s:%s of the stack: %s", host, config.port, exc)
            await self.lifespan.shutdown()
            raise
        self.servers = [server]
        address = server.sockets[0].getsockname()
        logger.info("Uvicorn running on aiostack http://%s:%d", address[0], address[1])
        self.started = True
