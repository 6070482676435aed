"""The transmit queue never drops what the stack produced: at its bound the producer transmits.

Receive-side queues drop and count (``test_stack_queues.py``); the queue in
front of the device holds only locally generated frames, already bounded by
socket buffers, so a burst of them (10,000 ``close()`` calls in a row) must
reach the wire without a drop and without waiting for a retransmission.
"""

from __future__ import annotations

import asyncio

from aiostack.core.counters import Counters
from aiostack.link.memory import MemoryWire
from aiostack.socket import AF_INET, SOCK_STREAM
from aiostack.stack.queues import TransmitQueue
from aiostack.stack.stack import Stack
from aiostack.testing.virtual_time import run_virtual
from tests.helpers import A_IP, B_IP, MAC_A, MAC_B, PREFIX, TIMEOUT

PORT = 7300


def test_transmit_queue_hands_the_backlog_to_the_producer_at_its_bound() -> None:
    counters = Counters()
    sent: list[list[int]] = []
    queue: TransmitQueue[int] = TransmitQueue("link_out", counters, sent.append, limit=5)
    queue.put([1, 2])
    queue.put([3, 4])
    assert sent == [] and len(queue) == 4  # under the bound: waits for the transmit task
    queue.put([5, 6, 7])  # would pass the bound: everything goes out now, in order
    assert sent == [[1, 2, 3, 4, 5, 6, 7]]
    assert len(queue) == 0 and queue.direct_flushes == 1
    queue.put(list(range(100)))  # one batch larger than the queue: out whole
    assert sent[-1] == list(range(100))
    queue.put([8])
    assert queue.get_nowait() == [8]
    assert counters.drops == {}  # nothing the stack made is ever a queue drop


async def test_transmit_queue_wakes_its_task_under_the_bound() -> None:
    queue: TransmitQueue[int] = TransmitQueue("link_out", Counters(), lambda _: None, limit=10)
    getter = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.put([1, 2])
    assert await asyncio.wait_for(getter, TIMEOUT) == [1, 2]


def test_ten_thousand_closes_at_once_deliver_every_fin_without_retransmission() -> None:
    # On virtual time: the CPU time the two stacks in this one process spend
    # on 10,000 connections takes no protocol time, so a retransmission here
    # can only mean a FIN was lost, which is the property under test.
    run_virtual(_ten_thousand_closes())


async def _ten_thousand_closes() -> None:
    n = 10_000
    # The wire stands for the kernel's side of a TAP: give it room for the
    # burst, so that what is measured is the stack's own transmit path.
    a_dev, b_dev = MemoryWire.pair(queue_len=4 * n, names=("client", "server"))
    async with (
        Stack(a_dev, address=f"{A_IP}/{PREFIX}", mac=MAC_A, seed=1) as client,
        Stack(b_dev, address=f"{B_IP}/{PREFIX}", mac=MAC_B, seed=2) as server,
    ):
        assert n > server.tx_queue.limit
        listener = server.socket(AF_INET, SOCK_STREAM)
        listener.bind((B_IP, PORT))
        listener.listen(4096)
        accepted = []

        async def accept_all() -> None:
            while len(accepted) < n:
                sock, _ = await listener.accept()
                accepted.append(sock)

        acceptor = asyncio.create_task(accept_all())
        clients = []
        for start in range(0, n, 500):  # waves, as the benchmark's client does
            wave = [client.socket(AF_INET, SOCK_STREAM) for _ in range(min(500, n - start))]
            await asyncio.wait_for(
                asyncio.gather(*(s.connect((B_IP, PORT)) for s in wave)), TIMEOUT
            )
            clients.extend(wave)
        await asyncio.wait_for(acceptor, TIMEOUT)

        for sock in accepted:  # 10,000 FINs queued in one pass of the loop
            sock.close()
        eofs = await asyncio.wait_for(asyncio.gather(*(s.recv(1) for s in clients)), 4 * TIMEOUT)
        assert eofs == [b""] * n  # every FIN arrived
        stats = server.statistics()
        assert "queue.link_out_full" not in stats["drops"]
        assert stats["mib"]["TcpRetransSegs"] == 0  # none waited for its RTO
        assert client.statistics()["device"]["drops"] == {}
        for sock in clients:
            sock.close()
