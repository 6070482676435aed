"""BatchQueue: bounded, batch-at-a-time, drop-and-count when full."""

from __future__ import annotations

import asyncio

import pytest

from aiostack.core.counters import Counters
from aiostack.socket import AF_INET, SOCK_DGRAM
from aiostack.stack.queues import BatchQueue
from tests.helpers import A_IP, B_IP, TIMEOUT, eventually, stack_and_peer, udp_frame


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError):
        BatchQueue("q", Counters(), 0)
    with pytest.raises(ValueError):
        BatchQueue("q", Counters(), -1)


def test_full_queue_drops_the_excess_and_counts_it() -> None:
    counters = Counters()
    queue: BatchQueue[int] = BatchQueue("ip_in", counters, limit=5)
    queue.put([1, 2, 3])
    queue.put([4, 5, 6, 7])  # room for two
    assert len(queue) == 5
    assert counters.drops == {"queue.ip_in_full": 2}
    queue.put([8])  # no room at all
    assert counters.drops == {"queue.ip_in_full": 3}
    assert queue.get_nowait() == [1, 2, 3, 4, 5]  # oldest kept, in order
    assert len(queue) == 0
    queue.put([9, 10])
    assert queue.get_nowait() == [9, 10]
    assert counters.drops == {"queue.ip_in_full": 3}


def test_one_batch_larger_than_the_queue() -> None:
    counters = Counters()
    queue: BatchQueue[int] = BatchQueue("link_out", counters, limit=3)
    queue.put(list(range(10)))
    assert queue.get_nowait() == [0, 1, 2]
    assert counters.drops == {"queue.link_out_full": 7}


def test_empty_put_is_nothing() -> None:
    counters = Counters()
    queue: BatchQueue[int] = BatchQueue("q", counters, limit=1)
    queue.put([])
    assert len(queue) == 0 and queue.get_nowait() == [] and counters.drops == {}


async def test_get_waits_then_returns_everything_queued() -> None:
    queue: BatchQueue[int] = BatchQueue("q", Counters(), limit=100)
    getter = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    assert not getter.done()
    queue.put([1])
    queue.put([2, 3])
    assert await asyncio.wait_for(getter, TIMEOUT) == [1, 2, 3]
    queue.put([4])
    assert await asyncio.wait_for(queue.get(), TIMEOUT) == [4]


async def test_cancelled_get_loses_nothing() -> None:
    queue: BatchQueue[int] = BatchQueue("q", Counters(), limit=100)
    getter = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    getter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await getter
    queue.put([1, 2])
    assert await asyncio.wait_for(queue.get(), TIMEOUT) == [1, 2]


async def test_stack_with_a_tiny_queue_drops_and_accounts_for_every_frame() -> None:
    # A burst far beyond the IP queue's bound: what does not fit is dropped
    # and counted, never buffered without limit, and every frame is
    # accounted for as either processed or dropped.
    async with stack_and_peer(queue_limit=4) as (stack, peer):
        burst = [udp_frame(A_IP, B_IP, 1000, 9, bytes([i])) for i in range(200)]
        peer.send(*burst)

        def settled() -> bool:
            stats = stack.statistics()
            mib, drops = stats["mib"], stats["drops"]
            ip_done = mib["IpInReceives"] + drops.get("queue.ip_in_full", 0) == 200
            udp_done = (
                mib["UdpNoPorts"] + drops.get("queue.transport_in_full", 0) == (mib["IpInDelivers"])
            )
            return bool(ip_done and udp_done and mib["IpInDelivers"] == mib["IpInReceives"])

        await eventually(settled, what="every frame processed or dropped")
        stats = stack.statistics()
        assert stats["drops"].get("queue.ip_in_full", 0) > 0
        assert len(stack.ip_queue) == len(stack.l4_queue) == 0
        # Still healthy afterwards.
        peer.answer_echo = True
        await stack.ping(A_IP, timeout=TIMEOUT)


async def test_hand_on_runs_the_batch_at_once_only_for_an_idle_consumer() -> None:
    counters = Counters()
    queue: BatchQueue[int] = BatchQueue("ip_in", counters, limit=4)
    done: list[list[int]] = []
    queue.hand_on([1], done.append)  # nobody waits in get(): queued
    assert done == [] and len(queue) == 1
    assert queue.get_nowait() == [1]

    getter = asyncio.create_task(queue.get())
    await asyncio.sleep(0)  # the consumer is parked, nothing is queued
    queue.hand_on([2, 3], done.append)
    assert done == [[2, 3]] and len(queue) == 0  # processed in this pass
    queue.hand_on([4, 5, 6, 7, 8], done.append)  # over the bound: the queue's rules
    assert done == [[2, 3]]
    assert counters.drops == {"queue.ip_in_full": 1}
    queue.hand_on([9], done.append)  # something is queued: joins it, order kept
    assert await asyncio.wait_for(getter, TIMEOUT) == [4, 5, 6, 7]
    assert done == [[2, 3]]


async def test_a_stack_hands_a_batch_up_in_the_pass_that_read_it() -> None:
    # A frame read by the link task reaches the socket before any other task
    # runs: the IP and transport tasks stay parked in get() throughout.
    async with stack_and_peer() as (stack, _peer):
        sock = stack.socket(AF_INET, SOCK_DGRAM)
        sock.bind((B_IP, 9))
        await asyncio.sleep(0)  # let the freshly started layer tasks park in get()
        before = stack.statistics()["mib"]["UdpInDatagrams"]
        stack.link.receive([udp_frame(A_IP, B_IP, 1000, 9, b"x")])
        assert stack.statistics()["mib"]["UdpInDatagrams"] == before + 1
        assert len(stack.ip_queue) == len(stack.l4_queue) == 0
        assert await asyncio.wait_for(sock.recv(10), TIMEOUT) == b"x"
        sock.close()
