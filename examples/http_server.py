"""An aiohttp app served by one aiostack stack, and an aiohttp client on another. No root needed.

python examples/http_server.py            # stdlib loop
python examples/http_server.py --uvloop

Two hosts on an in-memory wire (``VirtualNetwork``): ``server``
(198.18.0.2) runs the app through ``StackSite``, ``client`` (198.18.0.1)
talks to it with ``aiohttp.ClientSession`` over ``StackConnector``, by host
name. The app and the retrying client are also what ``test_app_virtual.py``
and ``test_app_tap.py`` (next to this file) test, as a user would.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from aiostack.contrib.aiohttp import StackConnector, StackSite
from aiostack.testing import VirtualNetwork

PORT = 8080
log = logging.getLogger("example.http")


# ---------------------------------------------------------------- the application


def make_app() -> web.Application:
    """A small key-value store: what an integration test would exercise."""
    store: dict[str, bytes] = {}

    async def put(request: web.Request) -> web.Response:
        store[request.match_info["key"]] = await request.read()
        return web.json_response({"stored": request.match_info["key"]}, status=201)

    async def get(request: web.Request) -> web.Response:
        value = store.get(request.match_info["key"])
        if value is None:
            raise web.HTTPNotFound()
        return web.Response(body=value, headers={"X-SHA256": hashlib.sha256(value).hexdigest()})

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "keys": len(store), "peer": request.remote})

    app = web.Application()
    app.router.add_put("/kv/{key}", put)
    app.router.add_get("/kv/{key}", get)
    app.router.add_get("/health", health)
    return app


# ---------------------------------------------------------------- a client with retries


async def with_retries(
    call: Callable[[], Awaitable[Any]],
    *,
    attempts: int = 6,
    backoff: float = 0.5,
) -> tuple[Any, int]:
    """Run ``call`` until it succeeds; wait ``backoff``, doubled each time, between tries.

    Retries on connection errors and timeouts (what a lossy or partitioned
    network causes), not on HTTP errors. Returns (result, attempts used).
    """
    for attempt in range(1, attempts + 1):
        try:
            return await call(), attempt
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            if attempt == attempts:
                raise
            delay = backoff * 2 ** (attempt - 1)
            log.info("attempt %d failed (%r); retrying in %.1f s", attempt, exc, delay)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


async def fetch(session: aiohttp.ClientSession, url: str, timeout: float = 3.0) -> bytes:
    """GET ``url`` within ``timeout`` seconds; the body of a 200 (raises on other statuses)."""
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
        response.raise_for_status()
        return await response.read()


# ---------------------------------------------------------------- the demo


async def main() -> None:
    net = VirtualNetwork(seed=1)
    net.connect("client", "server")
    async with net:
        runner = web.AppRunner(make_app())
        await runner.setup()
        site = StackSite(runner, net.host("server").stack, port=PORT)
        await site.start()
        print(f"serving on {site.name} (host 'server')")

        connector = StackConnector(net.host("client").stack, names=net.resolve)
        async with aiohttp.ClientSession(connector=connector) as session:
            body = bytes(range(256)) * 1000
            async with session.put(f"http://server:{PORT}/kv/blob", data=body) as response:
                print("PUT /kv/blob:", response.status, await response.json())
            data, attempts = await with_retries(
                lambda: fetch(session, f"http://server:{PORT}/kv/blob")
            )
            print(f"GET /kv/blob: {len(data)} bytes intact: {data == body} ({attempts} attempt)")
            for _ in range(3):
                async with session.get(f"http://server:{PORT}/health") as response:
                    print("GET /health:", await response.json())
        client = net.host("client").stack.counters
        print(f"TCP connections opened by the client: {client.TcpActiveOpens} (keep-alive)")
        await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop")
    if parser.parse_args().uvloop:
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())
