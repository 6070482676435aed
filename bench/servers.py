"""The servers the suite measures, written once against asyncio Streams.

Each handler is a plain ``client_connected_cb(reader, writer)``, so the
very same code serves on a kernel socket (``asyncio.start_server(sock=...)``)
and on aiostack (``aiostack.aio.start_server(stack, ...)``): the only
difference between a figure and its kernel reference is the stack
underneath.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

from aiostack.aio import Server, start_server
from aiostack.stack.stack import Stack
from aiostack.testing.netns import NetNamespace

HTTP_BODY = b"Hello, world!\n"
HTTP_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
    + str(len(HTTP_BODY)).encode()
    + b"\r\n\r\n"
    + HTTP_BODY
)


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Echo everything until EOF, then close."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A keep-alive HTTP/1.1 server with one fixed answer (the smallest useful one)."""
    try:
        while True:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(HTTP_RESPONSE)
            await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        pass
    finally:
        writer.close()


async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Keep the connection open, idle, until the client closes it."""
    try:
        await reader.read()
    except ConnectionError:
        pass
    finally:
        writer.close()


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def on_kernel(
    netns: str, host: str, port: int, handler: Handler, backlog: int = 4096
) -> asyncio.Server:
    """``handler`` served by the kernel: a listening socket created inside ``netns``."""
    sock = NetNamespace(netns).socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.setblocking(False)
    return await asyncio.start_server(handler, sock=sock, backlog=backlog)


async def on_stack(stack: Stack, port: int, handler: Handler, backlog: int = 4096) -> Server:
    """``handler`` served by aiostack on ``stack``."""
    return await start_server(stack, handler, None, port, backlog=backlog)
