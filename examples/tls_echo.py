"""A TLS echo over aiostack: ``ssl=`` on ``start_server``/``open_connection``. No root needed.

A throwaway certificate authority (from ``trustme``) issues a certificate
for ``echo.aiostack.test``; stack 198.18.0.2 serves TLS with it and stack
198.18.0.1 connects, verifying the chain and the name exactly as it would on
the Internet. The TLS layer is the standard library's, on top of aiostack's
transport, so this runs the same on uvloop (``--uvloop``).

    python examples/tls_echo.py [--uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import ssl

import trustme

from aiostack import MemoryWire, Stack

PORT = 443
NAME = "echo.aiostack.test"


def contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a fresh certificate, and a client context trusting its CA."""
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(NAME).configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()
        await writer.wait_closed()


async def main() -> None:
    server_ctx, client_ctx = contexts()
    left_dev, right_dev = MemoryWire.pair()
    async with (
        Stack(left_dev, address="198.18.0.1/24") as left,
        Stack(right_dev, address="198.18.0.2/24") as right,
    ):
        async with await right.start_server(echo, "", PORT, ssl=server_ctx) as server:
            reader, writer = await left.open_connection(
                "198.18.0.2", PORT, ssl=client_ctx, server_hostname=NAME
            )
            version = writer.get_extra_info("ssl_object").version()
            cipher = writer.get_extra_info("cipher")[0]
            alt_names = writer.get_extra_info("peercert")["subjectAltName"]
            print(f"handshake: {version} {cipher}, server certificate for {alt_names}")
            for message in (b"hello over TLS", bytes(range(256)) * 1000):
                writer.write(message)
                await writer.drain()
                reply = await reader.readexactly(len(message))
                print(f"echoed {len(reply)} bytes: {reply == message}")
            writer.close()
            await writer.wait_closed()
            server.close()
            await server.wait_closed()
        print("closed cleanly")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop")
    if parser.parse_args().uvloop:
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())
