"""Echo, discard, daytime and chargen on a stack, with a client on a second stack.

Stack A (198.18.0.1) is the client, stack B (198.18.0.2) runs the service
on its well-known port; the two share a MemoryWire. Every wait is bounded
by a timeout; nothing sleeps.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from aiostack import services
from aiostack.aio import open_connection
from aiostack.services import chargen, daytime
from aiostack.socket import AF_INET, SOCK_DGRAM
from aiostack.stack.stack import Stack
from tests.helpers import B_IP, TIMEOUT, eventually, fast_arp, wired_stacks


@pytest.fixture
async def pair() -> AsyncIterator[tuple[Stack, Stack]]:
    async with wired_stacks(settings=(fast_arp(), fast_arp()), privileged=True) as stacks:
        yield stacks


async def udp_exchange(stack: Stack, port: int, payload: bytes) -> bytes:
    sock = stack.socket(AF_INET, SOCK_DGRAM)
    try:
        async with asyncio.timeout(TIMEOUT):
            await sock.sendto(payload, (B_IP, port))
            data, peer = await sock.recvfrom(65535)
        assert peer == (B_IP, port)
        return data
    finally:
        sock.close()


async def test_echo_tcp_returns_every_byte_and_closes_after_eof(
    pair: tuple[Stack, Stack],
) -> None:
    a, b = pair
    async with await services.echo.serve(b) as service:
        assert service.describe() == "echo:7/tcp+udp"
        payload = bytes(range(256)) * 2000  # 512 KB: more than the windows hold
        async with asyncio.timeout(TIMEOUT):
            reader, writer = await open_connection(a, B_IP, 7)

            async def send() -> None:
                for i in range(0, len(payload), 50_000):
                    writer.write(payload[i : i + 50_000])
                    await writer.drain()
                writer.write_eof()

            sender = asyncio.create_task(send())
            received = await reader.read()  # to EOF: the server closes after ours
            await sender
            writer.close()
        assert received == payload


async def test_echo_udp(pair: tuple[Stack, Stack]) -> None:
    a, b = pair
    async with await services.echo.serve(b):
        assert await udp_exchange(a, 7, b"hello") == b"hello"
        big = bytes(range(256)) * 30  # fragmented both ways
        assert await udp_exchange(a, 7, big) == big


async def test_discard_reads_everything_answers_nothing(pair: tuple[Stack, Stack]) -> None:
    a, b = pair
    async with await services.discard.serve(b):
        async with asyncio.timeout(TIMEOUT):
            reader, writer = await open_connection(a, B_IP, 9)
            for _ in range(8):
                writer.write(b"x" * 50_000)
                await writer.drain()
            writer.write_eof()
            assert await reader.read() == b""  # nothing back, then the server's FIN
            writer.close()
        sock = a.socket(AF_INET, SOCK_DGRAM)
        await sock.sendto(b"dropped", (B_IP, 9))
        await sock.sendto(b"dropped", (B_IP, 9))
        sock.setblocking(False)
        # The datagram reached the service (counted) and nothing came back.
        await eventually(lambda: b.counters.UdpInDatagrams >= 2, what="2 datagrams in")
        with pytest.raises(BlockingIOError):
            await sock.recvfrom(100)
        sock.close()


def test_daytime_line_format() -> None:
    when = time.mktime((2026, 11, 22, 2, 17, 12, 0, 0, 0)) - time.timezone
    assert daytime.daytime_line(when) == b"Sunday, November 22, 2026 02:17:12-UTC\r\n"


async def test_daytime_tcp_and_udp(pair: tuple[Stack, Stack]) -> None:
    a, b = pair
    async with await services.daytime.serve(b, clock=lambda: 0.0):
        async with asyncio.timeout(TIMEOUT):
            reader, writer = await open_connection(a, B_IP, 13)
            assert await reader.read() == b"Thursday, January 01, 1970 00:00:00-UTC\r\n"
            writer.close()
        assert await udp_exchange(a, 13, b"") == b"Thursday, January 01, 1970 00:00:00-UTC\r\n"


def test_chargen_lines_rotate_through_the_printable_ring() -> None:
    first = chargen.line(0)
    assert first == b"".join(bytes([c]) for c in range(32, 104)) + b"\r\n"
    assert len(first) == 74
    assert chargen.line(1)[:71] == first[1:72]
    assert chargen.line(95) == first
    assert chargen.line(23)[:72] == bytes(range(55, 127))  # wraps right after '~'
    assert chargen.line(24)[:72] == bytes(range(56, 127)) + b" "
    assert len(chargen.CYCLE) == 95 * 74


async def test_chargen_tcp_streams_until_the_peer_closes(pair: tuple[Stack, Stack]) -> None:
    a, b = pair
    async with await services.chargen.serve(b) as service:
        async with asyncio.timeout(TIMEOUT):
            reader, writer = await open_connection(a, B_IP, 19)
            data = await reader.readexactly(300_000)
            assert data == chargen.stream_prefix(300_000)
            assert service.connections == 1
            writer.close()
            await writer.wait_closed()
            # The server notices (EOF or reset) and drops the connection.
            await eventually(lambda: service.connections == 0, what="the server to drop it")


async def test_chargen_udp_continues_the_rotation(pair: tuple[Stack, Stack]) -> None:
    a, b = pair
    async with await services.chargen.serve(b):
        one = await udp_exchange(a, 19, b"")
        two = await udp_exchange(a, 19, b"anything")
    assert len(one) <= 512 and len(one) % 74 == 0
    assert one == b"".join(chargen.line(n) for n in range(6))
    assert two == b"".join(chargen.line(n) for n in range(6, 12))


async def test_services_start_by_name_and_close_cleanly(pair: tuple[Stack, Stack]) -> None:
    _a, b = pair
    started = [
        await services.start(b, name, port)
        for name, port in (
            ("echo", 1007),
            ("discard", 1009),
            ("daytime", 1013),
            ("chargen", 1019),
            ("http", 1080),
        )
    ]
    assert [s.describe() for s in started] == [
        "echo:1007/tcp+udp",
        "discard:1009/tcp+udp",
        "daytime:1013/tcp+udp",
        "chargen:1019/tcp+udp",
        "http:1080/tcp",
    ]
    for service in started:
        await service.aclose()
    # Every port is free again.
    for service in started:
        await (await services.start(b, service.name, service.port)).aclose()


def test_parse_service() -> None:
    assert services.parse_service("http") == ("http", 80)
    assert services.parse_service("echo:7007") == ("echo", 7007)
    with pytest.raises(ValueError, match="service: 'gopher'"):
        services.parse_service("gopher")
    with pytest.raises(ValueError, match="port '0'"):
        services.parse_service("echo:0")
    with pytest.raises(ValueError, match="port 'x'"):
        services.parse_service("echo:x")


async def test_bad_port_is_a_value_error(pair: tuple[Stack, Stack]) -> None:
    with pytest.raises(ValueError, match="port: 70000"):
        await services.echo.serve(pair[1], 70000)
