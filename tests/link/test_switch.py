"""VirtualSwitch: learning, flooding, filtering, ageing, per-port queues."""

from __future__ import annotations

import asyncio

import pytest

from aiostack.link.base import DeviceClosed
from aiostack.link.memory import QueuePort, VirtualSwitch
from aiostack.wire.ethernet import BROADCAST
from tests.link.linkhelpers import (
    MAC_A,
    MAC_B,
    MAC_C,
    TIMEOUT,
    frame,
    number_of,
    numbered,
    recv_all,
)

MULTICAST = bytes.fromhex("01005e000001")


def pending(port: QueuePort) -> int:
    """Frames queued for ``port`` (read without waiting)."""
    return len(port._queue)


async def test_broadcast_floods_every_other_port() -> None:
    switch = VirtualSwitch()
    a, b, c = switch.port("a"), switch.port("b"), switch.port("c")
    a.send_batch([frame(BROADCAST, MAC_A, b"hello")])
    assert (await asyncio.wait_for(b.recv_batch(), TIMEOUT))[0][6:12] == MAC_A
    assert (await asyncio.wait_for(c.recv_batch(), TIMEOUT))[0][6:12] == MAC_A
    assert pending(a) == 0
    assert switch.stats.flooded == 1
    switch.close()


async def test_learned_unicast_goes_only_to_its_port() -> None:
    switch = VirtualSwitch()
    a, b, c = switch.port("a"), switch.port("b"), switch.port("c")
    # Unknown destination: flooded; the source is learned on the way.
    a.send_batch([frame(MAC_B, MAC_A, b"1")])
    assert pending(b) == 1 and pending(c) == 1
    assert switch.fdb() == {MAC_A: "a"}
    await b.recv_batch()
    await c.recv_batch()
    # b answers: a is known, so only a gets it; now b is known too.
    b.send_batch([frame(MAC_A, MAC_B, b"2")])
    assert pending(a) == 1 and pending(c) == 0
    a.send_batch([frame(MAC_B, MAC_A, b"3")])
    assert pending(b) == 1 and pending(c) == 0
    assert switch.fdb() == {MAC_A: "a", MAC_B: "b"}
    assert switch.stats.forwarded == 2 and switch.stats.learned == 2
    switch.close()


async def test_multicast_is_flooded_even_when_learned_as_source_is_impossible() -> None:
    switch = VirtualSwitch()
    a, b, c = switch.port("a"), switch.port("b"), switch.port("c")
    # A multicast source address is never learned.
    a.send_batch([frame(MULTICAST, MULTICAST, b"x")])
    assert switch.fdb() == {}
    assert pending(b) == 1 and pending(c) == 1
    switch.close()


async def test_frame_for_a_mac_on_the_ingress_port_is_filtered() -> None:
    switch = VirtualSwitch()
    a, b = switch.port("a"), switch.port("b")
    a.send_batch([frame(BROADCAST, MAC_A), frame(BROADCAST, MAC_C)])  # both behind a
    await b.recv_batch()
    a.send_batch([frame(MAC_C, MAC_A)])
    assert pending(a) == 0 and pending(b) == 0
    assert switch.stats.filtered == 1
    switch.close()


async def test_station_moving_to_another_port_is_relearned() -> None:
    switch = VirtualSwitch()
    a, b, c = switch.port("a"), switch.port("b"), switch.port("c")
    a.send_batch([frame(BROADCAST, MAC_A)])
    assert switch.fdb()[MAC_A] == "a"
    b.send_batch([frame(BROADCAST, MAC_A)])
    assert switch.fdb()[MAC_A] == "b"
    assert switch.stats.moved == 1
    await recv_all(c, 2)
    switch.close()


async def test_entries_age_out() -> None:
    switch = VirtualSwitch(ageing_time=30.0)
    a, b, c = switch.port("a"), switch.port("b"), switch.port("c")
    b.send_batch([frame(BROADCAST, MAC_B)])
    await a.recv_batch()
    await c.recv_batch()
    # Pretend the entry was last refreshed long ago (loop time).
    port, seen = switch._fdb[MAC_B]
    switch._fdb[MAC_B] = (port, seen - 31.0)
    a.send_batch([frame(MAC_B, MAC_A)])
    assert pending(b) == 1 and pending(c) == 1  # flooded again
    assert MAC_B not in switch.fdb()
    switch.close()


async def test_closed_port_is_left_out_and_forgotten() -> None:
    switch = VirtualSwitch()
    a, b, c = switch.port("a"), switch.port("b"), switch.port("c")
    b.send_batch([frame(BROADCAST, MAC_B)])
    await a.recv_batch()
    await c.recv_batch()
    await b.aclose()
    assert "b" not in switch.ports
    assert MAC_B not in switch.fdb()
    a.send_batch([frame(MAC_B, MAC_A)])  # b's MAC now unknown: flooded to c only
    assert pending(c) == 1
    with pytest.raises(DeviceClosed):
        b.send_batch([frame(BROADCAST, MAC_B)])
    # The name can be reused for a fresh port.
    b2 = switch.port("b")
    assert b2 is not b and not b2.closed
    switch.close()


async def test_port_name_returns_the_same_open_port() -> None:
    switch = VirtualSwitch()
    assert switch.port("x") is switch.port("x")
    assert set(switch.ports) == {"x"}
    switch.close()


async def test_batches_are_forwarded_per_egress_port_in_order() -> None:
    switch = VirtualSwitch(max_batch=64)
    a, b, c = switch.port("a"), switch.port("b"), switch.port("c")
    b.send_batch([frame(BROADCAST, MAC_B)])
    c.send_batch([frame(BROADCAST, MAC_C)])
    await recv_all(a, 2)
    await b.recv_batch()
    await c.recv_batch()
    a.send_batch([numbered(i, dst=MAC_B if i % 2 else MAC_C) for i in range(20)])
    to_b = await asyncio.wait_for(b.recv_batch(), TIMEOUT)
    to_c = await asyncio.wait_for(c.recv_batch(), TIMEOUT)
    assert [number_of(f) for f in to_b] == list(range(1, 20, 2))
    assert [number_of(f) for f in to_c] == list(range(0, 20, 2))
    switch.close()


async def test_each_port_queue_is_bounded() -> None:
    switch = VirtualSwitch(queue_len=5)
    a, b = switch.port("a"), switch.port("b")
    a.send_batch([numbered(i, dst=BROADCAST) for i in range(8)])
    got = await asyncio.wait_for(b.recv_batch(), TIMEOUT)
    assert [number_of(f) for f in got] == [0, 1, 2, 3, 4]
    assert b.stats.drops == {"rx_queue_full": 3}
    switch.close()


async def test_mtu_applies_to_ports() -> None:
    switch = VirtualSwitch(mtu=576)
    a, b = switch.port("a"), switch.port("b")
    a.send_batch([frame(BROADCAST, MAC_A, bytes(577)), frame(BROADCAST, MAC_A, bytes(576))])
    assert len(await asyncio.wait_for(b.recv_batch(), TIMEOUT)) == 1
    assert a.stats.drops == {"oversize": 1}
    switch.close()


async def test_close_wakes_waiting_readers() -> None:
    switch = VirtualSwitch()
    a = switch.port("a")
    waiting = asyncio.ensure_future(a.recv_batch())
    await asyncio.sleep(0)
    switch.close()
    with pytest.raises(DeviceClosed):
        await asyncio.wait_for(waiting, TIMEOUT)


def test_bad_ageing_time_names_the_argument() -> None:
    with pytest.raises(ValueError, match=r"^ageing_time:"):
        VirtualSwitch(ageing_time=0)
