"""Time on a loaded machine: the runner's own lateness is not the stack's, and a call is
"blocked" only when it waits for the network, not when it merely was not scheduled yet."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time

import pytest

from aiostack.testing.packetdrill import parse
from aiostack.testing.packetdrill.aiostack_target import AiostackTarget
from aiostack.testing.packetdrill.kernel import AiostackKernel
from aiostack.testing.packetdrill.linux import LinuxKernel
from aiostack.testing.packetdrill.report import Result, Status
from aiostack.testing.packetdrill.runner import (
    LATENESS_FACTOR,
    SCHEDULING_PATIENCE_USECS,
    Timeline,
    run_target,
)
from aiostack.testing.virtual_time import run_virtual
from tests.helpers import eventually

PASSIVE = """\
0   socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0  bind(3, ..., ...) = 0
+0  listen(3, 1) = 0
+0  < S 0:0(0) win 65535 <mss 1000,sackOK,nop,nop,nop,wscale 7>
+0  > S. 0:0(0) ack 1 <mss 1460,nop,nop,sackOK,nop,wscale 7>
+.1 < . 1:1(0) ack 1 win 1000
+0  accept(3, ..., ...) = 4
"""
#: Two writes at once, then their packets (Linux sends each at once: full segments).
WRITES = """\
+0  write(4, ..., 1000) = 1000
+0  write(4, ..., 1000) = 1000
+0  > P. 1:1001(1000) ack 1
+0  > P. 1001:2001(1000) ack 1
"""


class LateRunner(AiostackTarget):
    """aiostack, but the runner oversleeps some events, as a loaded machine makes it do."""

    def __init__(self, late: dict[int, float]) -> None:
        super().__init__()
        self.late = late  # index of the sleep_until call -> seconds of lateness
        self.sleeps = 0

    async def sleep_until(self, when: float) -> None:
        extra = self.late.get(self.sleeps, 0.0)
        self.sleeps += 1
        await super().sleep_until(when + extra)


def run_late(text: str, late: dict[int, float]) -> Result:
    return run_virtual(run_target(parse(text), LateRunner(late)))


def test_a_late_write_does_not_make_earlier_packets_early() -> None:
    # Sleeps: socket, bind, listen, <S, <., accept, write, write: the second write (7)
    # happens 80 ms late, after the first write's packet went out on time.
    result = run_late(PASSIVE + WRITES, {7: 0.08})
    assert result.status is Status.PASS, result.render(verbose=True)
    # Its own packet is late with it, and that is the runner's doing, not the stack's.
    result = run_late(PASSIVE + WRITES, {6: 0.08})
    assert result.status is Status.PASS, result.render(verbose=True)


def test_the_stack_is_still_held_to_the_script_when_the_runner_is_on_time() -> None:
    result = run_late(PASSIVE + WRITES.replace("+0  > P. 1001", "+.01 > P. 1001"), {})
    assert (result.status, result.line) == (Status.FAIL, 11)
    assert result.message.startswith("timing error: outbound packet expected at 0.11 s")
    assert "lateness" not in result.message


def test_late_side_grows_with_lateness_and_says_so() -> None:
    # 80 ms late: a packet the script puts 0.5 s later than it comes is still caught,
    # and the message shows the widened window.
    late = PASSIVE + WRITES.replace("+0  > P. 1001", "+.5 > P. 1001")
    result = run_late(late, {7: 0.08})
    assert (result.status, result.line) == (Status.FAIL, 11)
    assert "with the runner's own lateness" in result.message


class _Clock(AiostackTarget):
    """A target whose clock the test sets (for the anchor arithmetic alone)."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = 0.0

    def now(self) -> float:
        return self.clock


def test_anchors_follow_the_ideal_and_the_actual_schedule() -> None:
    script = parse(PASSIVE + WRITES)
    target = _Clock()
    timeline = Timeline(script, target)
    event = script.events[-1]  # "+0 > ...": relative
    target.clock = 1.0
    timeline.acted(1_000_000, 1_000_000)
    target.clock = 1.08
    timeline.acted(1_000_000, 1_000_000)  # 80 ms late
    assert (timeline.anchor, timeline.early_anchor, timeline.late_anchor) == (
        1_080_000,
        1_000_000,
        1_080_000,
    )
    bounds = timeline.bounds(event, 1_080_000, 1_080_000)
    assert bounds is not None
    tolerance = timeline.tolerance
    assert bounds.earliest == 1_000_000 - tolerance
    assert bounds.latest == 1_080_000 + tolerance + LATENESS_FACTOR * 80_000
    # The next "+.1" action is scheduled from the late anchor but ideally due 0.1 s
    # after the ideal one: lateness does not accumulate into the early side.
    target.clock = 1.2
    timeline.acted(1_180_000, timeline.early_anchor + 100_000)
    assert (timeline.anchor, timeline.early_anchor) == (1_200_000, 1_100_000)
    assert timeline.max_lateness == 80_000


class SlowToStart(AiostackKernel):
    """socket() takes 0.3 s before it begins (a thread not scheduled), never waiting."""

    stuck = False

    async def socket(self, domain: int, type: int, proto: int) -> int:
        await asyncio.sleep(0.3)
        if self.stuck:
            await asyncio.Event().wait()
        return await super().socket(domain, type, proto)

    def call_waiting(self) -> bool:
        return False


