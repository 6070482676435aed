"""Two aiostack stacks on an in-memory wire: ping, then a UDP echo. No root needed.

python examples/memory_udp_echo.py
"""

from __future__ import annotations

import asyncio

from aiostack import AF_INET, SOCK_DGRAM, MemoryWire, Stack


async def echo_server(stack: Stack, port: int) -> None:
    sock = stack.socket(AF_INET, SOCK_DGRAM)
    sock.bind(("", port))
    with sock:
        while True:
            data, peer = await sock.recvfrom(65535)
            await sock.sendto(data, peer)


async def main() -> None:
    left_dev, right_dev = MemoryWire.pair()
    async with (
        Stack(left_dev, address="198.18.0.1/24") as left,
        Stack(right_dev, address="198.18.0.2/24") as right,
    ):
        rtt = await left.ping("198.18.0.2")
        print(f"ping 198.18.0.2: {rtt * 1e6:.0f} us")

        server = asyncio.create_task(echo_server(right, 7))
        client = left.socket(AF_INET, SOCK_DGRAM)
        with client:
            for message in (b"hello", b"x" * 20_000):  # the second one is fragmented
                await client.sendto(message, ("198.18.0.2", 7))
                reply, source = await client.recvfrom(65535)
                print(f"echoed {len(reply)} bytes from {source}: {reply == message}")
        server.cancel()
        await asyncio.gather(server, return_exceptions=True)
        print("198.18.0.2 counters:", {k: v for k, v in right.statistics()["mib"].items() if v})


if __name__ == "__main__":
    asyncio.run(main())
