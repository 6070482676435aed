"""uvicorn on aiostack: an ASGI app served by :class:`StackServer`, requests from another stack.

The client speaks HTTP/1.1 by hand over aiostack Streams, so keep-alive is
visible: several requests on one connection, and uvicorn closing it when
it stays idle for ``timeout_keep_alive`` (checked to the millisecond on
virtual time).
"""

from __future__ import annotations

import asyncio
import errno
import json
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from aiostack.aio import open_connection
from aiostack.contrib.uvicorn import StackServer
from aiostack.stack.stack import Stack
from aiostack.testing.network import VirtualNetwork
from aiostack.testing.virtual_time import run_virtual

B_IP = "198.18.0.2"
PORT = 8000


@dataclass
class App:
    """An ASGI app that answers with the client address it saw and records its lifespan."""

    events: list[str] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].rsplit(".", 1)[-1]
                self.events.append(kind)
                await send({"type": f"{message['type']}.complete"})
                if kind == "shutdown":
                    return
        assert scope["type"] == "http"
        delay = float(dict(scope["headers"]).get(b"x-delay", b"0"))
        if delay:
            await asyncio.sleep(delay)  # application time: virtual on a virtual loop
        body = json.dumps({"client": scope["client"], "path": scope["path"]}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def config(app: App, **kwargs: Any) -> uvicorn.Config:
    return uvicorn.Config(app, host="", port=PORT, lifespan="on", log_level="warning", **kwargs)


async def start(server: StackServer) -> asyncio.Task[None]:
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:
            if task.done():
                await task
            await asyncio.sleep(0.001)
    return task


async def stop(server: StackServer, task: asyncio.Task[None]) -> None:
    server.should_exit = True
    async with asyncio.timeout(10):
        await task


async def get(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str, delay: float = 0
) -> dict[str, Any]:
    """One HTTP/1.1 request on an open connection; the JSON body of the 200 response."""
    extra = f"X-Delay: {delay}\r\n" if delay else ""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: server\r\n{extra}\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    status, *lines = head.decode().split("\r\n")
    assert status == "HTTP/1.1 200 OK", status
    headers = dict(line.lower().split(": ", 1) for line in lines if line)
    assert headers.get("connection") != "close"
    result: dict[str, Any] = json.loads(await reader.readexactly(int(headers["content-length"])))
    return result


@pytest.fixture
async def served(stack_pair: tuple[Stack, Stack]) -> AsyncIterator[tuple[Stack, App]]:
    client, server_stack = stack_pair
    app = App()
    server = StackServer(config(app), server_stack)
    task = await start(server)
    assert server.port == PORT
    try:
        yield client, app
    finally:
        await stop(server, task)
    assert app.events == ["startup", "shutdown"]


async def test_keep_alive_requests_on_one_connection(served: tuple[Stack, App]) -> None:
    client, app = served
    assert app.events == ["startup"]
    async with asyncio.timeout(10):
        reader, writer = await open_connection(client, B_IP, PORT)
        local = writer.get_extra_info("sockname")
        answers = [await get(reader, writer, f"/n/{i}") for i in range(5)]
        writer.close()
        await writer.wait_closed()
    assert [a["path"] for a in answers] == [f"/n/{i}" for i in range(5)]
    assert {tuple(a["client"]) for a in answers} == {tuple(local)}
    assert client.counters.TcpActiveOpens == 1


async def test_a_listen_failure_raises_instead_of_exiting(stack_pair: tuple[Stack, Stack]) -> None:
    _client, server_stack = stack_pair
    app = App()
    server = StackServer(
        uvicorn.Config(app, host="203.0.113.9", port=PORT, lifespan="on", log_level="critical"),
        server_stack,
    )
    with pytest.raises(OSError) as info:
        async with asyncio.timeout(10):
            await server.serve()
    assert info.value.errno == errno.EADDRNOTAVAIL
    assert app.events == ["startup", "shutdown"]


def test_kernel_socket_options_are_refused() -> None:
    from aiostack.link.memory import MemoryWire

    stack = Stack(MemoryWire().a, address="198.18.0.2/24")
    with pytest.raises(ValueError, match="uds and fd"):
        StackServer(uvicorn.Config(App(), uds="/tmp/x.sock"), stack)


def test_uvicorn_keep_alive_timeout_and_app_sleeps_run_on_virtual_time() -> None:
    """uvicorn's idle timer and the app's own sleep both follow the virtual clock."""

    async def scenario() -> tuple[float, float, float]:
        loop = asyncio.get_running_loop()
        net = VirtualNetwork(seed=5)
        net.connect("client", "server", impairment={"delay": 0.005})
        async with net:
            app = App()
            server = StackServer(config(app, timeout_keep_alive=7), net.host("server").stack)
            task = await start(server)
            reader, writer = await open_connection(net.host("client").stack, B_IP, PORT)
            start_at = loop.time()
            await get(reader, writer, "/slow", delay=30)
            slow = loop.time() - start_at
            assert await reader.read(100) == b""  # uvicorn closed the idle connection
            closed = loop.time() - start_at
            writer.close()
            await stop(server, task)
            return slow, closed, loop.time() - start_at

    wall = time.monotonic()
    slow, closed, total = run_virtual(scenario())
    print(f"{total:.3f} virtual s in {time.monotonic() - wall:.3f} wall s")
    # 30 s in the app plus one round trip (request and response, 5 ms each way);
    # plus one more if Nagle holds the body behind the headers (uvicorn writes
    # them separately and leaves TCP_NODELAY to the transport).
    assert 30.010 - 1e-6 <= slow <= 30.020 + 1e-6
    # uvicorn's idle timer starts when the app has sent the response (5 ms
    # + 30 s in) and closes 7 s later; the FIN takes 5 ms to arrive.
    assert closed == pytest.approx(37.010, abs=1e-6)


async def test_https_with_uvicorns_own_tls_settings(
    stack_pair: tuple[Stack, Stack], tmp_path: Path
) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("asgi.test")
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    client, server_stack = stack_pair
    app = App()
    server = StackServer(
        config(app, ssl_certfile=str(tmp_path / "cert.pem"), ssl_keyfile=str(tmp_path / "key.pem")),
        server_stack,
    )
    task = await start(server)
    try:
        async with asyncio.timeout(10):
            reader, writer = await open_connection(
                client, B_IP, PORT, ssl=client_ctx, server_hostname="asgi.test"
            )
            answers = [await get(reader, writer, f"/tls/{i}") for i in range(2)]
            assert writer.get_extra_info("ssl_object").version() in ("TLSv1.2", "TLSv1.3")
            writer.close()
            await writer.wait_closed()
        assert [a["path"] for a in answers] == ["/tls/0", "/tls/1"]
    finally:
        await stop(server, task)
