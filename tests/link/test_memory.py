"""MemoryWire: in-order batched delivery, bounded queues, MTU, closing."""

from __future__ import annotations

import asyncio

import pytest

from aiostack.link.base import DEFAULT_MAX_BATCH, DeviceClosed
from aiostack.link.memory import MemoryWire
from tests.link.linkhelpers import MAC_A, MAC_B, TIMEOUT, frame, number_of, numbered, recv_all


async def test_frames_cross_in_order_as_one_batch() -> None:
    a, b = MemoryWire.pair()
    async with a, b:
        a.send_batch([numbered(i) for i in range(10)])
        batch = await asyncio.wait_for(b.recv_batch(), TIMEOUT)
        assert isinstance(batch, list)
        assert [number_of(f) for f in batch] == list(range(10))
        assert a.stats.tx_frames == 10 and a.stats.tx_bytes == 600
        assert b.stats.rx_frames == 10 and b.stats.rx_bytes == 600
        assert a.stats.drops == {} and b.stats.drops == {}


async def test_both_directions_are_independent() -> None:
    a, b = MemoryWire.pair()
    async with a, b:
        a.send_batch([numbered(1)])
        b.send_batch([numbered(2, src=MAC_B, dst=MAC_A)])
        assert [number_of(f) for f in await asyncio.wait_for(b.recv_batch(), TIMEOUT)] == [1]
        assert [number_of(f) for f in await asyncio.wait_for(a.recv_batch(), TIMEOUT)] == [2]


async def test_recv_waits_until_a_frame_is_sent() -> None:
    a, b = MemoryWire.pair()
    async with a, b:
        waiting = asyncio.ensure_future(b.recv_batch())
        await asyncio.sleep(0)
        assert not waiting.done()
        a.send_batch([numbered(7)])
        assert [number_of(f) for f in await asyncio.wait_for(waiting, TIMEOUT)] == [7]


async def test_batches_are_capped_at_max_batch() -> None:
    a, b = MemoryWire.pair(max_batch=16)
    async with a, b:
        a.send_batch([numbered(i) for i in range(40)])
        sizes = [len(await asyncio.wait_for(b.recv_batch(), TIMEOUT)) for _ in range(3)]
        assert sizes == [16, 16, 8]
    assert MemoryWire.pair()[0].max_batch == DEFAULT_MAX_BATCH


async def test_full_receive_queue_drops_and_counts() -> None:
    a, b = MemoryWire.pair(queue_len=10)
    async with a, b:
        a.send_batch([numbered(i) for i in range(8)])
        a.send_batch([numbered(i) for i in range(8, 15)])
        got = await recv_all(b, 10)
        assert [number_of(f) for f in got] == list(range(10))
        assert b.stats.drops == {"rx_queue_full": 5}
        # The wire carried them: the sender counts them as sent.
        assert a.stats.tx_frames == 15
        # Space frees up as the reader drains.
        a.send_batch([numbered(99)])
        assert [number_of(f) for f in await asyncio.wait_for(b.recv_batch(), TIMEOUT)] == [99]


async def test_mtu_is_enforced_on_send() -> None:
    a, b = MemoryWire.pair(mtu=1500)
    async with a, b:
        ok = frame(MAC_B, MAC_A, bytes(1500))
        too_big = frame(MAC_B, MAC_A, bytes(1501))
        tagged = MAC_B + MAC_A + b"\x81\x00\x00\x05\x08\x00" + bytes(1500)
        tagged_too_big = tagged + b"x"
        runt = bytes(13)
        a.send_batch([ok, too_big, tagged, tagged_too_big, runt])
        got = await asyncio.wait_for(b.recv_batch(), TIMEOUT)
        assert got == [ok, tagged]
        assert a.stats.drops == {"oversize": 2, "runt": 1}
        assert a.stats.tx_frames == 2


async def test_bytes_like_frames_arrive_as_bytes() -> None:
    a, b = MemoryWire.pair()
    async with a, b:
        data = numbered(3)
        a.send_batch([bytearray(data), memoryview(data)])
        got = await asyncio.wait_for(b.recv_batch(), TIMEOUT)
        assert got == [data, data]
        assert all(type(f) is bytes for f in got)


async def test_close_wakes_a_waiting_receiver_with_device_closed() -> None:
    a, b = MemoryWire.pair()
    async with a:
        waiting = asyncio.ensure_future(b.recv_batch())
        await asyncio.sleep(0)
        await b.aclose()
        with pytest.raises(DeviceClosed):
            await asyncio.wait_for(waiting, TIMEOUT)
        await b.aclose()  # idempotent
        with pytest.raises(DeviceClosed):
            await b.recv_batch()
        with pytest.raises(DeviceClosed):
            b.send_batch([numbered(1)])
        # The peer is gone: what a sends is lost and counted.
        a.send_batch([numbered(1), numbered(2)])
        assert a.stats.drops == {"no_carrier": 2}


async def test_a_second_concurrent_reader_is_an_error() -> None:
    a, b = MemoryWire.pair()
    async with a, b:
        first = asyncio.ensure_future(b.recv_batch())
        await asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="already being awaited"):
            await b.recv_batch()
        a.send_batch([numbered(1)])
        assert len(await asyncio.wait_for(first, TIMEOUT)) == 1


async def test_cancelled_receive_leaves_the_device_usable() -> None:
    a, b = MemoryWire.pair()
    async with a, b:
        waiting = asyncio.ensure_future(b.recv_batch())
        await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        a.send_batch([numbered(5)])
        assert [number_of(f) for f in await asyncio.wait_for(b.recv_batch(), TIMEOUT)] == [5]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"mtu": 67}, "mtu"),
        ({"mtu": 65536}, "mtu"),
        ({"queue_len": 0}, "queue_len"),
        ({"max_batch": 0}, "max_batch"),
    ],
)
def test_bad_settings_name_the_argument(kwargs: dict[str, int], field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field}:"):
        MemoryWire.pair(**kwargs)  # type: ignore[arg-type]


def test_names_identify_the_ends() -> None:
    a, b = MemoryWire.pair(names=("left", "right"))
    assert (a.name, b.name) == ("left", "right")
