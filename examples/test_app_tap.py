"""The same aiohttp app on aiostack, against the Linux kernel over a TAP, with kernel-side loss.

sudo python -m pytest examples/test_app_tap.py -v     # needs root; skipped otherwise

``tap_stack`` (aiostack's pytest plugin) makes a fresh network namespace
with a TAP whose kernel side is 198.18.0.1, and a started stack on it at
198.18.0.2; both are gone after the test. The app from
``examples/http_server.py`` is served by the stack; the clients are the
kernel's: ``curl`` and a Python script run inside the namespace.
``tap_stack.drop(5)`` adds an nftables rule there that drops a random 5 %
of the kernel's TCP packets, both ways. Without root the tests are skipped
with the reason; with ``AIOSTACK_REQUIRE_TAP=1`` (CI) that is an error.
This runs in real time: the kernel's timers cannot be made virtual.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from http_server import PORT, make_app

from aiostack.contrib.aiohttp import StackSite
from aiostack.testing.plugin import TapStack


@pytest.fixture
async def served(tap_stack: TapStack) -> AsyncIterator[TapStack]:
    runner = web.AppRunner(make_app())
    await runner.setup()
    await StackSite(runner, tap_stack.stack, port=PORT).start()
    yield tap_stack
    await runner.cleanup()


async def test_kernel_curl_talks_to_the_app(served: TapStack) -> None:
    base = f"http://{served.stack_ip}:{PORT}"
    put = await served.namespace.run_async(
        "curl", "-sS", "--max-time", "20", "-X", "PUT", "--data-binary", "hello", f"{base}/kv/a"
    )
    assert put.returncode == 0, put.stderr
    assert json.loads(put.stdout) == {"stored": "a"}
    # Three requests on one keep-alive connection (curl reuses it for one host).
    got = await served.namespace.run_async(
        "curl", "-sS", "--max-time", "20", f"{base}/kv/a", f"{base}/health", f"{base}/health"
    )
    assert got.returncode == 0, got.stderr
    assert got.stdout.startswith(b"hello")
    assert served.stack.counters.TcpPassiveOpens == 2


KERNEL_CLIENT = """
import hashlib, sys, urllib.request
base = sys.argv[1]
body = bytes(range(256)) * 1000                          # 256 kB, ~180 segments
request = urllib.request.Request(base + "/kv/big", data=body, method="PUT")
urllib.request.urlopen(request, timeout=60).read()
for _ in range(3):
    data = urllib.request.urlopen(base + "/kv/big", timeout=60).read()
    assert data == body, len(data)
print("ok", hashlib.sha256(data).hexdigest())
"""


async def test_large_transfers_survive_5_percent_kernel_side_loss(served: TapStack) -> None:
    base = f"http://{served.stack_ip}:{PORT}"
    async with served.drop(5, protocol="tcp") as drop:
        result = await served.namespace.python_async(KERNEL_CLIENT, base, timeout=120)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.startswith(b"ok ")
    # The kernel really dropped packets both ways, and the stack repaired its side.
    assert drop.dropped["input"] > 0 and drop.dropped["output"] > 0
    assert served.stack.counters.TcpRetransSegs > 0
