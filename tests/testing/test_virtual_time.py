"""VirtualTimeLoop: exact, ordered, deterministic virtual time that still does real I/O.

Every test here is synchronous and runs its scenario with ``run_virtual`` (or
drives a ``VirtualTimeLoop`` by hand), so it runs on the virtual-time loop
whatever loops the suite's conftest parametrises async tests over. Loop
errors (anything sent to the exception handler) fail the test, as in
conftest, through :func:`run`.
"""

from __future__ import annotations

import asyncio
import errno
import selectors
import socket
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest

from aiostack import MemoryWire, Settings, Stack
from aiostack.core.neighbor import NudState
from aiostack.testing.virtual_time import (
    DEFAULT_EPOCH,
    VirtualTimeLoop,
    VirtualTimeRunaway,
    new_virtual_time_loop,
    run_virtual,
)
from aiostack.wire import ipv4

T = TypeVar("T")

A_IP = "198.18.0.1"
B_IP = "198.18.0.2"
ABSENT_IP = "198.18.0.77"
MAC_A = "02:00:00:00:00:01"
MAC_B = "02:00:00:00:00:02"

Trace = list[tuple[float, str]]


def run(main: Coroutine[Any, Any, T], **options: Any) -> T:
    """``run_virtual`` in debug mode; anything reported to the loop's handler fails the test."""
    errors: list[str] = []

    async def guarded() -> T:
        def record(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            errors.append(f"{context.get('message')}: {context.get('exception')!r}")

        asyncio.get_running_loop().set_exception_handler(record)
        return await main

    result = run_virtual(guarded(), debug=True, **options)
    assert not errors, errors
    return result


def vloop() -> VirtualTimeLoop:
    loop = asyncio.get_running_loop()
    assert isinstance(loop, VirtualTimeLoop)
    return loop


# ---------------------------------------------------------------- the clock


def test_an_hour_of_sleep_takes_no_wall_time() -> None:
    async def main() -> tuple[float, int]:
        loop = vloop()
        start = loop.time()
        await asyncio.sleep(3600)
        return loop.time() - start, loop.jumps

    wall = time.monotonic()
    elapsed, jumps = run(main())
    assert elapsed == 3600.0
    assert jumps == 1
    assert time.monotonic() - wall < 0.5


def test_clock_starts_at_a_nonzero_epoch() -> None:
    async def main() -> tuple[float, float, float]:
        loop = vloop()
        return loop.time(), loop.now, loop.virtual_time_elapsed

    assert run(main()) == (DEFAULT_EPOCH, DEFAULT_EPOCH, 0.0)
    assert DEFAULT_EPOCH > 0
    assert run(main(), epoch=42.0) == (42.0, 42.0, 0.0)


def test_bad_settings_are_refused() -> None:
    for options in (
        {"epoch": float("nan")},
        {"autojump_threshold": -1.0},
        {"max_jumps": 0},
        {"max_advance": 0.0},
    ):
        with pytest.raises(ValueError):
            VirtualTimeLoop(**options)


def test_statistics() -> None:
    async def main() -> VirtualTimeLoop:
        await asyncio.sleep(10)
        await asyncio.sleep(20)
        return vloop()

    loop = run(main())
    assert loop.virtual_time_elapsed == 30.0
    assert loop.jumps == 2
    assert 0 < loop.real_time_elapsed < 1.0


# ---------------------------------------------------------------- timers


def test_timers_fire_at_their_exact_deadlines() -> None:
    # The clock lands on each deadline exactly: loop.time() == start + delay,
    # the very float call_later computed (start + 0.001 itself rounds).
    async def main() -> tuple[float, Trace]:
        loop = vloop()
        start = loop.time()
        fired: Trace = []
        done = loop.create_future()

        def record(name: str) -> None:
            fired.append((loop.time(), name))
            if name == "last":
                done.set_result(None)

        loop.call_later(0.125, record, "a")
        loop.call_at(start + 2.5, record, "b")
        loop.call_later(0.001, record, "c")
        loop.call_at(start + 7.0, record, "last")
        await done
        return start, fired

    start, fired = run(main())
    assert fired == [
        (start + 0.001, "c"),
        (start + 0.125, "a"),
        (start + 2.5, "b"),
        (start + 7.0, "last"),
    ]


def _timer_plan() -> list[tuple[int, str]]:
    """(deadline slot, label): 120 timers over 7 slots, many sharing a deadline."""
    return [((i * 5) % 7, f"t{i}") for i in range(120)]


def _fire_plan(loop: asyncio.AbstractEventLoop, spacing: float, lead: float) -> list[str]:
    order: list[str] = []
    plan = _timer_plan()

    async def main() -> None:
        base = loop.time() + lead
        done = loop.create_future()
        remaining = [len(plan)]

        def fire(label: str) -> None:
            order.append(label)
            remaining[0] -= 1
            if not remaining[0]:
                done.set_result(None)

        for slot, label in plan:
            loop.call_at(base + slot * spacing, fire, label)
        await done

    loop.run_until_complete(main())
    return order


def test_timer_order_is_exactly_the_standard_loops() -> None:
    # Equal deadlines fire in the order of asyncio's timer heap, which is not
    # FIFO; the virtual loop must reproduce it, not an order of its own.
    real = asyncio.SelectorEventLoop()
    virtual = new_virtual_time_loop()
    try:
        expected = _fire_plan(real, spacing=0.003, lead=0.05)
        got = _fire_plan(virtual, spacing=3.0, lead=0.0)
    finally:
        real.close()
        virtual.close()
    assert got == expected
    slots = dict((label, slot) for slot, label in _timer_plan())
    assert [slots[label] for label in got] == sorted(slots[label] for label in got)


def test_timeout_and_wait_for_expire_at_exact_virtual_times() -> None:
    async def main() -> Trace:
        loop = vloop()
        start = loop.time()
        trace: Trace = []
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(2.5):
                await asyncio.sleep(10)
        trace.append((loop.time() - start, "timeout"))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.sleep(10), 1.25)
        trace.append((loop.time() - start, "wait_for"))
        with pytest.raises(TimeoutError):
            async with asyncio.timeout_at(start + 10.0):
                await asyncio.Event().wait()
        trace.append((loop.time() - start, "timeout_at"))
        # The awaited work wins when it finishes first, at its own time.
        assert await asyncio.wait_for(asyncio.sleep(1, result="done"), 2) == "done"
        trace.append((loop.time() - start, "in time"))
        return trace

    assert run(main()) == [
        (2.5, "timeout"),
        (3.75, "wait_for"),
        (10.0, "timeout_at"),
        (11.0, "in time"),
    ]


