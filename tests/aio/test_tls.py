"""TLS specifics beyond the conformance suite: ``start_tls`` upgrades and the ssl=True default.

(TLS echo, failed verification and argument checks run against both aiostack
and the kernel in test_conformance.py; handshake cancellation and timeouts in
test_cancellation.py.)
"""

from __future__ import annotations

import asyncio
import ssl

import pytest
import uvloop

from aiostack.aio import TcpTransport, start_tls
from tests.aio.conftest import TLS_NAME, Net, Tls
from tests.helpers import B_IP, TIMEOUT

PORT = 8443


async def test_start_tls_upgrades_a_plain_connection(wired: Net, tls: Tls) -> None:
    """A STARTTLS-style exchange: plain text first, then TLS on the same connection."""
    served: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert await reader.readline() == b"STARTTLS\n"
        writer.write(b"GO\n")
        await writer.drain()
        raw = writer.transport
        secure = await start_tls(raw, raw.get_protocol(), tls.server, server_side=True)
        line = await reader.readline()
        secure.write(line.upper())
        served.set_result(line)
        secure.close()

    server = await wired.b.start_server(handler, "", PORT)
    reader, writer = await wired.a.open_connection(B_IP, PORT)
    async with asyncio.timeout(TIMEOUT):
        writer.write(b"STARTTLS\n")
        assert await reader.readline() == b"GO\n"
        raw = writer.transport
        assert isinstance(raw, TcpTransport)
        secure = await start_tls(raw, raw.get_protocol(), tls.client, server_hostname=TLS_NAME)
        assert secure.get_extra_info("peercert")["subjectAltName"] == (("DNS", TLS_NAME),)
        assert secure.get_extra_info("peername") == (B_IP, PORT)
        secure.write(b"secret\n")
        assert await reader.readline() == b"SECRET\n"
        assert await served == b"secret\n"
        assert await reader.read() == b""
    secure.close()
    server.close()
    async with asyncio.timeout(TIMEOUT):
        await server.wait_closed()


async def test_start_tls_argument_checks(wired: Net, tls: Tls) -> None:
    transport, _ = await wired.a.create_datagram_endpoint(asyncio.DatagramProtocol, ("", 0))
    with pytest.raises(TypeError, match="sslcontext is expected"):
        await start_tls(transport, asyncio.Protocol(), object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="is not supported by start_tls"):
        await start_tls(transport, asyncio.Protocol(), tls.client)
    transport.close()


async def test_ssl_true_uses_the_default_context(wired: Net, tls: Tls) -> None:
    """``ssl=True`` verifies against the system's CAs, which do not know trustme's."""
    server = await wired.b.start_server(lambda r, w: None, "", PORT, ssl=tls.server)
    async with asyncio.timeout(TIMEOUT):
        with pytest.raises(ssl.SSLCertVerificationError):
            await wired.a.open_connection(B_IP, PORT, ssl=True, server_hostname=TLS_NAME)
        with pytest.raises(ValueError, match="You must set server_hostname"):
            await wired.a.create_connection(asyncio.Protocol, None, None, ssl=True)
        with pytest.raises(TypeError, match="ssl argument must be an SSLContext"):
            await wired.b.create_server(asyncio.Protocol, "", PORT + 1, ssl=True)  # type: ignore[arg-type]
    server.close()
    async with asyncio.timeout(TIMEOUT):
        await server.wait_closed()


async def test_loop_start_tls_on_the_stdlib_loop_only(wired: Net, tls: Tls) -> None:
    """The stdlib loop's start_tls takes an aiostack transport; uvloop's refuses it."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raw = writer.transport
        secure = await start_tls(raw, raw.get_protocol(), tls.server, server_side=True)
        secure.write(await reader.readline())
        secure.close()

    server = await wired.b.start_server(handler, "", PORT)
    reader, writer = await wired.a.open_connection(B_IP, PORT)
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(TIMEOUT):
        if isinstance(loop, uvloop.Loop):
            with pytest.raises(TypeError):
                await writer.start_tls(tls.client, server_hostname=TLS_NAME)
            secure = await start_tls(
                writer.transport,
                writer.transport.get_protocol(),
                tls.client,
                server_hostname=TLS_NAME,
            )
            secure.write(b"via aiostack.aio.start_tls\n")
            assert await reader.readline() == b"via aiostack.aio.start_tls\n"
            secure.close()
        else:
            await writer.start_tls(tls.client, server_hostname=TLS_NAME)
            writer.write(b"via StreamWriter.start_tls\n")
            assert await reader.readline() == b"via StreamWriter.start_tls\n"
            writer.close()
            await writer.wait_closed()
    server.close()
    async with asyncio.timeout(TIMEOUT):
        await server.wait_closed()
