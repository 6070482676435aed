"""FaultInjector and FaultConfig: validation, parsing, determinism, each impairment."""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import AsyncIterator, Callable

import pytest

from aiostack.link.base import DeviceClosed
from aiostack.link.fault import FaultConfig, FaultInjector
from aiostack.link.memory import MemoryWire, QueuePort
from aiostack.wire import ethernet, ipv4, udp, virtio
from tests.link.linkhelpers import (
    MAC_A,
    MAC_B,
    TIMEOUT,
    number_of,
    numbered,
    recv_all,
    udp_frame,
)


def within(count: int, n: int, p: float, sigmas: float = 5.0) -> bool:
    """``count`` is a plausible Binomial(n, p) outcome."""
    sd = math.sqrt(n * p * (1 - p))
    return abs(count - n * p) <= sigmas * sd


@pytest.fixture
async def wire() -> AsyncIterator[tuple[QueuePort, QueuePort]]:
    a, b = MemoryWire.pair(queue_len=100_000)
    yield a, b
    await a.aclose()
    await b.aclose()


# ---------------------------------------------------------------- FaultConfig


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("loss", 1.5),
        ("loss", -0.01),
        ("duplicate", 2),
        ("reorder", float("nan")),
        ("corrupt", "1%"),
        ("delay", -1.0),
        ("jitter", float("inf")),
        ("rate", -5),
        ("limit", 0),
        ("limit", 2.5),
        ("seed", "x"),
        ("loss", True),
    ],
)
def test_bad_values_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"^{field}:"):
        FaultConfig(**{field: value})  # type: ignore[arg-type]
    config = FaultConfig()
    with pytest.raises(ValueError, match=rf"^{field}:"):
        setattr(config, field, value)
    assert config == FaultConfig()  # a rejected assignment changes nothing


def test_defaults_are_inactive() -> None:
    config = FaultConfig()
    assert not config.active and not config.schedules
    assert FaultConfig(rate=1000).schedules and FaultConfig(loss=0.1).active


def test_parse_the_cli_form() -> None:
    config = FaultConfig.parse(
        "loss=1%,dup=1%,reorder=5%,corrupt=0.5%,delay=20ms~5ms,rate=10mbit,seed=42"
    )
    assert config.loss == pytest.approx(0.01)
    assert config.duplicate == pytest.approx(0.01)
    assert config.reorder == pytest.approx(0.05)
    assert config.corrupt == pytest.approx(0.005)
    assert config.delay == pytest.approx(0.020)
    assert config.jitter == pytest.approx(0.005)
    assert config.rate == pytest.approx(1.25e6)
    assert config.seed == 42


@pytest.mark.parametrize(
    ("text", "field", "value"),
    [
        ("loss=0.25", "loss", 0.25),
        ("duplicate=10%", "duplicate", 0.1),
        ("delay=1.5s", "delay", 1.5),
        ("delay=250us", "delay", 250e-6),
        ("delay=0.1", "delay", 0.1),
        ("jitter=3ms", "jitter", 0.003),
        ("rate=1kbps", "rate", 1000.0),
        ("rate=8kbit", "rate", 1000.0),
        ("rate=1gbit", "rate", 125e6),
        ("rate=2MB/s", "rate", 2e6),
        ("rate=500", "rate", 500.0),
        ("limit=10", "limit", 10),
        (" loss = 2% , ", "loss", 0.02),
        ("", "loss", 0.0),
    ],
)
def test_parse_units(text: str, field: str, value: float) -> None:
    assert getattr(FaultConfig.parse(text), field) == pytest.approx(value)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("bogus=1", "bogus"),
        ("loss=5x", "loss"),
        ("loss=200%", "loss"),
        ("delay=5parsecs", "delay"),
        ("delay=5ms~fast", "jitter"),
        ("rate=3furlongs", "rate"),
        ("rate=-1mbit", "rate"),
        ("limit=many", "limit"),
        ("seed=0.5", "seed"),
        ("loss", "loss"),
    ],
)
def test_parse_errors_name_the_item(text: str, field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field}:"):
        FaultConfig.parse(text)


def test_copy_is_independent() -> None:
    config = FaultConfig(loss=0.5)
    clone = config.copy()
    clone.loss = 0.1
    assert config.loss == 0.5 and clone == FaultConfig(loss=0.1)


# ---------------------------------------------------------------- injector basics