def test_cancelled_sleeps_and_timers_are_not_waited_for() -> None:
    async def main() -> tuple[Trace, float, int]:
        loop = vloop()
        start = loop.time()
        trace: Trace = []

        async def sleeper() -> None:
            try:
                await asyncio.sleep(100)
            except asyncio.CancelledError:
                trace.append((loop.time() - start, "sleeper cancelled"))
                raise

        task = asyncio.create_task(sleeper())
        handle = loop.call_later(50, trace.append, (-1.0, "cancelled timer ran"))
        await asyncio.sleep(5)
        task.cancel()
        handle.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return trace, loop.time() - start, loop.jumps

    trace, end, jumps = run(main())
    assert trace == [(5.0, "sleeper cancelled")]
    # Nothing was left to wait for: the clock never went to 50 or 100.
    assert end == 5.0
    assert jumps == 1


def test_ready_work_runs_before_time_advances() -> None:
    async def main() -> Trace:
        loop = vloop()
        start = loop.time()
        trace: Trace = []
        finished = loop.create_future()

        def chain(n: int) -> None:
            trace.append((loop.time() - start, "soon"))
            if n:
                loop.call_soon(chain, n - 1)

        async def busy() -> None:
            for _ in range(300):
                trace.append((loop.time() - start, "busy"))
                await asyncio.sleep(0)

        loop.call_later(0.001, lambda: trace.append((loop.time() - start, "timer")))
        loop.call_later(0.002, finished.set_result, None)
        loop.call_soon(chain, 500)
        await busy()
        await finished
        return trace

    trace = run(main())
    assert trace[-1] == ((DEFAULT_EPOCH + 0.001) - DEFAULT_EPOCH, "timer")
    assert {t for t, name in trace[:-1]} == {0.0}
    assert sum(1 for _, name in trace if name == "soon") == 501
    assert sum(1 for _, name in trace if name == "busy") == 300


