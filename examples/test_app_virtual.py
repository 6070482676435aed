"""Testing an aiohttp app and its retrying client on a virtual network, on virtual time.

python -m pytest examples/test_app_virtual.py -v

The app and the client are ``examples/http_server.py``'s. The fixtures come
from aiostack's pytest plugin (installed with aiostack): ``virtual_network``
is a started network whose links are captured to pcaps (kept, and their
paths printed, only if the test fails). ``aiostack_virtual_time`` runs each
test and its fixtures on a virtual clock: the 10-second partition and every
TCP retransmission timer take no wall time. ``aiostack_impair`` sets the
loss of every link and the seed that makes the run replayable.
See docs/testing-your-app.md for the walk-through.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from http_server import PORT, fetch, make_app, with_retries

from aiostack.contrib.aiohttp import StackConnector, StackSite
from aiostack.testing import VirtualNetwork

pytestmark = pytest.mark.aiostack_virtual_time


@pytest.fixture
async def session(virtual_network: VirtualNetwork) -> AsyncIterator[aiohttp.ClientSession]:
    """The app on host ``server``, and a client session on host ``client``."""
    virtual_network.connect("client", "server")
    await virtual_network.start()
    runner = web.AppRunner(make_app())
    await runner.setup()
    await StackSite(runner, virtual_network.host("server").stack, port=PORT).start()
    connector = StackConnector(virtual_network.host("client").stack, names=virtual_network.resolve)
    async with aiohttp.ClientSession(f"http://server:{PORT}", connector=connector) as session:
        yield session
    await runner.cleanup()


@pytest.mark.aiostack_impair(loss=0.05, seed=1)
async def test_every_request_completes_under_5_percent_loss(
    session: aiohttp.ClientSession, virtual_network: VirtualNetwork
) -> None:
    values = {f"k{i}": bytes([i]) * 20_000 for i in range(20)}
    for key, value in values.items():
        async with session.put(f"/kv/{key}", data=value) as response:
            assert response.status == 201
    for key, value in values.items():
        assert await fetch(session, f"/kv/{key}", timeout=30) == value
    # The loss did bite: TCP repaired it (and the test shows how many times).
    client = virtual_network.host("client").stack.counters
    server = virtual_network.host("server").stack.counters
    assert client.TcpRetransSegs + server.TcpRetransSegs > 0
    assert sum(s.dropped for s in virtual_network.link("client", "server").stats().values()) > 0


async def test_client_retries_through_a_10_second_partition(
    session: aiohttp.ClientSession, virtual_network: VirtualNetwork
) -> None:
    loop = asyncio.get_running_loop()
    async with session.put("/kv/greeting", data=b"hello") as response:
        assert response.status == 201

    virtual_network.partition("client", "server")
    loop.call_later(10, virtual_network.heal)
    start = loop.time()
    body, attempts = await with_retries(
        lambda: fetch(session, "/kv/greeting", timeout=3), attempts=6, backoff=0.5
    )
    elapsed = loop.time() - start
    assert body == b"hello"
    # Attempts start at 0, 3.5, 7.5 and 12.5 s (each times out after 3 s, then
    # waits 0.5, 1, 2 s): three fall in the partition, the fourth gets through
    # at once (the links have no delay).
    assert attempts == 4
    assert elapsed == pytest.approx(12.5, abs=1e-3)


async def test_without_retries_the_partition_is_an_error(
    session: aiohttp.ClientSession, virtual_network: VirtualNetwork
) -> None:
    virtual_network.partition("client", "server")
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(TimeoutError):
        await fetch(session, "/health", timeout=3)
    assert loop.time() - start == pytest.approx(3.0)