async def test_no_faults_passes_frames_through(wire: tuple[QueuePort, QueuePort]) -> None:
    a, b = wire
    dev = FaultInjector(a, seed=1)
    async with dev:
        frames = [numbered(i) for i in range(50)]
        dev.send_batch(frames)
        assert await recv_all(b, 50) == frames
        assert dev.stats is a.stats and a.stats.tx_frames == 50
        assert dev.tx_stats.dropped == 0 and dev.rx_stats.dropped == 0


async def test_seed_choice() -> None:
    a, b = MemoryWire.pair()
    assert FaultInjector(a, seed=9).seed == 9
    assert FaultInjector(a, FaultConfig.parse("seed=5,loss=10%")).seed == 5
    assert FaultInjector(a, tx=FaultConfig(seed=6)).seed == 6
    assert isinstance(FaultInjector(a).seed, int)
    assert FaultInjector(b, FaultConfig(seed=5), seed=7).seed == 7


async def run_through(seed: int, config: FaultConfig, count: int) -> tuple[list[bytes], object]:
    """Send ``count`` numbered frames through a tx injector; return what arrived and the stats."""
    a, b = MemoryWire.pair(queue_len=100_000)
    dev = FaultInjector(a, tx=config, seed=seed)
    async with dev, b:
        dev.send_batch([numbered(i) for i in range(count)])
        stats = dev.tx_stats
        expected = count - stats.dropped + stats.duplicated
        got = await recv_all(b, expected)
        return got, stats


async def test_same_seed_same_faults() -> None:
    config = FaultConfig(loss=0.1, duplicate=0.1, reorder=0.1, corrupt=0.1)
    first, stats1 = await run_through(1234, config.copy(), 2000)
    second, stats2 = await run_through(1234, config.copy(), 2000)
    other, _ = await run_through(4321, config.copy(), 2000)
    assert first == second and stats1 == stats2
    assert first != other


# ---------------------------------------------------------------- each impairment


async def test_loss_statistics() -> None:
    got, stats = await run_through(1, FaultConfig(loss=0.2), 5000)
    assert within(stats.dropped, 5000, 0.2)  # type: ignore[attr-defined]
    assert len(got) == 5000 - stats.dropped  # type: ignore[attr-defined]
    numbers = [number_of(f) for f in got]
    assert numbers == sorted(numbers)


async def test_duplicate_statistics_and_adjacency() -> None:
    got, stats = await run_through(2, FaultConfig(duplicate=0.1), 5000)
    assert within(stats.duplicated, 5000, 0.1)  # type: ignore[attr-defined]
    numbers = [number_of(f) for f in got]
    assert len(numbers) == 5000 + stats.duplicated  # type: ignore[attr-defined]
    assert sorted(set(numbers)) == list(range(5000))
    doubled = sum(1 for x, y in itertools.pairwise(numbers) if x == y)
    assert doubled == stats.duplicated  # type: ignore[attr-defined]


async def test_corruption_flips_exactly_one_bit() -> None:
    got, stats = await run_through(3, FaultConfig(corrupt=0.1), 5000)
    assert within(stats.corrupted, 5000, 0.1)  # type: ignore[attr-defined]
    damaged = 0
    for i, data in enumerate(got):
        original = numbered(i)
        diff = int.from_bytes(data, "big") ^ int.from_bytes(original, "big")
        if diff:
            damaged += 1
            assert diff.bit_count() == 1
    assert damaged == stats.corrupted  # type: ignore[attr-defined]


async def test_reorder_swaps_neighbours() -> None:
    got, stats = await run_through(4, FaultConfig(reorder=0.1), 3000)
    numbers = [number_of(f) for f in got]
    assert sorted(numbers) == list(range(3000))
    descents = sum(1 for x, y in itertools.pairwise(numbers) if x > y)
    assert descents == stats.reordered  # type: ignore[attr-defined]
    # A held frame swaps with its successor only, so it is never more than one place late.
    assert all(abs(n - i) <= 1 for i, n in enumerate(numbers))
    assert within(stats.reordered, 3000, 0.1 * 0.9, sigmas=6)  # type: ignore[attr-defined]


async def test_last_held_frame_is_released_by_its_timer(
    wire: tuple[QueuePort, QueuePort],
) -> None:
    a, b = wire
    dev = FaultInjector(a, tx=FaultConfig(reorder=1.0), seed=5)
    async with dev:
        dev.send_batch([numbered(0)])
        assert b._queue == type(b._queue)()  # held back, not yet sent
        got = await recv_all(b, 1)
        assert [number_of(f) for f in got] == [0]
        assert dev.tx_stats.reordered == 0  # nothing overtook it