# ---------------------------------------------------------------- by hand


def test_advance_steps_a_stopped_loop_through_its_timers() -> None:
    loop = new_virtual_time_loop()
    try:
        start = loop.time()
        fired: Trace = []

        def record(delay: float) -> None:
            fired.append((loop.time() - start, f"{delay}"))

        for delay in (1.0, 2.0, 2.0, 5.0):
            loop.call_later(delay, record, delay)
        loop.advance(2.0)
        assert fired == [(1.0, "1.0"), (2.0, "2.0"), (2.0, "2.0")]
        assert loop.time() - start == 2.0
        loop.advance(2.5)
        assert len(fired) == 3
        assert loop.time() - start == 4.5
        loop.advance(0.5)
        assert fired[-1] == (5.0, "5.0")
        loop.advance(0)  # nothing due: returns at once, clock unchanged
        assert loop.time() - start == 5.0
        with pytest.raises(ValueError):
            loop.advance(-1.0)
        # Tasks step along with the clock.
        task = loop.create_task(asyncio.sleep(10, result="slept"))
        loop.advance(9.0)
        assert not task.done()
        loop.advance(1.0)
        assert task.result() == "slept"
    finally:
        loop.close()


def test_advance_inside_the_loop_is_a_stall() -> None:
    async def main() -> Trace:
        loop = vloop()
        start = loop.time()
        fired: Trace = []
        loop.call_later(1, lambda: fired.append((loop.time() - start, "1 s timer")))
        loop.call_later(3, lambda: fired.append((loop.time() - start, "3 s timer")))
        loop.advance(10)
        fired.append((loop.time() - start, "advanced"))
        await asyncio.sleep(0)  # the timers run in the next iteration, after this task
        await asyncio.sleep(0)
        fired.append((loop.time() - start, "after"))

        def from_thread() -> None:
            with pytest.raises(RuntimeError):
                loop.advance(1)

        thread = threading.Thread(target=from_thread)
        thread.start()
        thread.join()
        return fired

    # Both timers ran late, in deadline order, with the clock where advance() left it.
    assert run(main()) == [
        (10.0, "advanced"),
        (10.0, "1 s timer"),
        (10.0, "3 s timer"),
        (10.0, "after"),
    ]


# ---------------------------------------------------------------- runaway


async def _never_finishes() -> None:
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(1)
            ticks += 1

    ticker = asyncio.create_task(tick(), name="ticker")
    try:
        await asyncio.Event().wait()
    finally:
        ticker.cancel()


def test_runaway_guard_counts_jumps() -> None:
    wall = time.monotonic()
    with pytest.raises(VirtualTimeRunaway) as info:
        run(_never_finishes(), max_jumps=500)
    assert time.monotonic() - wall < 2.0
    message = str(info.value)
    assert "max_jumps=500" in message
    assert "ticker" in message


def test_runaway_guard_caps_virtual_time() -> None:
    with pytest.raises(VirtualTimeRunaway, match="max_advance=100"):
        run(_never_finishes(), max_advance=100.0)