class SlowKernelTarget(AiostackTarget):
    def __init__(self, *, stuck: bool = False) -> None:
        super().__init__()
        self.stuck = stuck

    async def open(self) -> None:
        await super().open()
        assert self.stack is not None
        kernel = SlowToStart(self.stack)
        kernel.stuck = self.stuck
        self.kernel = kernel


def test_a_call_not_yet_running_is_late_not_blocked() -> None:
    result = run_virtual(run_target(parse(PASSIVE), SlowKernelTarget()))
    assert result.status is Status.PASS, result.render(verbose=True)


def test_a_call_that_never_runs_fails_after_the_patience() -> None:
    result = run_virtual(run_target(parse(PASSIVE), SlowKernelTarget(stuck=True)))
    assert (result.status, result.line) == (Status.FAIL, 1)
    assert result.message.startswith("socket() blocked")
    assert SCHEDULING_PATIENCE_USECS >= 1_000_000


async def test_linux_calls_are_waiting_only_when_asleep_in_the_kernel() -> None:
    # No namespace needed: _call runs any function on a thread of its own.
    kernel = LinuxKernel("unused")
    assert not kernel.call_waiting()  # no call
    a, b = socket.socketpair()
    try:
        task = asyncio.ensure_future(kernel._call(lambda: a.recv(10)))
        await eventually(kernel.call_waiting, what="recv() asleep in the kernel")
        b.send(b"x")
        assert await task == b"x"
        assert not kernel.call_waiting()
        assert kernel.last_call_started is not None and kernel.last_call_returned is not None
        assert kernel.last_call_started <= kernel.last_call_returned <= time.monotonic()
    finally:
        a.close()
        b.close()

    def busy() -> int:
        """Pure Python: running, runnable or waiting for the GIL, never asleep in a socket."""
        end = time.monotonic() + 0.3
        spins = 0
        while time.monotonic() < end:
            spins += 1
        return spins

    task = asyncio.ensure_future(kernel._call(busy))
    while not task.done():
        assert not kernel.call_waiting()
        await asyncio.sleep(0.005)
    assert await task > 0


def test_a_blocking_call_unblocked_late_by_the_runner_is_not_late() -> None:
    # Sleeps: ..., accept (5), read (6), the data that unblocks it (7), 80 ms late.
    text = PASSIVE + "+0...0.2 read(4, ..., 10) = 10\n+.2 < P. 1:11(10) ack 1 win 1000\n"
    result = run_late(text, {7: 0.08})
    assert result.status is Status.PASS, result.render(verbose=True)
    # On time, the same return 80 ms late is the stack's and fails.
    late_return = text.replace("+0...0.2", "+0...0.12")
    result = run_late(late_return, {})
    assert (result.status, result.line) == (Status.FAIL, 8)
    assert result.message.startswith("timing error: return of read()")


def test_the_linux_runner_is_punctual_while_a_script_runs() -> None:
    from aiostack.testing.packetdrill.linux import RUNNER_NICE, punctual

    before = os.getpriority(os.PRIO_PROCESS, 0)
    seen: list[int] = []
    with punctual():
        inside = os.getpriority(os.PRIO_PROCESS, 0)
        # A call's thread, started now, inherits the priority (Linux: per thread).
        thread = threading.Thread(target=lambda: seen.append(os.getpriority(os.PRIO_PROCESS, 0)))
        thread.start()
        thread.join()
    assert os.getpriority(os.PRIO_PROCESS, 0) == before
    if os.geteuid() == 0:
        assert inside == seen[0] == min(before, RUNNER_NICE)
    else:  # not allowed: unchanged, and no error
        assert inside == seen[0] == before


async def test_linux_calls_that_need_not_wait_are_made_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As packetdrill does, only a call that must wait goes to a thread of its own."""
    from aiostack.testing.packetdrill import linux

    threads: list[str] = []
    real_in_thread = linux._in_thread

    async def counting(fn, started=None, finished=None):  # type: ignore[no-untyped-def]
        threads.append(getattr(fn, "__name__", "?"))
        return await real_in_thread(fn, started, finished)

    monkeypatch.setattr(linux, "_in_thread", counting)
    kernel = LinuxKernel("unused")
    a, b = socket.socketpair()  # AF_UNIX: no network involved
    try:
        left, right = kernel._register(a), kernel._register(b)
        assert await kernel.send(left, 10, 0) == 10
        assert await kernel.recv(right, 100, 0) == 10
        assert threads == []
        assert kernel.last_call_started is not None and kernel.last_call_returned is not None
        # Nothing to read: the real recv() waits on a thread until data comes.
        task = asyncio.ensure_future(kernel.recv(right, 100, 0))
        await eventually(kernel.call_waiting, what="recv() asleep")
        assert len(threads) == 1
        assert await kernel.send(left, 5, 0) == 5
        assert await task == 5
        # More than the buffer holds: what fits is copied at once, the rest waits.
        big = 4 * a.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        sending = asyncio.ensure_future(kernel.send(left, big, 0))
        received = 0
        while received < big:
            received += await kernel.recv(right, 65536, 0)
        assert await sending == big and received == big
        # A descriptor in O_NONBLOCK mode answers EAGAIN itself.
        await kernel.set_flags(right, os.O_RDWR | os.O_NONBLOCK)
        with pytest.raises(BlockingIOError):
            await kernel.recv(right, 100, 0)
    finally:
        await kernel.close_all()
