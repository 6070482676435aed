"""aiohttp on aiostack: serve a web application on a stack, and make requests through one.

Server side, :class:`StackSite` is ``aiohttp.web.TCPSite`` with the listening
socket on an aiostack stack instead of the kernel::

    runner = web.AppRunner(app)
    await runner.setup()
    site = StackSite(runner, stack, port=80)
    await site.start()                  # http://<stack address>:80/
    ...
    await runner.cleanup()              # stops the site, drains keep-alive connections

aiohttp's request handler is an ``asyncio.Protocol``, so the site only has
to hand ``runner.server`` to :func:`aiostack.aio.create_server`; keep-alive,
pipelining, timeouts and graceful shutdown are aiohttp's own code, running
on :class:`~aiostack.aio.TcpTransport`.

Client side, :class:`StackConnector` is an ``aiohttp.TCPConnector`` whose
connections are opened by :func:`aiostack.aio.create_connection` on a
stack, so ``aiohttp.ClientSession(connector=StackConnector(stack))`` sends
every request through aiostack, with aiohttp's connection pooling,
keep-alive reuse, limits and timeouts unchanged.

How the connector hooks in
    ``TCPConnector`` resolves the URL's host (an IP literal needs no
    resolver), then calls its ``_wrap_create_connection`` method, which
    normally opens a kernel socket (happy eyeballs) and passes it to
    ``loop.create_connection(sock=...)``. :class:`StackConnector` overrides
    that one method, whose signature has been stable since aiohttp 3.8; it
    is a private method, so the override is checked against each aiohttp
    release this package is tested with (3.14). The alternative, if a
    future aiohttp changes it, needs no private API: a subclass of
    ``aiohttp.BaseConnector`` implementing ``_create_connection(req,
    traces, timeout)`` the same way, at the cost of re-implementing
    ``TCPConnector``'s resolution and TLS handling.

Names
    aiostack has no DNS client. A URL's host is either an IPv4 literal or a
    name the connector's :class:`StackResolver` knows: a mapping
    (``{"server": "198.18.0.1"}``) or a function (``network.resolve`` of a
    :class:`~aiostack.testing.network.VirtualNetwork` maps host names to
    their addresses). Unknown names fail like an unknown DNS name:
    ``aiohttp.ClientConnectorDNSError``.

Limits
    IPv4 only (aiostack has no IPv6). HTTPS works both ways: a site's
    ``ssl_context`` and the connector's ``ssl`` go to aiostack's TLS
    transport, and certificate and TLS errors become aiohttp's
    ``ClientConnectorCertificateError``/``ClientConnectorSSLError`` as with
    ``TCPConnector``. ``TCPConnector``'s ``local_addr`` and
    ``socket_factory`` apply to kernel sockets and are refused here.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from aiostack.aio import create_connection, create_server

if TYPE_CHECKING:
    from aiohttp.client_proto import ResponseHandler
    from aiohttp.client_reqrep import ClientRequest

    from aiostack.stack.stack import Stack

__all__ = ["StackConnector", "StackResolver", "StackSite"]


class StackSite(web.BaseSite):
    """An aiohttp site listening on ``(host, port)`` of an aiostack stack.

    As ``web.TCPSite``: ``host`` None listens on every address of the stack,
    ``port`` None is 8080 (8443 with ``ssl_context``), 0 picks an ephemeral
    port (read it back from :attr:`port` after :meth:`start`), ``backlog``
    is the accept queue.
    """

    __slots__ = ("_bound_port", "_host", "_port", "_reuse_address", "_reuse_port", "_stack")

    def __init__(
        self,
        runner: web.BaseRunner,
        stack: Stack,
        host: str | None = None,
        port: int | None = None,
        *,
        backlog: int = 128,
        ssl_context: Any = None,
        reuse_address: bool | None = None,
        reuse_port: bool | None = None,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=backlog)
        if port is None:
            port = 8443 if ssl_context is not None else 8080  # as web.TCPSite
        if not 0 <= port <= 65535:
            raise ValueError(f"port: {port} is outside 0..65535")
        self._stack = stack
        self._host = host
        self._port = port
        self._bound_port: int | None = None
        self._reuse_address = reuse_address
        self._reuse_port = reuse_port

    @property
    def stack(self) -> Stack:
        return self._stack

    @property
    def port(self) -> int:
        """The bound port once started (useful with port 0), else the requested one."""
        return self._bound_port if self._bound_port is not None else self._port

    @property
    def name(self) -> str:
        """The site's URL, with the stack's first address when listening on all of them."""
        scheme = "https" if self._ssl_context else "http"
        host = self._host
        if not host:
            addresses = self._stack.addresses
            host = addresses[0].split("/")[0] if addresses else "0.0.0.0"
        return f"{scheme}://{host}:{self.port}"

    async def start(self) -> None:
        await super().start()
        handler = self._runner.server
        assert handler is not None  # BaseSite.__init__ checked it
        extra: dict[str, Any] = {}
        if self._ssl_context is not None:
            extra["ssl"] = self._ssl_context
        self._server = server = await create_server(
            self._stack,
            handler,
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
            **extra,
        )
        self._bound_port = server.sockets[0].getsockname()[1]


class StackResolver(AbstractResolver):
    """Host names for a stack that has no DNS: a mapping or a function from name to IPv4.

    A function may return the name unchanged for "unknown" (as
    ``VirtualNetwork.resolve`` does); anything that is not an IPv4 address
    then fails as an unknown name would.
    """

    def __init__(self, names: Mapping[str, str] | Callable[[str], str] | None = None) -> None:
        if names is None:
            self._lookup: Callable[[str], str | None] = lambda _name: None
        elif isinstance(names, Mapping):
            table = dict(names)
            self._lookup = table.get
        else:
            self._lookup = names

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if family not in (socket.AF_INET, socket.AF_UNSPEC):
            raise socket.gaierror(socket.EAI_FAMILY, "aiostack resolves IPv4 only")
        address = self._lookup(host)
        if address is None or not _is_ipv4(address):
            raise socket.gaierror(socket.EAI_NONAME, f"{host}: name not known to the stack")
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET,
                "proto": socket.IPPROTO_TCP,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        return None


def _is_ipv4(text: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET, text)
    except OSError:
        return False
    return True


class StackConnector(aiohttp.TCPConnector):
    """A ``TCPConnector`` whose connections go through ``stack``; see the module docstring.

    ``names``: host names the client may use (mapping or function, see
    :class:`StackResolver`); or pass ``resolver=`` yourself. Every other
    keyword is ``TCPConnector``'s (``limit``, ``keepalive_timeout``,
    ``force_close``, ``ssl``, ...).
    """

    def __init__(
        self,
        stack: Stack,
        *,
        names: Mapping[str, str] | Callable[[str], str] | None = None,
        **kwargs: Any,
    ) -> None:
        for refused in ("local_addr", "socket_factory"):
            if kwargs.get(refused) is not None:
                raise ValueError(f"{refused}: applies to kernel sockets, not to an aiostack stack")
        if "resolver" in kwargs and names is not None:
            raise ValueError("names: give either names or resolver, not both")
        if kwargs.get("family", socket.AF_INET) not in (socket.AF_INET, socket.AF_UNSPEC):
            raise ValueError(f"family: {kwargs['family']!r}: aiostack speaks IPv4 only")
        kwargs.setdefault("resolver", StackResolver(names))
        kwargs["family"] = socket.AF_INET
        super().__init__(**kwargs)
        self._stack = stack

    @property
    def stack(self) -> Stack:
        return self._stack

    async def _wrap_create_connection(
        self,
        *args: Any,
        addr_infos: list[Any],
        req: ClientRequest,
        timeout: aiohttp.ClientTimeout,
        client_error: type[Exception] = aiohttp.ClientConnectorError,
        **kwargs: Any,
    ) -> tuple[asyncio.Transport, ResponseHandler]:
        """Open the connection on the stack: each resolved address in turn, the last error wins.

        ``args[0]`` is aiohttp's protocol factory. ``kwargs`` carries
        ``ssl`` and ``server_hostname``, passed on only for TLS.
        """
        (protocol_factory,) = args
        extra: dict[str, Any] = {}
        if kwargs.get("ssl"):
            extra = {"ssl": kwargs["ssl"], "server_hostname": kwargs.get("server_hostname")}
        last: OSError | None = None
        for _family, _type, _proto, _name, address in addr_infos:
            host, port = address[0], address[1]
            try:
                async with asyncio.timeout(timeout.sock_connect):
                    transport, protocol = await create_connection(
                        self._stack, protocol_factory, host, port, **extra
                    )
            except TimeoutError:
                raise
            except ssl.CertificateError as exc:
                # As TCPConnector: a certificate problem is final, not "try the next address".
                raise aiohttp.ClientConnectorCertificateError(req.connection_key, exc) from exc
            except ssl.SSLError as exc:
                raise aiohttp.ClientConnectorSSLError(req.connection_key, exc) from exc
            except OSError as exc:
                last = exc
                continue
            return transport, protocol
        if last is None:
            last = OSError(f"no address to connect to for {req.url.host}")
        raise client_error(req.connection_key, last) from last