def test_a_long_run_within_the_limits_is_fine() -> None:
    async def main() -> float:
        for _ in range(100):
            await asyncio.sleep(86_400)
        return vloop().virtual_time_elapsed

    # 100 days: past the default 30-day guard, fine once it is lifted.
    assert run(main(), max_advance=None) == 100 * 86_400.0


# ---------------------------------------------------------------- real I/O
#
# The rule: the clock jumps only when every task is idle and no I/O is
# ready. Ready I/O always wins; I/O that the outside world has not produced
# yet does not stop a jump unless something holds the clock (an executor
# job, hold_clock(), or autojump_threshold).


async def _socketpair() -> tuple[socket.socket, asyncio.StreamReader, asyncio.StreamWriter]:
    ours, theirs = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=ours)
    return theirs, reader, writer


def _write_later(sock: socket.socket, delay: float, data: bytes) -> threading.Thread:
    def body() -> None:
        time.sleep(delay)
        sock.sendall(data)

    thread = threading.Thread(target=body)
    thread.start()
    return thread


async def _close(theirs: socket.socket, writer: asyncio.StreamWriter) -> None:
    writer.close()
    await writer.wait_closed()
    theirs.close()


def test_ready_io_is_read_before_the_clock_jumps() -> None:
    async def main() -> tuple[bytes, Trace, int]:
        loop = vloop()
        start = loop.time()
        trace: Trace = []
        theirs, reader, writer = await _socketpair()
        loop.call_later(1, lambda: trace.append((loop.time() - start, "timer")))
        _write_later(theirs, 0, b"ping").join()  # data is waiting before the loop idles
        data = await asyncio.wait_for(reader.read(100), 5)
        trace.append((loop.time() - start, "read"))
        await asyncio.sleep(2)
        await _close(theirs, writer)
        return data, trace, loop.jumps

    data, trace, jumps = run(main())
    assert data == b"ping"
    assert trace == [(0.0, "read"), (1.0, "timer")]
    assert jumps == 2


def test_without_a_hold_the_clock_does_not_wait_for_io_to_come() -> None:
    async def main() -> tuple[float, float, bytes, float]:
        loop = vloop()
        start = loop.time()
        theirs, reader, writer = await _socketpair()
        thread = _write_later(theirs, 0.3, b"late")
        wall = time.monotonic()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.read(100), 5)
        timed_out_at, wall_spent = loop.time() - start, time.monotonic() - wall
        # The data still arrives; waiting for it under a hold costs no virtual time.
        with loop.hold_clock():
            data = await reader.read(100)
        thread.join()
        await _close(theirs, writer)
        return timed_out_at, wall_spent, data, loop.time() - start

    timed_out_at, wall_spent, data, end = run(main())
    assert timed_out_at == 5.0
    assert wall_spent < 0.25
    assert data == b"late"
    assert end == 5.0


def test_hold_clock_waits_for_io_from_a_thread() -> None:
    async def main() -> tuple[bytes, float, bool]:
        loop = vloop()
        start = loop.time()
        fired = asyncio.Event()
        loop.call_later(1, fired.set)
        theirs, reader, writer = await _socketpair()
        thread = _write_later(theirs, 0.05, b"from a thread")
        with loop.hold_clock():
            async with asyncio.timeout(5):
                data = await reader.read(100)
        elapsed, timer_fired = loop.time() - start, fired.is_set()
        thread.join()
        await _close(theirs, writer)
        return data, elapsed, timer_fired

    data, elapsed, timer_fired = run(main())
    assert data == b"from a thread"
    assert elapsed == 0.0
    assert not timer_fired


def test_executor_work_holds_the_clock() -> None:
    async def main() -> tuple[bytes, float]:
        loop = vloop()
        start = loop.time()
        theirs, reader, writer = await _socketpair()

        # to_thread runs through run_in_executor: the clock waits for it.
        def slow_write() -> None:
            time.sleep(0.05)
            theirs.sendall(b"done")

        async with asyncio.timeout(1):
            await asyncio.to_thread(slow_write)
            data = await reader.read(100)
        elapsed = loop.time() - start
        await _close(theirs, writer)
        return data, elapsed

    assert run(main()) == (b"done", 0.0)