async def test_delay_holds_frames_on_the_loop_clock(wire: tuple[QueuePort, QueuePort]) -> None:
    a, b = wire
    loop = asyncio.get_running_loop()
    dev = FaultInjector(a, tx=FaultConfig(delay=0.05), seed=6)
    async with dev:
        start = loop.time()
        dev.send_batch([numbered(0), numbered(1)])
        got = await recv_all(b, 2)
        assert loop.time() - start >= 0.05 - 1e-3
        assert [number_of(f) for f in got] == [0, 1]
        assert dev.tx_stats.delayed == 2


async def test_jitter_never_reorders(wire: tuple[QueuePort, QueuePort]) -> None:
    a, b = wire
    dev = FaultInjector(a, tx=FaultConfig.parse("delay=5ms~5ms"), seed=7)
    async with dev:
        for start in range(0, 200, 20):
            dev.send_batch([numbered(i) for i in range(start, start + 20)])
        got = await recv_all(b, 200)
        assert [number_of(f) for f in got] == list(range(200))


async def test_rate_limit_paces_frames(wire: tuple[QueuePort, QueuePort]) -> None:
    a, b = wire
    loop = asyncio.get_running_loop()
    dev = FaultInjector(a, tx=FaultConfig(rate=200_000), seed=8)
    async with dev:
        start = loop.time()
        dev.send_batch([numbered(i, size=1000) for i in range(40)])  # 40 kB at 200 kB/s
        got = await recv_all(b, 40)
        elapsed = loop.time() - start
        assert elapsed >= 0.2 - 1e-3
        assert [number_of(f) for f in got] == list(range(40))
        assert dev.tx_stats.delayed == 40


async def test_limit_drops_what_cannot_wait(wire: tuple[QueuePort, QueuePort]) -> None:
    a, b = wire
    dev = FaultInjector(a, tx=FaultConfig(delay=30.0, limit=5), seed=9)
    async with dev:
        dev.send_batch([numbered(i) for i in range(8)])
        assert dev.tx_stats.overlimit == 3 and dev.tx_stats.delayed == 5
        assert len(b._queue) == 0
    # Closing discarded the waiting frames and cancelled the timer.
    assert len(b._queue) == 0


async def test_runtime_changes_apply_to_new_frames(wire: tuple[QueuePort, QueuePort]) -> None:
    a, b = wire
    dev = FaultInjector(a, tx=FaultConfig(loss=1.0), seed=10)
    async with dev:
        dev.send_batch([numbered(i) for i in range(10)])
        assert dev.tx_stats.dropped == 10 and len(b._queue) == 0
        dev.tx.loss = 0.0
        dev.send_batch([numbered(i) for i in range(10, 20)])
        assert [number_of(f) for f in await recv_all(b, 10)] == list(range(10, 20))
        dev.tx = FaultConfig(duplicate=1.0)
        dev.send_batch([numbered(20)])
        assert [number_of(f) for f in await recv_all(b, 2)] == [20, 20]
        with pytest.raises(ValueError, match=r"^loss:"):
            dev.tx.loss = 7


async def test_frames_queued_before_a_change_stay_in_order(
    wire: tuple[QueuePort, QueuePort],
) -> None:
    a, b = wire
    dev = FaultInjector(a, tx=FaultConfig(delay=0.03), seed=11)
    async with dev:
        dev.send_batch([numbered(0)])
        dev.tx = FaultConfig()  # no delay any more, but frame 0 is still waiting
        dev.send_batch([numbered(1)])
        assert [number_of(f) for f in await recv_all(b, 2)] == [0, 1]


async def until(condition: Callable[[], bool]) -> None:
    """Yield to the loop until ``condition`` holds (the rx pump runs in between)."""

    async def spin() -> None:
        # A counter in another task, with no event to wait on: yield until it moves.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0)

    await asyncio.wait_for(spin(), TIMEOUT)


