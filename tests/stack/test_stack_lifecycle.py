"""Starting and stopping stacks: tasks, devices and sockets are all released."""

from __future__ import annotations

import asyncio
import errno

import pytest

from aiostack.link.memory import MemoryWire
from aiostack.socket import AF_INET, SOCK_DGRAM
from aiostack.stack.stack import Stack
from tests.helpers import A_IP, B_IP, TIMEOUT, eventually, wired_stacks

LAYERS = ("link-rx", "link-tx", "ip", "transport", "timer")


async def test_stack_starts_five_named_tasks_and_stops_them_all() -> None:
    before = asyncio.all_tasks()
    a, b = MemoryWire.pair(names=("lc0", "lc1"))
    stack = Stack(a, address=f"{A_IP}/24", seed=1)
    assert not stack.running
    await stack.start()
    assert stack.running
    new = asyncio.all_tasks() - before
    assert sorted(t.get_name() for t in new) == sorted(f"lc0:{layer}" for layer in LAYERS)
    await stack.aclose()
    assert not stack.running
    assert asyncio.all_tasks() == before
    assert all(t.done() for t in new)
    assert a.closed
    await b.aclose()


async def test_shutdown_closes_sockets_and_wakes_waiting_receivers_with_ebadf() -> None:
    before = asyncio.all_tasks()
    a, b = MemoryWire.pair()
    async with Stack(b, address=f"{B_IP}/24", seed=2) as peer:
        stack = Stack(a, address=f"{A_IP}/24", seed=1)
        await stack.start()
        socks = [stack.socket(AF_INET, SOCK_DGRAM) for _ in range(3)]
        socks[0].bind(("", 7000))
        waiting = [asyncio.create_task(s.recvfrom(100)) for s in socks[:2]]
        await eventually(lambda: all(s.readers for s in socks[:2]), what="receivers parked")
        await stack.aclose()
        for task in waiting:
            with pytest.raises(OSError) as info:
                await task
            assert info.value.errno == errno.EBADF
        for sock in socks:
            assert sock.fileno() == -1
            with pytest.raises(OSError) as info:
                await sock.sendto(b"x", (B_IP, 7))
            assert info.value.errno == errno.EBADF
        assert stack.sockets == {}
        assert stack.udp.ports == {}
        assert a.closed
        # The peer now has nobody to talk to: frames are lost, counted.
        with pytest.raises(TimeoutError):
            await peer.ping(A_IP, timeout=0.1)
        await eventually(
            lambda: peer.statistics()["device"]["drops"].get("no_carrier", 0) > 0,
            what="the lost frame counted",
        )
    assert asyncio.all_tasks() == before


async def test_aclose_is_idempotent_and_closed_stack_refuses_work() -> None:
    async with wired_stacks() as (a, _b):
        await a.aclose()
        await a.aclose()
        with pytest.raises(RuntimeError):
            a.socket(AF_INET, SOCK_DGRAM)
        with pytest.raises(RuntimeError):
            await a.ping(B_IP, timeout=TIMEOUT)
        with pytest.raises(RuntimeError):
            await a.start()


async def test_stack_that_never_started_closes_its_device() -> None:
    a, b = MemoryWire.pair()
    stack = Stack(a, address=f"{A_IP}/24")
    with pytest.raises(RuntimeError):
        stack.socket(AF_INET, SOCK_DGRAM)
    await stack.aclose()
    assert a.closed
    with pytest.raises(RuntimeError):
        await stack.start()
    await b.aclose()


async def test_exception_inside_async_with_still_cleans_up() -> None:
    before = asyncio.all_tasks()
    a, b = MemoryWire.pair()
    with pytest.raises(ZeroDivisionError):
        async with Stack(a, address=f"{A_IP}/24", seed=1) as stack:
            stack.socket(AF_INET, SOCK_DGRAM)
            raise ZeroDivisionError
    assert asyncio.all_tasks() == before
    assert a.closed and stack.sockets == {}
    await b.aclose()


async def test_cancelled_test_body_leaves_no_tasks() -> None:
    before = asyncio.all_tasks()

    async def body() -> None:
        async with wired_stacks() as (a, _b):
            sock = a.socket(AF_INET, SOCK_DGRAM)
            sock.bind(("", 9))
            await sock.recv(10)  # never completes

    task = asyncio.create_task(body())
    await eventually(lambda: len(asyncio.all_tasks()) >= len(before) + 11, what="stacks up")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert asyncio.all_tasks() == before


async def test_device_closed_under_a_running_stack_ends_it_quietly() -> None:
    before = asyncio.all_tasks()
    a, b = MemoryWire.pair()
    async with Stack(a, address=f"{A_IP}/24", seed=1) as stack:
        a.close()
        rx = next(t for t in asyncio.all_tasks() if t.get_name() == f"{a.name}:link-rx")
        await asyncio.wait_for(rx, TIMEOUT)
        # Sending now cannot reach the device; nothing raises out of a layer.
        sock = stack.socket(AF_INET, SOCK_DGRAM)
        await sock.sendto(b"x", (B_IP, 9))
        with pytest.raises(TimeoutError):
            await stack.ping(B_IP, timeout=0.1)
        assert not any(k.endswith("internal_error") for k in stack.statistics()["drops"])
    assert asyncio.all_tasks() == before
    await b.aclose()


async def test_several_stack_pairs_run_concurrently_and_independently() -> None:
    before = asyncio.all_tasks()

    async def pair(n: int) -> tuple[int, int]:
        async with wired_stacks() as (a, b):
            sock_b = b.socket(AF_INET, SOCK_DGRAM)
            sock_b.bind(("", 5000))
            sock_a = a.socket(AF_INET, SOCK_DGRAM)
            for i in range(20):
                await sock_a.sendto(f"{n}:{i}".encode(), (B_IP, 5000))
            got = []
            async with asyncio.timeout(TIMEOUT):
                for _ in range(20):
                    got.append(await sock_b.recv(100))
            assert got == [f"{n}:{i}".encode() for i in range(20)]
            await a.ping(B_IP, timeout=TIMEOUT)
            return a.statistics()["mib"]["UdpOutDatagrams"], b.statistics()["mib"]["UdpInDatagrams"]

    results = await asyncio.gather(*(pair(n) for n in range(6)))
    assert results == [(20, 20)] * 6
    assert asyncio.all_tasks() == before