def test_autojump_threshold_gives_io_real_time_to_arrive() -> None:
    async def main() -> tuple[bytes, float, float]:
        loop = vloop()
        start = loop.time()
        theirs, reader, writer = await _socketpair()
        thread = _write_later(theirs, 0.02, b"soon")
        data = await asyncio.wait_for(reader.read(100), 5)
        read_at = loop.time() - start
        thread.join()
        loop.autojump_threshold = 0.01
        wall = time.monotonic()
        await asyncio.sleep(10)  # still jumps, once the threshold has passed
        assert 0.01 <= time.monotonic() - wall < 1.0
        await _close(theirs, writer)
        return data, read_at, loop.time() - start

    # A generous threshold: the thread's 20 ms must not be mistaken for idleness.
    assert run(main(), autojump_threshold=1.0) == (b"soon", 0.0, 10.0)


def test_the_real_selector_can_be_chosen() -> None:
    loop = VirtualTimeLoop(selector=selectors.SelectSelector())
    try:
        assert loop.run_until_complete(asyncio.sleep(5, result="ok")) == "ok"
        assert loop.virtual_time_elapsed == 5.0
    finally:
        loop.close()


# ---------------------------------------------------------------- aiostack


def _stacks(settings: Settings | None = None) -> tuple[Stack, Stack]:
    a, b = MemoryWire.pair(names=("vtA", "vtB"))
    return (
        Stack(a, address=f"{A_IP}/24", mac=MAC_A, settings=settings, seed=1),
        Stack(b, address=f"{B_IP}/24", mac=MAC_B, settings=settings, seed=2),
    )


def test_ping_to_an_absent_host_fails_after_exactly_the_arp_retries() -> None:
    async def main() -> tuple[int | None, float, int]:
        loop = vloop()
        sa, sb = _stacks()
        async with sa, sb:
            start = loop.time()
            with pytest.raises(OSError) as info:
                await sa.ping(ABSENT_IP, timeout=10)
            elapsed = loop.time() - start
            failures = sa.statistics()["mib"]["ArpResolveFailures"]
        return info.value.errno, elapsed, failures

    settings = Settings()
    wall = time.monotonic()
    code, elapsed, failures = run(main())
    assert code == errno.EHOSTUNREACH
    # mcast_solicit (3) broadcast requests retrans_time_ms (1 s) apart, then failure.
    assert elapsed == settings.mcast_solicit * settings.retrans_time_ms / 1000 == 3.0
    assert failures == 1
    assert time.monotonic() - wall < 2.5  # less than the 3 s it covers, even on a loaded machine


def test_neighbor_entry_ages_from_reachable_to_stale_after_30_virtual_seconds() -> None:
    async def main() -> list[tuple[float, NudState]]:
        loop = vloop()
        seen: list[tuple[float, NudState]] = []
        sa, sb = _stacks()
        async with sa, sb:
            await sa.ping(B_IP, timeout=1)
            entry = sa.neighbors.entries[ipv4.addr(B_IP)]
            confirmed = entry.confirmed
            seen.append((loop.time() - confirmed, entry.state))
            await asyncio.sleep(confirmed + 29.999 - loop.time())
            seen.append((loop.time() - confirmed, entry.state))
            await asyncio.sleep(confirmed + 30.001 - loop.time())
            seen.append((round(loop.time() - confirmed, 6), entry.state))
            # It went STALE at exactly confirmed + 30: gc_stale_time counts from then.
            assert entry.deadline == confirmed + 30 + Settings().gc_stale_time
        return seen

    seen = run(main())
    assert [state for _, state in seen] == [NudState.REACHABLE, NudState.REACHABLE, NudState.STALE]
    assert seen[0][0] == 0.0
    assert seen[2][0] == 30.001


