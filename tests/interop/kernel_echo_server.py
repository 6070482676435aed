"""A plain asyncio TCP echo server for the kernel side of the interop tests.

Run inside the test's namespace (``ip netns exec NS python -u kernel_echo_server.py HOST PORT``);
prints ``listening`` once the socket listens, echoes every connection until
the peer half-closes, then half-closes back. It uses the kernel's sockets and
asyncio's own streams, so it is the reference implementation aiostack talks to.
"""

from __future__ import annotations

import asyncio
import sys


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(1 << 20):
            writer.write(chunk)
            await writer.drain()
        writer.write_eof()
        await writer.drain()
    finally:
        writer.close()


async def main(host: str, port: int) -> None:
    server = await asyncio.start_server(echo, host, port)
    print("listening", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
