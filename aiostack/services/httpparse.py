"""HTTP/1.1 request parsing for the built-in web server (RFC 9112), strict and bounded.

Everything a client sends is checked against a limit before it is kept:
the request line and each header line (:data:`MAX_LINE`), the number of
header fields (:data:`MAX_HEADERS`) and the whole head
(:data:`MAX_HEAD`). Anything malformed raises :class:`HttpError` carrying
the status to answer with; the server then answers it and closes the
connection, since after a framing error nothing that follows on the
connection can be trusted. The checks are the ones RFC 9112 makes a
server's duty, because each closes a request-smuggling hole:

- whitespace between a header name and its colon, and obsolete line
  folding, are rejected (RFC 9112 5.1, 5.2);
- ``Transfer-Encoding`` together with ``Content-Length``, differing
  ``Content-Length`` values, or a ``Content-Length`` that is not digits,
  are framing errors (RFC 9112 6.1, 6.3); an HTTP/1.0 request with
  ``Transfer-Encoding`` too;
- ``chunked`` is the only transfer coding understood (501 otherwise);
- an HTTP/1.1 request needs exactly one ``Host`` (RFC 9112 3.2).

Lines end in CRLF; a bare LF is accepted as a line end (RFC 9112 2.2
allows it) but a bare CR anywhere is an error. Empty lines before a
request line are skipped (2.2 again: a client may send a CRLF after a
POST body). Bytes are decoded as Latin-1, so no input can make decoding
fail.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass, field

#: Longest request line or header line, CRLF excluded (Apache's and nginx's 8 KiB).
MAX_LINE = 8190
#: Most header fields (or trailer fields) one request may carry.
MAX_HEADERS = 100
#: Most bytes in one request's head: request line and header lines, line ends included.
MAX_HEAD = 65536
#: Empty lines skipped before a request line at most.
MAX_LEADING_EMPTY = 8
#: Longest chunk-size (hex digits): 15 hex digits already mean an exabyte.
MAX_CHUNK_SIZE_DIGITS = 15

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_VERSION = re.compile(rb"HTTP/([0-9])\.([0-9])\Z")
_TARGET = re.compile(rb"[\x21-\x7e]+\Z")
_FIELD_VALUE_BAD = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_HEX = re.compile(rb"[0-9A-Fa-f]+\Z")
_DIGITS = re.compile(r"[0-9]+\Z")


class HttpError(Exception):
    """A request the server must refuse: answer ``status`` and close the connection."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ClientGone(Exception):
    """The client closed the connection in the middle of a request."""


@dataclass(slots=True)
class Request:
    """A parsed request head. Header names are lower-case; values are Latin-1 text."""

    method: str
    target: str
    version: tuple[int, int]
    headers: list[tuple[str, str]] = field(default_factory=list)

    def values(self, name: str) -> list[str]:
        """Every value of header ``name`` (lower-case), in order."""
        return [value for key, value in self.headers if key == name]

    def header(self, name: str) -> str | None:
        """The value of ``name`` if it occurs, the values joined with ", " if it repeats."""
        found = self.values(name)
        return ", ".join(found) if found else None

    def tokens(self, name: str) -> set[str]:
        """The comma-separated, lower-cased tokens of a list-valued header (``Connection``)."""
        return {
            item.strip().lower() for value in self.values(name) for item in value.split(",")
        } - {""}

    @property
    def path(self) -> str:
        """The target's path: origin-form without the query, or absolute-form's path."""
        target = self.target
        if target.startswith(("http://", "https://")):
            rest = target.split("://", 1)[1]
            slash = rest.find("/")
            target = rest[slash:] if slash >= 0 else "/"
        return target.split("?", 1)[0]

    @property
    def keep_alive(self) -> bool:
        """Whether the connection persists after this exchange (RFC 9112 9.3)."""
        connection = self.tokens("connection")
        if "close" in connection:
            return False
        if self.version >= (1, 1):
            return True
        return "keep-alive" in connection


#: What :func:`body_framing` returns for a chunked body.
CHUNKED = -1


def strip_line_end(line: bytes) -> bytes:
    """``line`` (ending in LF) without its CRLF or LF; a CR elsewhere is an error."""
    body = line[:-1]
    if body.endswith(b"\r"):
        body = body[:-1]
    if b"\r" in body:
        raise HttpError(400, "bare CR in a line")
    return body


def parse_request_line(line: bytes) -> tuple[str, str, tuple[int, int]]:
    """``method SP request-target SP HTTP-version`` (RFC 9112 3), strictly single spaces."""
    parts = line.split(b" ")
    if len(parts) != 3:
        raise HttpError(400, "the request line is not 'METHOD TARGET HTTP/x.y'")
    method, target, version = parts
    if not _TOKEN.match(method):
        raise HttpError(400, "the method is not a token")
    if not _TARGET.match(target):
        raise HttpError(400, "the request target is empty or has invalid characters")
    match = _VERSION.match(version)
    if match is None:
        raise HttpError(400, "the HTTP version is malformed")
    major, minor = int(match.group(1)), int(match.group(2))
    if major != 1:
        raise HttpError(505, f"HTTP/{major}.{minor} is not supported")
    text = target.decode("latin-1")
    if not (text.startswith("/") or text == "*" or text.startswith(("http://", "https://"))):
        raise HttpError(400, "the request target is not origin-form, absolute-form or '*'")
    if text == "*" and method != b"OPTIONS":
        raise HttpError(400, "'*' is only a target for OPTIONS")
    return method.decode("ascii"), text, (major, minor)


