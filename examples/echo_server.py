"""A TCP echo server written with asyncio Streams, on aiostack. No root needed.

By default two stacks share an in-memory wire: 198.18.0.2 serves, 198.18.0.1
connects with ``open_connection`` and checks every echo. The server is the
asyncio documentation's echo server; only ``stack.start_server`` differs
from ``asyncio.start_server``.

    python examples/echo_server.py
    sudo python examples/echo_server.py --tap   # the Linux kernel is the client
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from aiostack import MemoryWire, Stack

PORT = 7

KERNEL_CLIENT = """
import socket
with socket.create_connection(("198.18.0.2", 7), timeout=10) as s:
    s.sendall(b"hello from the kernel\\n")
    print("kernel client got:", s.makefile("rb").readline())
"""


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Echo line by line until the client closes."""
    peer = writer.get_extra_info("peername")
    try:
        while line := await reader.readline():
            writer.write(line)
            await writer.drain()
    finally:
        writer.close()
        await writer.wait_closed()
        print(f"server: {peer} disconnected")


async def client(stack: Stack, host: str) -> None:
    reader, writer = await stack.open_connection(host, PORT)
    print("client: connected from", writer.get_extra_info("sockname"))
    for message in (b"hello\n", b"aiostack\n", b"x" * 50_000 + b"\n"):
        writer.write(message)
        await writer.drain()
        reply = await reader.readline()
        print(f"client: echoed {len(reply)} bytes: {reply == message}")
    writer.close()
    await writer.wait_closed()


async def memory() -> None:
    left_dev, right_dev = MemoryWire.pair()
    async with (
        Stack(left_dev, address="198.18.0.1/24") as left,
        Stack(right_dev, address="198.18.0.2/24") as right,
        await right.start_server(echo, "", PORT) as server,
    ):
        print("server: listening on", server.sockets[0].getsockname())
        await client(left, "198.18.0.2")
        server.close()
        await server.wait_closed()


async def tap() -> None:
    from aiostack.testing.netns import tap_in_netns

    async with tap_in_netns() as spec:
        address = f"{spec.stack_ip}/{spec.prefixlen}"
        async with (
            Stack(spec.device(), address=address, mac=spec.stack_mac) as stack,
            await stack.start_server(echo, "", PORT) as server,
        ):
            print("server: listening on", server.sockets[0].getsockname())
            reply = await spec.namespace.run_async(sys.executable, "-c", KERNEL_CLIENT)
            print(reply.stdout.decode().strip())
            server.close()
            await server.wait_closed()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tap", action="store_true", help="serve the Linux kernel over a TAP")
    asyncio.run(tap() if parser.parse_args().tap else memory())
