"""A UDP echo server on a TAP device that the Linux kernel talks to. Needs root.

Creates a network namespace with a TAP (kernel side 198.18.0.1/24), brings a
stack up on it at 198.18.0.2, runs a UDP echo service on port 7, and lets
the kernel's own tools use it; everything is removed on exit.

    sudo python examples/tap_udp_echo.py
"""

from __future__ import annotations

import asyncio
import sys

import uvloop

from aiostack import AF_INET, SOCK_DGRAM, Stack
from aiostack.testing.netns import tap_in_netns

KERNEL_CLIENT = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.sendto(b"hello from the kernel", ("198.18.0.2", 7))
print(s.recvfrom(100))
"""


async def echo(stack: Stack) -> None:
    sock = stack.socket(AF_INET, SOCK_DGRAM)
    sock.bind(("", 7))
    with sock:
        while True:
            data, peer = await sock.recvfrom(65535)
            await sock.sendto(data, peer)


async def main() -> None:
    async with tap_in_netns() as spec:
        address = f"{spec.stack_ip}/{spec.prefixlen}"
        async with Stack(spec.device(), address=address, mac=spec.stack_mac) as stack:
            server = asyncio.create_task(echo(stack))
            ping = await spec.namespace.run_async("ping", "-c", "3", spec.stack_ip)
            print(ping.stdout.decode())
            reply = await spec.namespace.run_async(sys.executable, "-c", KERNEL_CLIENT)
            print("kernel client got:", reply.stdout.decode().strip())
            server.cancel()
            await asyncio.gather(server, return_exceptions=True)


if __name__ == "__main__":
    uvloop.run(main())