def parse_header_line(line: bytes) -> tuple[str, str]:
    """``name ":" OWS value OWS`` (RFC 9112 5); the name lower-cased."""
    if line[:1] in (b" ", b"\t"):
        raise HttpError(400, "obsolete line folding in a header")
    name, colon, value = line.partition(b":")
    if not colon:
        raise HttpError(400, "a header line without a colon")
    if not _TOKEN.match(name):
        raise HttpError(400, "a header name is not a token (or has whitespace before the colon)")
    value = value.strip(b" \t")
    if _FIELD_VALUE_BAD.search(value):
        raise HttpError(400, "a control character in a header value")
    return name.decode("ascii").lower(), value.decode("latin-1")


class HeadReader:
    """Reads lines from a StreamReader within the per-line and per-head budgets."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader
        self.budget = MAX_HEAD

    async def line(self, *, too_long: int = 431) -> bytes | None:
        """One line without its end; None at a clean EOF before any byte of it."""
        try:
            raw = await self.reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                return None
            raise ClientGone("the connection closed in the middle of a line") from None
        except asyncio.LimitOverrunError:
            raise HttpError(too_long, "a line is longer than the server accepts") from None
        self.budget -= len(raw)
        line = strip_line_end(raw)
        if len(line) > MAX_LINE:
            raise HttpError(too_long, "a line is longer than the server accepts")
        if self.budget < 0:
            raise HttpError(431, "the request head is larger than the server accepts")
        return line

    async def fields(self) -> list[tuple[str, str]]:
        """Header (or trailer) lines up to the empty line."""
        headers: list[tuple[str, str]] = []
        while True:
            line = await self.line()
            if line is None:
                raise ClientGone("the connection closed in the middle of the headers")
            if not line:
                return headers
            if len(headers) >= MAX_HEADERS:
                raise HttpError(431, "too many header fields")
            headers.append(parse_header_line(line))


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    """The next request head, or None if the client closed the connection between requests."""
    head = HeadReader(reader)
    for _ in range(MAX_LEADING_EMPTY + 1):
        line = await head.line(too_long=414)
        if line is None:
            return None
        if line:
            break
    else:
        raise HttpError(400, "too many empty lines before the request line")
    method, target, version = parse_request_line(line)
    request = Request(method, target, version, await head.fields())
    check_request(request)
    return request


def check_request(request: Request) -> None:
    """The head-level rules: Host, and a body framing that can be trusted."""
    if request.version >= (1, 1) and len(request.values("host")) != 1:
        raise HttpError(400, "an HTTP/1.1 request needs exactly one Host header")
    body_framing(request)


def body_framing(request: Request) -> int:
    """Content length of the body, 0 for none, or :data:`CHUNKED` (RFC 9112 6.3)."""
    encodings = request.values("transfer-encoding")
    lengths = request.values("content-length")
    if encodings:
        if request.version < (1, 1):
            raise HttpError(400, "Transfer-Encoding in an HTTP/1.0 request")
        if lengths:
            raise HttpError(400, "both Transfer-Encoding and Content-Length")
        codings = [c.strip().lower() for value in encodings for c in value.split(",")]
        if codings != ["chunked"]:
            raise HttpError(501, "only the 'chunked' transfer coding is implemented")
        return CHUNKED
    if not lengths:
        return 0
    values = {value.strip() for value in lengths}
    if len(values) != 1:
        raise HttpError(400, "conflicting Content-Length headers")
    text = values.pop()
    if not _DIGITS.match(text) or len(text) > 18:
        raise HttpError(400, "Content-Length is not a decimal number")
    return int(text)


async def read_body(
    reader: asyncio.StreamReader,
    framing: int,
    sink: Callable[[bytes], None],
    *,
    limit: int,
    chunk: int = 65536,
) -> int:
    """Read a body framed by ``framing``, feeding ``sink``; return its size.

    Never holds more than ``chunk`` bytes (plus the reader's buffer): a
    counted body is read in slices, a chunked one chunk by chunk. Over
    ``limit`` bytes raises ``HttpError(413)``.
    """
    if framing == CHUNKED:
        return await _read_chunked(reader, sink, limit=limit, chunk=chunk)
    if framing > limit:
        raise HttpError(413, "the request body is larger than the server accepts")
    await _read_exactly(reader, framing, sink, chunk)
    return framing


async def _read_exactly(
    reader: asyncio.StreamReader, size: int, sink: Callable[[bytes], None], chunk: int
) -> None:
    remaining = size
    while remaining:
        data = await reader.read(min(remaining, chunk))
        if not data:
            raise ClientGone("the connection closed in the middle of the body")
        remaining -= len(data)
        sink(data)


async def _read_chunked(
    reader: asyncio.StreamReader, sink: Callable[[bytes], None], *, limit: int, chunk: int
) -> int:
    """``chunked`` (RFC 9112 7.1): size lines, data, CRLF; then trailers, discarded."""
    head = HeadReader(reader)
    total = 0
    while True:
        line = await head.line(too_long=400)
        if line is None:
            raise ClientGone("the connection closed in the middle of a chunked body")
        head.budget = MAX_HEAD  # the budget is per line here, not per body
        size_text = line.split(b";", 1)[0].strip(b" \t")
        if not _HEX.match(size_text) or len(size_text) > MAX_CHUNK_SIZE_DIGITS:
            raise HttpError(400, "a chunk size is not a hexadecimal number")
        size = int(size_text, 16)
        if size == 0:
            await head.fields()  # trailers: read within limits, ignored
            return total
        total += size
        if total > limit:
            raise HttpError(413, "the request body is larger than the server accepts")
        await _read_exactly(reader, size, sink, chunk)
        try:
            end = await reader.readexactly(2)
        except asyncio.IncompleteReadError:
            raise ClientGone("the connection closed in the middle of a chunked body") from None
        if end != b"\r\n":
            raise HttpError(400, "chunk data is not followed by CRLF")
