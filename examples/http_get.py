"""An HTTP/1.1 GET between two aiostack stacks, both ends plain asyncio Streams. No root needed.

Stack 198.18.0.2 runs a small HTTP server (a few lines of ``asyncio`` code
serving ``/`` and ``/bytes/N``); stack 198.18.0.1 fetches from it the way a
client with ``asyncio.open_connection`` would: request line, headers,
``Content-Length`` body, keep-alive for the second request.

    python examples/http_get.py
"""

from __future__ import annotations

import asyncio
import hashlib

from aiostack import MemoryWire, Stack

PORT = 80
PAGE = b"<html><body><h1>Hello from aiostack</h1></body></html>\n"


def body_for(path: str) -> tuple[int, bytes]:
    if path == "/":
        return 200, PAGE
    if path.startswith("/bytes/") and path[7:].isdigit():
        size = int(path[7:])
        return 200, (hashlib.sha256(b"aiostack").digest() * (size // 32 + 1))[:size]
    return 404, b"not found\n"


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """HTTP/1.1 with keep-alive: one request after another until the client closes."""
    try:
        while request := await reader.readline():
            method, path, _version = request.decode("latin-1").split()
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass  # headers: nothing here needs them
            status, body = body_for(path)
            reason = "OK" if status == 200 else "Not Found"
            writer.write(
                f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(body)}\r\n"
                f"Content-Type: text/html\r\n\r\n".encode()
            )
            if method != "HEAD":
                writer.write(body)
            await writer.drain()
    finally:
        writer.close()
        await writer.wait_closed()


async def get(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, path: str
) -> tuple[str, bytes]:
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: aiostack\r\n\r\n".encode())
    await writer.drain()
    status = (await reader.readline()).decode().strip()
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        if name.lower() == "content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def main() -> None:
    left_dev, right_dev = MemoryWire.pair()
    async with (
        Stack(left_dev, address="198.18.0.1/24") as client,
        Stack(right_dev, address="198.18.0.2/24") as server_stack,
        await server_stack.start_server(serve, "", PORT) as server,
    ):
        reader, writer = await client.open_connection("198.18.0.2", PORT)
        status, body = await get(reader, writer, "198.18.0.2", "/")
        print(f"GET / -> {status}, {len(body)} bytes")
        print(body.decode().strip())
        status, body = await get(reader, writer, "198.18.0.2", "/bytes/1000000")
        _, expected = body_for("/bytes/1000000")
        print(f"GET /bytes/1000000 -> {status}, intact: {body == expected}")
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()


if __name__ == "__main__":
    asyncio.run(main())
