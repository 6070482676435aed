"""A UDP echo with asyncio ``DatagramProtocol`` s on two aiostack stacks. No root needed.

``stack.create_datagram_endpoint`` is ``loop.create_datagram_endpoint``
on a stack: the server protocol echoes every datagram, the client sends a
few (one of them larger than the MTU, so IP fragments it) and then one to a
port nobody listens on, which a *connected* endpoint hears about as an ICMP
port unreachable: ``error_received(ConnectionRefusedError)``.

    python examples/udp_echo.py
"""

from __future__ import annotations

import asyncio

from aiostack import MemoryWire, Stack

PORT = 7


class EchoServer(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.DatagramTransport)
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(data, addr)


class Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.replies: asyncio.Queue[bytes | Exception] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.replies.put_nowait(data)

    def error_received(self, exc: Exception) -> None:
        self.replies.put_nowait(exc)


async def main() -> None:
    left_dev, right_dev = MemoryWire.pair()
    async with (
        Stack(left_dev, address="198.18.0.1/24") as left,
        Stack(right_dev, address="198.18.0.2/24") as right,
    ):
        server, _ = await right.create_datagram_endpoint(EchoServer, local_addr=("", PORT))
        transport, client = await left.create_datagram_endpoint(
            Client, remote_addr=("198.18.0.2", PORT)
        )
        print("client endpoint:", transport.get_extra_info("sockname"), "->", PORT)
        for message in (b"hello", b"x" * 20_000):
            transport.sendto(message)
            reply = await asyncio.wait_for(client.replies.get(), 5)
            assert isinstance(reply, bytes)
            print(f"echoed {len(reply)} bytes: {reply == message}")
        transport.close()

        closed, client = await left.create_datagram_endpoint(
            Client, remote_addr=("198.18.0.2", PORT + 1)
        )
        closed.sendto(b"anyone?")
        error = await asyncio.wait_for(client.replies.get(), 5)
        print(f"port {PORT + 1}: error_received({type(error).__name__})")
        closed.close()
        server.close()


if __name__ == "__main__":
    asyncio.run(main())