async def test_receive_direction(wire: tuple[QueuePort, QueuePort]) -> None:
    a, b = wire
    loop = asyncio.get_running_loop()
    dev = FaultInjector(b, rx=FaultConfig(loss=1.0), seed=12)
    async with dev:
        a.send_batch([numbered(i) for i in range(5)])
        await until(lambda: b.stats.rx_frames == 5)
        assert dev.rx_stats.dropped == 5
        dev.rx = FaultConfig(delay=0.02)
        start = loop.time()
        a.send_batch([numbered(100)])
        (got,) = await recv_all(dev, 1)
        assert number_of(got) == 100
        assert loop.time() - start >= 0.02 - 1e-3
        assert dev.rx_stats.delayed == 1
        assert dev.tx_stats == type(dev.tx_stats)()


async def test_rx_loss_statistics(wire: tuple[QueuePort, QueuePort]) -> None:
    a, b = wire
    dev = FaultInjector(b, rx=FaultConfig(loss=0.5), seed=13)
    async with dev:
        a.send_batch([numbered(i) for i in range(2000)])
        got: list[bytes] = []
        while b.stats.rx_frames < 2000:
            got.extend(await asyncio.wait_for(dev.recv_batch(), TIMEOUT))
        dropped = dev.rx_stats.dropped
        if len(got) < 2000 - dropped:
            got.extend(await recv_all(dev, 2000 - dropped - len(got)))
        assert within(dropped, 2000, 0.5)
        assert len(got) == 2000 - dropped
        numbers = [number_of(f) for f in got]
        assert numbers == sorted(numbers)


async def test_one_config_for_both_directions(wire: tuple[QueuePort, QueuePort]) -> None:
    a, _ = wire
    dev = FaultInjector(a, FaultConfig(loss=1.0), seed=14)
    async with dev:
        assert dev.rx is dev.tx
        dev.send_batch([numbered(1)])
        assert dev.tx_stats.dropped == 1


async def test_corrupting_an_offloaded_frame_makes_it_detectable() -> None:
    a, b = MemoryWire.pair()
    a.vnet_hdr = b.vnet_hdr = True
    dev = FaultInjector(a, tx=FaultConfig(corrupt=1.0), seed=15)
    src, dst = "198.18.0.2", "198.18.0.1"
    original = udp_frame(
        dst_mac=MAC_B,
        src_mac=MAC_A,
        src=src,
        dst=dst,
        sport=1,
        dport=2,
        payload=b"payload!" * 8,
        vnet="partial",
    )
    async with dev, b:
        dev.send_batch([original])
        (got,) = await recv_all(b, 1)
    assert got[: virtio.HEADER_LEN] == virtio.NO_OFFLOAD
    completed = bytearray(original[virtio.HEADER_LEN :])
    virtio.complete_checksum(completed, 34, virtio.CSUM_OFFSET_UDP)
    _, l3 = ethernet.parse(completed)
    ip, l4 = ipv4.parse(l3)
    udp.parse(l4, ip.src, ip.dst)  # the completed, undamaged frame checks out
    diff = int.from_bytes(got[virtio.HEADER_LEN :], "big") ^ int.from_bytes(completed, "big")
    assert diff.bit_count() == 1


async def test_close_wakes_receiver_and_rejects_sends(wire: tuple[QueuePort, QueuePort]) -> None:
    _, b = wire
    dev = FaultInjector(b, seed=16)
    await dev.open()
    waiting = asyncio.ensure_future(dev.recv_batch())
    await asyncio.sleep(0)
    await dev.aclose()
    with pytest.raises(DeviceClosed):
        await asyncio.wait_for(waiting, TIMEOUT)
    with pytest.raises(DeviceClosed):
        dev.send_batch([numbered(1)])
    assert b.closed
    await dev.aclose()  # idempotent


async def test_inner_device_closing_reaches_the_reader(wire: tuple[QueuePort, QueuePort]) -> None:
    _, b = wire
    dev = FaultInjector(b, seed=17)
    async with dev:
        waiting = asyncio.ensure_future(dev.recv_batch())
        await asyncio.sleep(0)
        await b.aclose()
        with pytest.raises(DeviceClosed):
            await asyncio.wait_for(waiting, TIMEOUT)


async def test_delayed_tx_after_inner_closed_is_counted(wire: tuple[QueuePort, QueuePort]) -> None:
    a, _ = wire
    dev = FaultInjector(a, tx=FaultConfig(delay=0.01), seed=18)
    async with dev:
        dev.send_batch([numbered(1)])
        await a.aclose()
        done = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.05, done.set_result, None)
        await asyncio.wait_for(done, TIMEOUT)
        assert a.stats.drops == {"no_carrier": 1}
