"""The web server's request parser on its own: exact rules, and no input that escapes them.

The parser reads from an ``asyncio.StreamReader``; here the reader is fed
bytes directly, so every input is exactly what the test wrote.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiostack.services.httpparse import (
    CHUNKED,
    MAX_LINE,
    ClientGone,
    HttpError,
    Request,
    body_framing,
    parse_header_line,
    parse_request_line,
    read_body,
    read_request,
)


def parse(
    data: bytes, *, limit: int = 65536, runner: asyncio.Runner | None = None
) -> Request | None:
    async def run() -> Request | None:
        reader = asyncio.StreamReader(limit=limit)
        reader.feed_data(data)
        reader.feed_eof()
        return await read_request(reader)

    if runner is not None:
        return runner.run(run())
    return asyncio.run(run())


@pytest.fixture(scope="module")
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as made:
        yield made


def body(data: bytes, framing: int, limit: int = 1 << 20) -> tuple[int, bytes]:
    async def run() -> tuple[int, bytes]:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        got: list[bytes] = []
        size = await read_body(reader, framing, got.append, limit=limit, chunk=7)
        return size, b"".join(got)

    return asyncio.run(run())


def test_request_line() -> None:
    assert parse_request_line(b"GET /a?b HTTP/1.1") == ("GET", "/a?b", (1, 1))
    assert parse_request_line(b"OPTIONS * HTTP/1.0") == ("OPTIONS", "*", (1, 0))
    with pytest.raises(HttpError) as exc:
        parse_request_line(b"GET / HTTP/3.0")
    assert exc.value.status == 505


def test_headers_and_properties() -> None:
    request = parse(
        b"GET http://example/bytes/5?x=1 HTTP/1.1\r\nHost: example\r\n"
        b"Connection: Keep-Alive, Close\r\nX-A:  spaced value \t\r\nx-a: second\r\n\r\n"
    )
    assert request is not None
    assert request.path == "/bytes/5"
    assert request.header("x-a") == "spaced value, second"
    assert request.tokens("connection") == {"keep-alive", "close"}
    assert not request.keep_alive
    assert parse_header_line(b"Name:value") == ("name", "value")
    assert parse(b"") is None
    with pytest.raises(ClientGone):
        parse(b"GET / HTTP/1.1\r\nHost: x\r\n")


def test_framing() -> None:
    def framing(*headers: tuple[str, str], version: tuple[int, int] = (1, 1)) -> int:
        return body_framing(Request("POST", "/upload", version, list(headers)))

    assert framing() == 0
    assert framing(("content-length", "12")) == 12
    assert framing(("content-length", "12"), ("content-length", "12")) == 12
    assert framing(("transfer-encoding", "Chunked")) == CHUNKED
    for bad in ("1e3", "+5", "", "0x10", "1" * 19):
        with pytest.raises(HttpError):
            framing(("content-length", bad))
    with pytest.raises(HttpError) as exc:
        framing(("transfer-encoding", "gzip, chunked"))
    assert exc.value.status == 501


def test_bodies() -> None:
    assert body(b"hello world", 5) == (5, b"hello")
    assert body(b"3\r\nabc\r\n0\r\n\r\n", CHUNKED) == (3, b"abc")
    assert body(b"3;name=v\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n", CHUNKED) == (5, b"abcde")
    with pytest.raises(HttpError) as exc:
        body(b"10\r\n" + b"x" * 16 + b"\r\n0\r\n\r\n", CHUNKED, limit=15)
    assert exc.value.status == 413
    with pytest.raises(HttpError):
        body(b"3\r\nabcX\r\n0\r\n\r\n", CHUNKED)
    with pytest.raises(HttpError):
        body(b"-1\r\n", CHUNKED)
    with pytest.raises(ClientGone):
        body(b"abc", 5)


def test_line_limits() -> None:
    long_target = b"GET /" + b"a" * MAX_LINE + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    with pytest.raises(HttpError) as exc:
        parse(long_target)
    assert exc.value.status == 414
    many = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"A: b\r\n" * 100 + b"\r\n"
    with pytest.raises(HttpError) as exc:
        parse(many)
    assert exc.value.status == 431
    assert parse(b"GET / HTTP/1.1\r\nHost: x\r\n" + b"A: b\r\n" * 99 + b"\r\n") is not None


_PIECES = st.sampled_from(
    [b"GET", b"POST", b" ", b"/", b"/upload", b"HTTP/1.1", b"HTTP/1.0", b"\r\n", b"\n", b"\r",
     b":", b"Host", b"Content-Length", b"Transfer-Encoding", b"chunked", b"0", b"5", b"\x00",
     b"\t", b",", b"\xff"]
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(_PIECES, st.binary(max_size=8)), max_size=40))
def test_any_input_is_a_request_an_http_error_or_a_gone_client(
    runner: asyncio.Runner, pieces: list[bytes]
) -> None:
    data = b"".join(pieces)
    try:
        request = parse(data, limit=64, runner=runner)
    except (HttpError, ClientGone):
        return
    if request is not None:
        assert request.method and request.target
        body_framing(request)  # already validated: must not raise now
