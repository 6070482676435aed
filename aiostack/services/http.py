"""A small HTTP/1.1 server on aiostack's asyncio Streams, port 80.

Routes:

- ``GET``/``HEAD /``: a small HTML page (:data:`PAGE`).
- ``GET``/``HEAD /bytes/N``: ``N`` bytes whose byte ``i`` is ``i % 251``
  (251 is prime, so a shifted or repeated block never matches), sent as
  64 KiB writes each followed by ``drain``: memory stays flat whatever
  ``N`` is, and TCP flow control paces the writes.
- ``POST``/``PUT /upload``: reads a ``Content-Length`` or ``chunked`` body
  without keeping it, and answers with its size in bytes (``"N\\n"``).

Connections persist (HTTP/1.1 keep-alive, HTTP/1.0 with
``Connection: keep-alive``) and requests may be pipelined; ``Connection:
close`` is honoured. An idle connection is closed after ``idle_timeout``
seconds. ``Expect: 100-continue`` gets its interim response before an
upload is read. Errors: 404 (no such path), 405 with ``Allow`` (the path
exists, not for this method), 400 (malformed request, see
:mod:`~aiostack.services.httpparse`), 413 (body over ``max_upload``),
414/431 (request line or head too long), 417, 501, 505. After an error
the server closes the connection, lingering (write side shut, reading
and dropping for up to ``linger`` seconds, :data:`LINGER` by default) so that the client reads
the error response instead of a reset caused by the data it was still
sending.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from aiostack.services.base import Service, check_port, tcp_server
from aiostack.services.httpparse import (
    CHUNKED,
    ClientGone,
    HttpError,
    Request,
    body_framing,
    read_body,
    read_request,
)

if TYPE_CHECKING:
    from aiostack.stack.stack import Stack

NAME = "http"
PORT = 80
SERVER = "aiostack"
PAGE = (
    b"<!doctype html>\n<html><head><title>aiostack</title></head>\n"
    b"<body><h1>Hello from aiostack</h1>\n"
    b"<p>This page came over a TCP/IP stack written in Python with asyncio.</p>\n"
    b'<p>Try <a href="/bytes/1048576">/bytes/1048576</a> or POST to /upload.</p>\n'
    b"</body></html>\n"
)
#: Byte ``i`` of every ``/bytes/N`` body is ``i % PATTERN_PERIOD``.
PATTERN_PERIOD = 251
#: One write: a whole number of periods (261 x 251 = 65511 bytes), so every write starts at 0.
_PATTERN_WRITE = bytes(range(PATTERN_PERIOD)) * 261
#: A request body on a path that takes none is read and dropped up to this size.
MAX_DISCARD = 65536
#: How long the server reads and drops after an error response before closing.
LINGER = 2.0
#: ... and how many bytes at most (dropping is cheap; the time bound is what matters).
LINGER_BYTES = 64 << 20
#: StreamReader buffer limit: the longest line readuntil can find.
READER_LIMIT = 65536

_REASONS = {
    100: "Continue",
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    414: "URI Too Long",
    417: "Expectation Failed",
    431: "Request Header Fields Too Large",
    501: "Not Implemented",
    505: "HTTP Version Not Supported",
}
_ROUTES: dict[str, tuple[str, ...]] = {
    "/": ("GET", "HEAD"),
    "/bytes/": ("GET", "HEAD"),
    "/upload": ("POST", "PUT"),
}


def pattern(offset: int, size: int) -> bytes:
    """Bytes ``offset .. offset + size`` of a ``/bytes/N`` body (for clients and tests)."""
    start = offset % PATTERN_PERIOD
    reps = (start + size) // PATTERN_PERIOD + 1
    return (bytes(range(PATTERN_PERIOD)) * reps)[start : start + size]


@dataclass(slots=True, frozen=True)
class HttpConfig:
    """Limits of one server."""

    #: Largest ``/upload`` body accepted (bytes); larger ones get 413.
    max_upload: int = 1 << 40
    #: Largest ``N`` for ``/bytes/N``.
    max_bytes: int = 1 << 40
    #: Seconds a connection may sit between requests (or inside a request head).
    idle_timeout: float = 60.0
    #: Seconds the server lingers before closing after an error (see the module docstring).
    linger: float = LINGER

    def __post_init__(self) -> None:
        for name in ("max_upload", "max_bytes"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: {getattr(self, name)} is negative")
        for name in ("idle_timeout", "linger"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: {getattr(self, name)} is not a positive time")


def response_head(
    status: int,
    *,
    length: int,
    content_type: str | None = "text/plain; charset=utf-8",
    keep_alive: bool = True,
    http10: bool = False,
    extra: tuple[tuple[str, str], ...] = (),
) -> bytes:
    """A status line and headers, up to the empty line."""
    lines = [
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}",
        f"Server: {SERVER}",
        f"Date: {email.utils.formatdate(usegmt=True)}",
    ]
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Length: {length}")
    lines.extend(f"{name}: {value}" for name, value in extra)
    if not keep_alive:
        lines.append("Connection: close")
    elif http10:
        lines.append("Connection: keep-alive")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class _Exchange:
    """One request and its response on a connection."""

    def __init__(
        self,
        config: HttpConfig,
        request: Request,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.config = config
        self.request = request
        self.reader = reader
        self.writer = writer
        self.keep_alive = request.keep_alive
        self.head_only = request.method == "HEAD"
        #: The answer was sent without reading the request's body.
        self.unread_body = False

    def send(
        self,
        status: int,
        body: bytes = b"",
        *,
        content_type: str | None = "text/plain; charset=utf-8",
        extra: tuple[tuple[str, str], ...] = (),
        length: int | None = None,
    ) -> None:
        self.writer.write(
            response_head(
                status,
                length=len(body) if length is None else length,
                content_type=content_type,
                keep_alive=self.keep_alive,
                http10=self.request.version < (1, 1),
                extra=extra,
            )
        )
        if body and not self.head_only:
            self.writer.write(body)

    async def run(self) -> bool:
        """Answer the request; return whether the connection stays open."""
        request = self.request
        path = request.path
        route = "/bytes/" if path.startswith("/bytes/") else path
        allowed = _ROUTES.get(route)
        if allowed is None:
            await self._discard_body()
            self.send(404, b"not found\n")
        elif request.method not in allowed:
            await self._discard_body()
            self.send(405, b"method not allowed\n", extra=(("Allow", ", ".join(allowed)),))
        elif route == "/":
            await self._discard_body()
            self.send(200, PAGE, content_type="text/html; charset=utf-8")
        elif route == "/bytes/":
            await self._discard_body()
            await self._bytes(path[len("/bytes/") :])
        else:
            await self._upload()
        await self.writer.drain()
        return self.keep_alive

    async def _discard_body(self) -> None:
        """Read a small body nobody wants; a large or chunked one ends the connection instead."""
        framing = body_framing(self.request)
        if framing == 0:
            return
        if framing == CHUNKED or framing > MAX_DISCARD:
            self.keep_alive = False  # answer, then close without reading it
            self.unread_body = True
            return
        await read_body(self.reader, framing, lambda _data: None, limit=MAX_DISCARD)

    async def _bytes(self, text: str) -> None:
        if not text.isdigit() or not text.isascii() or len(text) > 15:
            raise HttpError(400, "/bytes/N needs a decimal N")
        size = int(text)
        if size > self.config.max_bytes:
            raise HttpError(400, f"/bytes/N: N is larger than {self.config.max_bytes}")
        self.send(200, content_type="application/octet-stream", length=size)
        if self.head_only:
            return
        writer = self.writer
        chunk = len(_PATTERN_WRITE)
        for offset in range(0, size, chunk):
            writer.write(_PATTERN_WRITE[: min(chunk, size - offset)])
            await writer.drain()

    async def _upload(self) -> None:
        request = self.request
        framing = body_framing(request)
        limit = self.config.max_upload
        if framing != CHUNKED and framing > limit:
            raise HttpError(413, f"the upload is larger than {limit} bytes")
        expect = request.header("expect")
        if expect is not None:
            if expect.strip().lower() != "100-continue":
                raise HttpError(417, "only 'Expect: 100-continue' is understood")
            if request.version >= (1, 1):
                self.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        count = await read_body(self.reader, framing, lambda _data: None, limit=limit)
        self.send(200, b"%d\n" % count)


async def _lingering_close(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, linger: float
) -> None:
    """Shut our side, then read and drop what the client still sends, for a bounded time."""
    with contextlib.suppress(OSError, RuntimeError):
        if writer.can_write_eof():
            writer.write_eof()
    with contextlib.suppress(TimeoutError, ConnectionError):
        async with asyncio.timeout(linger):
            budget = LINGER_BYTES
            while budget > 0 and (data := await reader.read(65536)):
                budget -= len(data)


async def handle(
    config: HttpConfig, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Serve requests on one connection until it closes (the caller closes the writer)."""
    while True:
        request = None
        try:
            async with asyncio.timeout(config.idle_timeout):
                request = await read_request(reader)
            if request is None:
                return
            exchange = _Exchange(config, request, reader, writer)
            if not await exchange.run():
                if exchange.unread_body:
                    await _lingering_close(reader, writer, config.linger)
                return
        except ClientGone:
            return
        except HttpError as exc:
            body = f"{exc.message}\n".encode("latin-1")
            head_only = request is not None and request.method == "HEAD"
            writer.write(response_head(exc.status, length=len(body), keep_alive=False))
            if not head_only:
                writer.write(body)
            await writer.drain()
            await _lingering_close(reader, writer, config.linger)
            return


async def serve(
    stack: Stack, port: int = PORT, *, host: str = "", config: HttpConfig | None = None
) -> Service:
    """Start the web server on ``port`` (TCP only)."""
    check_port(port)
    handlers: set[asyncio.Task[None]] = set()
    server = await tcp_server(
        stack,
        NAME,
        partial(handle, config or HttpConfig()),
        host,
        port,
        handlers,
        limit=READER_LIMIT,
    )
    return Service(NAME, port, tcp=server, handlers=handlers)
