"""aiohttp on aiostack: an ``AppRunner`` on :class:`StackSite`, a client on :class:`StackConnector`.

Host ``a`` (198.18.0.1) is the client, host ``b`` (198.18.0.2) the server,
on one virtual wire (the plugin's ``stack_pair``), on both loops. The app
reports the client's address and port as it saw them, so keep-alive is
checked from both ends: one port on the server, one active open on the
client, for several requests.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import ssl
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from aiostack.contrib.aiohttp import StackConnector, StackResolver, StackSite
from aiostack.stack.stack import Stack
from aiostack.testing.network import VirtualNetwork
from aiostack.testing.virtual_time import run_virtual

TIMEOUT = aiohttp.ClientTimeout(total=10)
B_IP = "198.18.0.2"


def make_app() -> web.Application:
    async def whoami(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        return web.json_response(
            {"remote": request.remote, "peer": list(peer or ()), "scheme": request.scheme}
        )

    async def digest(request: web.Request) -> web.Response:
        body = await request.read()
        return web.Response(text=f"{len(body)} {hashlib.sha256(body).hexdigest()}")

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=bytes(range(256)) * 1024)  # 256 KiB

    app = web.Application()
    app.router.add_get("/whoami", whoami)
    app.router.add_post("/digest", digest)
    app.router.add_get("/big", big)
    return app


@pytest.fixture
async def served(stack_pair: tuple[Stack, Stack]) -> AsyncIterator[tuple[Stack, StackSite]]:
    client, server = stack_pair
    runner = web.AppRunner(make_app())
    await runner.setup()
    site = StackSite(runner, server, port=80)
    await site.start()
    try:
        yield client, site
    finally:
        async with asyncio.timeout(10):
            await runner.cleanup()


async def test_keep_alive_requests_share_one_connection(served: tuple[Stack, StackSite]) -> None:
    client, site = served
    assert site.name == f"http://{B_IP}:80"
    connector = StackConnector(client)
    async with aiohttp.ClientSession(connector=connector, timeout=TIMEOUT) as session:
        peers = []
        for _ in range(5):
            async with session.get(f"http://{B_IP}/whoami") as response:
                assert response.status == 200
                assert response.version == aiohttp.HttpVersion11
                assert "close" not in response.headers.get("Connection", "").lower()
                info = await response.json()
                peers.append(tuple(info["peer"]))
        assert info["remote"] == "198.18.0.1"
        body = bytes(range(251)) * 800  # 200 kB, several windows
        async with session.post(f"http://{B_IP}/digest", data=body) as response:
            assert await response.text() == f"{len(body)} {hashlib.sha256(body).hexdigest()}"
        async with session.get(f"http://{B_IP}/big") as response:
            assert await response.read() == bytes(range(256)) * 1024
    assert len(set(peers)) == 1 and peers[0][0] == "198.18.0.1"
    assert client.counters.TcpActiveOpens == 1
    assert site.stack.counters.TcpPassiveOpens == 1


async def test_force_close_opens_a_connection_per_request(
    served: tuple[Stack, StackSite],
) -> None:
    client, _site = served
    connector = StackConnector(client, force_close=True)
    async with aiohttp.ClientSession(connector=connector, timeout=TIMEOUT) as session:
        ports = set()
        for _ in range(3):
            async with session.get(f"http://{B_IP}/whoami") as response:
                ports.add((await response.json())["peer"][1])
    assert len(ports) == 3
    assert client.counters.TcpActiveOpens == 3


async def test_host_names_come_from_the_names_given(
    served: tuple[Stack, StackSite], virtual_network: VirtualNetwork
) -> None:
    client, _site = served
    connector = StackConnector(client, names=virtual_network.resolve)
    async with aiohttp.ClientSession(connector=connector, timeout=TIMEOUT) as session:
        async with session.get("http://b/whoami") as response:
            assert response.status == 200
        with pytest.raises(aiohttp.ClientConnectorDNSError):
            await session.get("http://nowhere.example/")


async def test_errors_are_aiohttps_own(served: tuple[Stack, StackSite]) -> None:
    client, _site = served
    async with aiohttp.ClientSession(connector=StackConnector(client), timeout=TIMEOUT) as session:
        # Nothing listens on 81: the server's RST is ECONNREFUSED.
        with pytest.raises(aiohttp.ClientConnectorError) as info:
            await session.get(f"http://{B_IP}:81/")
        assert isinstance(info.value.os_error, ConnectionRefusedError)


async def test_site_on_an_ephemeral_port(stack_pair: tuple[Stack, Stack]) -> None:
    client, server = stack_pair
    runner = web.AppRunner(make_app())
    await runner.setup()
    site = StackSite(runner, server, host=B_IP, port=0)
    try:
        await site.start()
        assert site.port >= 32768
        assert site.name == f"http://{B_IP}:{site.port}"
        session = aiohttp.ClientSession(connector=StackConnector(client), timeout=TIMEOUT)
        async with session, session.get(f"{site.name}/whoami") as response:
            assert response.status == 200
    finally:
        await runner.cleanup()
    # Cleaned up: the port no longer listens.
    async with aiohttp.ClientSession(connector=StackConnector(client), timeout=TIMEOUT) as session:
        with pytest.raises(aiohttp.ClientConnectorError):
            await session.get(f"{site.name}/whoami")


async def test_resolver_maps_names_and_refuses_the_rest() -> None:
    resolver = StackResolver({"server": B_IP, "broken": "not-an-address"})
    [result] = await resolver.resolve("server", 80)
    assert (result["host"], result["port"]) == (B_IP, 80)
    for name in ("broken", "unknown"):
        with pytest.raises(OSError, match="name not known"):
            await resolver.resolve(name, 80)
    await resolver.close()


async def test_connector_refuses_kernel_only_options(stack_pair: tuple[Stack, Stack]) -> None:
    client, _ = stack_pair
    with pytest.raises(ValueError, match="local_addr"):
        StackConnector(client, local_addr=("198.18.0.1", 0))
    with pytest.raises(ValueError, match="IPv4 only"):
        StackConnector(client, family=socket.AF_INET6)
    with pytest.raises(ValueError, match="names or resolver"):
        StackConnector(client, names={}, resolver=StackResolver())


def test_app_sleeps_client_timeouts_and_server_keepalive_run_on_virtual_time() -> None:
    """Handler sleeps, ``ClientTimeout`` and aiohttp's keep-alive timer follow the virtual clock."""

    async def scenario() -> dict[str, object]:
        loop = asyncio.get_running_loop()
        net = VirtualNetwork(seed=3)
        net.connect("client", "server", impairment={"delay": 0.005})
        out: dict[str, object] = {}

        async def slow(request: web.Request) -> web.Response:
            await asyncio.sleep(float(request.query["s"]))
            return web.Response(text="done")

        app = web.Application()
        app.router.add_get("/slow", slow)
        async with net:
            runner = web.AppRunner(app, keepalive_timeout=30)
            await runner.setup()
            await StackSite(runner, net.host("server").stack, port=80).start()
            client = net.host("client").stack
            async with aiohttp.ClientSession(
                connector=StackConnector(client, names=net.resolve, keepalive_timeout=300)
            ) as session:
                start = loop.time()
                with pytest.raises(TimeoutError):
                    await session.get("http://server/slow?s=20", timeout=aiohttp.ClientTimeout(5))
                out["timed_out_after"] = loop.time() - start
                start = loop.time()
                async with session.get("http://server/slow?s=20") as response:
                    assert await response.text() == "done"
                out["answered_after"] = loop.time() - start
                opens = client.counters.TcpActiveOpens
                await asyncio.sleep(10)  # idle less than the server's keep-alive: reused
                async with session.get("http://server/slow?s=0"):
                    pass
                out["new_after_10s"] = client.counters.TcpActiveOpens - opens
                await asyncio.sleep(31)  # idle longer: the server has closed it
                async with session.get("http://server/slow?s=0"):
                    pass
                out["new_after_31s"] = client.counters.TcpActiveOpens - opens
            await runner.cleanup()
        return out

    out = run_virtual(scenario())
    print(out)
    assert out["timed_out_after"] == pytest.approx(5.0, abs=1e-6)
    # The timed-out request's connection was closed, so: a handshake (10 ms),
    # the request and response (10 ms) and 20 s in the handler.
    assert out["answered_after"] == pytest.approx(20.020, abs=1e-6)
    assert out["new_after_10s"] == 0
    assert out["new_after_31s"] == 1


async def test_https_through_the_site_and_the_connector(stack_pair: tuple[Stack, Stack]) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("app.test").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    client, server = stack_pair
    runner = web.AppRunner(make_app())
    await runner.setup()
    site = StackSite(runner, server, port=443, ssl_context=server_ctx)
    await site.start()
    assert site.name == f"https://{B_IP}:443"
    try:
        connector = StackConnector(client, names={"app.test": B_IP}, ssl=client_ctx)
        async with aiohttp.ClientSession(connector=connector, timeout=TIMEOUT) as session:
            for _ in range(2):
                async with session.get("https://app.test/whoami") as response:
                    assert response.status == 200
                    assert (await response.json())["scheme"] == "https"  # as the app saw it
            # The certificate is for app.test, not for the bare address.
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await session.get(f"https://{B_IP}/whoami")
        assert client.counters.TcpActiveOpens == 2
    finally:
        await runner.cleanup()