async def _sixty_seconds_of_stacks() -> Trace:
    """Pings, an unreachable address and application sleeps over 60 virtual seconds."""
    loop = vloop()
    trace: Trace = []
    sa, sb = _stacks()

    def note(event: str) -> None:
        trace.append((round(loop.time() - loop.epoch, 9), event))

    async def pinger() -> None:
        for i in range(60):
            try:
                await sa.ping(B_IP, timeout=0.5)
                note(f"ping {i} ok")
            except OSError as exc:
                note(f"ping {i} {type(exc).__name__} {exc.errno}")
            note(f"arp {sa.neighbors.entries[ipv4.addr(B_IP)].state.name}")
            await asyncio.sleep(1)

    async def lost() -> None:
        for i in range(5):
            try:
                await sa.ping(ABSENT_IP, timeout=10)
            except OSError as exc:
                note(f"absent {i} errno {exc.errno}")
            await asyncio.sleep(7.5)

    async def app() -> None:
        for delay in (0.25, 13, 0.75, 21):
            await asyncio.sleep(delay)
            note(f"app slept {delay}")

    async with sa, sb:
        start = loop.time()
        await asyncio.gather(pinger(), lost(), app())
        note("done")
        assert loop.time() - start >= 60
        note(f"frames a->b {sa.device.stats.tx_frames} b->a {sb.device.stats.tx_frames}")
    return trace


def test_a_sixty_second_stack_scenario_takes_no_real_time_and_replays() -> None:
    walls: list[float] = []
    traces: list[Trace] = []
    for _ in range(2):
        wall = time.monotonic()
        traces.append(run(_sixty_seconds_of_stacks()))
        walls.append(time.monotonic() - wall)
    first, second = traces
    assert first == second
    # About a second of wall time on an idle machine (printed). Only waiting
    # in real time could take half the virtual span, whatever the load.
    print(f"60+ virtual seconds in {max(walls):.3f} wall seconds")
    assert max(walls) < 30.0, walls
    assert first[-2][0] >= 60.0
    assert sum(1 for _, event in first if event.endswith(" ok")) == 60
    assert sum(1 for _, event in first if event.startswith("absent")) == 5
    unreachable = f"errno {errno.EHOSTUNREACH}"
    absent = [(at, event) for at, event in first if event.startswith("absent")]
    # Each: 3 s of ARP retries, then EHOSTUNREACH, then a 7.5 s pause.
    assert [at for at, _ in absent] == [3.0, 13.5, 24.0, 34.5, 45.0]
    assert all(event.endswith(unreachable) for _, event in absent)
    # B's entry ages on schedule: REACHABLE for 30 s, then used (DELAY), and
    # confirmed again by the unicast probe after delay_first_probe_time (5 s).
    assert (29.0, "arp REACHABLE") in first
    assert (30.0, "arp DELAY") in first
    assert (35.0, "arp REACHABLE") in first


def test_a_trace_of_tasks_and_timers_replays_identically() -> None:
    async def main() -> Trace:
        loop = vloop()
        start = loop.time()
        trace: Trace = []

        async def worker(name: str, delays: list[float]) -> None:
            for delay in delays:
                await asyncio.sleep(delay)
                trace.append((loop.time() - start, name))

        def callback(n: int) -> None:
            trace.append((loop.time() - start, f"cb{n}"))

        for n in range(8):
            loop.call_later(n % 3, callback, n)
        await asyncio.gather(*(worker(f"w{i}", [(i * 0.5) % 2, 1.0, 0.25 * i]) for i in range(10)))
        return trace

    runs: list[Callable[[], Trace]] = [lambda: run(main()) for _ in range(3)]
    first, *others = [r() for r in runs]
    assert all(other == first for other in others)
    assert len(first) == 8 + 30
    assert [t for t, _ in first] == sorted(t for t, _ in first)
