"""Virtual time for whole programs: an event loop whose clock jumps when everyone waits.

A test of timeouts, retransmissions and keepalives should not wait for them.
aiostack's stack reads one clock, the running loop's ``time()``, and arms one
loop timer (``loop.call_at``) per stack, so a loop with a virtual clock moves
the stack *and* the application (``asyncio.sleep``, ``asyncio.timeout``,
``wait_for``, ``call_later``) through time together. :class:`VirtualTimeLoop`
is that loop::

    from aiostack.testing.virtual_time import run_virtual

    async def scenario() -> None:
        await asyncio.sleep(3600)          # returns at once, loop.time() is +3600

    run_virtual(scenario())

The rule
    **Virtual time advances only when every task is idle and no I/O is
    ready.** Each iteration of the loop first runs everything that is ready
    (``call_soon`` callbacks, woken tasks, due timers); then it polls the real
    file descriptors with a zero timeout; only when that finds nothing, and
    nothing else holds the clock (below), does the clock jump straight to the
    earliest scheduled timer. Timers therefore fire at exactly their deadline,
    in exactly the order the standard loop fires them (it is the standard
    loop's own ``_run_once`` and timer heap that run them), and a run is a
    pure function of its inputs: the same program gives the same trace of
    (virtual time, event) on every run, in milliseconds of wall time.

Real I/O
    File descriptors keep working (a TAP, sockets, subprocess pipes, the
    loop's own self-pipe): ready I/O always wins over a jump. What the loop
    cannot know is that I/O *will* become ready: a peer outside the loop (a
    thread, the kernel, a subprocess) takes real time to answer, and with
    nothing ready the clock jumps past any timeout that guards the wait.
    Three things hold the clock still while the loop waits, in real time,
    for the outside world:

    - work handed to a thread through ``run_in_executor`` (and so
      ``asyncio.to_thread`` and ``getaddrinfo``) holds it automatically until
      the result is back: work in a thread takes no virtual time;
    - ``with loop.hold_clock(): ...`` holds it around any wait that the
      outside world will end (a reply from a subprocess or another thread);
    - ``autojump_threshold`` (real seconds, default 0) makes every jump wait
      that long for I/O first, like trio's ``MockClock``: a few milliseconds
      let a kernel peer over a TAP answer before a retransmission timer
      fires, at the price of that much wall time per jump.

    With no timer scheduled at all the loop blocks in ``select()`` like the
    standard loop does (only the outside world can wake it then).

How
    The loop is the standard library's ``SelectorEventLoop`` with two
    changes: ``time()`` returns the virtual clock, and the selector is
    wrapped. The standard ``_run_once`` asks the selector to wait ``timeout``
    seconds when (and only when) nothing is ready, with ``timeout`` the
    distance to the earliest timer; the wrapper polls with timeout 0 instead
    and, finding nothing, moves the clock by ``timeout``. Nothing of
    ``_run_once`` is copied, so timer ordering, cancellation, debug checks and
    ``call_soon`` FIFO order are the standard loop's by construction. (This
    is the idea of CPython's ``test_asyncio.utils.TestLoop``, whose selector
    also advances a fake clock, made automatic as in trio's
    ``MockClock(autojump_threshold=0)``.) One private attribute is read,
    stable since Python 3.4: ``_scheduled``, the timer heap, to land on the
    deadline exactly rather than on ``now + (deadline - now)``.

The clock
    Starts at ``epoch`` (default :data:`DEFAULT_EPOCH`, 1,000,000 s), not 0:
    code that uses 0 as "never set" (a last-seen timestamp, a deadline) must
    not mistake the start of the run for it. At that magnitude a float
    resolves about 0.1 ns, and for the first 10^6 virtual seconds (11.5
    days) ``loop.time() - start`` is exact (Sterbenz), so tests can compare
    elapsed virtual time with ``==``.

Runaway guard
    A program that never stops scheduling timers (a periodic task and a main
    task that never finishes) would spin forever at full speed. Each call of
    ``run_forever``/``run_until_complete`` may jump at most ``max_jumps``
    times and move the clock at most ``max_advance`` virtual seconds; beyond
    either the loop raises :class:`VirtualTimeRunaway`, naming the timer it
    was about to jump to and the pending tasks.

uvloop: stdlib loop only
    uvloop cannot run virtual time properly, and this module does not
    pretend it can. Its clock is libuv's ``uv_now()``, a cached
    ``CLOCK_MONOTONIC`` reading with no injection hook, and its timers are
    ``uv_timer_t`` handles that libuv expires against that clock. A Python
    subclass of ``uvloop.Loop`` can override ``time``/``call_at``/
    ``call_later`` (uvloop does dispatch those through Python, measured on
    0.23), but two things stay out of reach: the timers uvloop arms inside
    its Cython code (``_call_later``, used by its transports), and the one
    fact the jump needs, "nothing is ready": the ready queue
    (``Loop._ready``) and libuv's idle/poll phases are C-level state that
    Python cannot see, so detecting idleness would need a busy callback
    spinning every iteration and guessing. ``libfaketime`` under
    ``LD_PRELOAD`` was also rejected: it scales or offsets the clock for the
    whole process, it cannot jump when the loop goes idle. Virtual-time tests
    check protocol and application *semantics*, which are the same on both
    loops because aiostack reads only ``loop.time()``; uvloop's value is
    speed on real I/O, which the real-time suites (TAP, benchmarks) measure
    on uvloop.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import selectors
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any, TypeVar, TypeVarTuple, Unpack

if TYPE_CHECKING:
    from _typeshed import FileDescriptorLike

__all__ = [
    "DEFAULT_EPOCH",
    "DEFAULT_MAX_ADVANCE",
    "DEFAULT_MAX_JUMPS",
    "VirtualTimeLoop",
    "VirtualTimeRunaway",
    "new_virtual_time_loop",
    "run_virtual",
]

_T = TypeVar("_T")
_Ts = TypeVarTuple("_Ts")

#: Where the virtual clock starts, in seconds. Not 0: see the module docstring.
DEFAULT_EPOCH = 1_000_000.0
#: Jumps one run may make before it counts as a runaway.
DEFAULT_MAX_JUMPS = 1_000_000
#: Virtual seconds one run may cover before it counts as a runaway (30 days).
DEFAULT_MAX_ADVANCE = 30 * 86_400.0


class VirtualTimeRunaway(RuntimeError):
    """The loop kept jumping without the run finishing: an endless timer chain."""


class _VirtualSelector(selectors.BaseSelector):
    """A real selector whose ``select(timeout)`` never sleeps while the clock can jump.

    Registration goes straight to the real selector, so every file
    descriptor the loop watches is really watched; only waiting is replaced,
    by :meth:`VirtualTimeLoop._idle`.
    """

    def __init__(self, loop: VirtualTimeLoop, selector: selectors.BaseSelector) -> None:
        self._loop = loop
        self._selector = selector

    def register(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self._selector.register(fileobj, events, data)

    def unregister(self, fileobj: FileDescriptorLike) -> selectors.SelectorKey:
        return self._selector.unregister(fileobj)

    def modify(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self._selector.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events = self._selector.select(0)
        if events or (timeout is not None and timeout <= 0):
            # Something is ready (I/O now, or callbacks and due timers, which
            # is what a zero timeout from _run_once means): no jump.
            return events
        return self._loop._idle(self._selector, timeout)

    def get_key(self, fileobj: FileDescriptorLike) -> selectors.SelectorKey:
        return self._selector.get_key(fileobj)

    def get_map(self) -> Mapping[FileDescriptorLike, selectors.SelectorKey]:
        return self._selector.get_map()

    def close(self) -> None:
        self._selector.close()


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """A ``SelectorEventLoop`` on a virtual clock that jumps whenever the loop is idle.

    ``epoch``: the clock's start (virtual seconds). ``autojump_threshold``:
    real seconds to wait for I/O before each jump (0: jump at once).
    ``max_jumps`` / ``max_advance``: the runaway guard, per run, None to
    disable. ``selector``: the real selector to wrap (default
    ``selectors.DefaultSelector()``).
    """

    # Shadowed by BaseEventLoop.__init__; until then it lets the __del__ of a
    # loop whose arguments were refused pass quietly (no AttributeError).
    _closed = True

    def __init__(
        self,
        *,
        epoch: float = DEFAULT_EPOCH,
        autojump_threshold: float = 0.0,
        max_jumps: int | None = DEFAULT_MAX_JUMPS,
        max_advance: float | None = DEFAULT_MAX_ADVANCE,
        selector: selectors.BaseSelector | None = None,
    ) -> None:
        if not math.isfinite(epoch):
            raise ValueError(f"epoch: {epoch} is not a finite number of seconds")
        if max_jumps is not None and max_jumps < 1:
            raise ValueError(f"max_jumps: {max_jumps} is not a positive count")
        if max_advance is not None and not max_advance > 0:
            raise ValueError(f"max_advance: {max_advance} is not a positive duration")
        self._now = float(epoch)
        self._epoch = float(epoch)
        self.autojump_threshold = autojump_threshold
        self.max_jumps = max_jumps
        self.max_advance = max_advance
        self._holds = 0
        self._jumps = 0
        self._run_jumps = 0
        self._run_start = self._now
        self._step_target: float | None = None
        self._real_start = time.monotonic()
        real = selector if selector is not None else selectors.DefaultSelector()
        super().__init__(_VirtualSelector(self, real))

    # -- the clock ----------------------------------------------------------

    def time(self) -> float:
        """The virtual clock, in seconds: what every timer and aiostack's stack use."""
        return self._now

    @property
    def now(self) -> float:
        """Same as :meth:`time`."""
        return self._now

    @property
    def epoch(self) -> float:
        """Where the clock started."""
        return self._epoch

    @property
    def autojump_threshold(self) -> float:
        """Real seconds the idle loop waits for I/O before it jumps (0: at once)."""
        return self._autojump_threshold

    @autojump_threshold.setter
    def autojump_threshold(self, seconds: float) -> None:
        if not (math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"autojump_threshold: {seconds} is not a duration >= 0")
        self._autojump_threshold = float(seconds)

    @property
    def virtual_time_elapsed(self) -> float:
        """Virtual seconds since the epoch."""
        return self._now - self._epoch

    @property
    def real_time_elapsed(self) -> float:
        """Wall-clock seconds since the loop was created: how much the jumps saved."""
        return time.monotonic() - self._real_start

    @property
    def jumps(self) -> int:
        """How many times the clock has jumped to a deadline (``advance`` not counted)."""
        return self._jumps

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``, for tests that step time by hand.

        Called while the loop is not running (from a synchronous test), this
        *runs* the loop: everything due within the next ``seconds`` runs in
        deadline order with the clock at each deadline, and it returns once
        the loop is idle with the clock at exactly ``now + seconds``
        (``advance(0)`` runs until idle). Called from a callback or task of
        the running loop, it moves the clock at once, like a stall: every
        timer that became due fires late, together, on the next iteration
        (in debug mode asyncio logs the calling callback as slow: in virtual
        time, it was).
        """
        if not (math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"advance: {seconds} is not a duration >= 0")
        if self.is_running():
            try:
                running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is not self:
                raise RuntimeError("advance: call it from the loop's thread, or when not running")
            self._now += seconds
            return
        if self.is_closed():
            raise RuntimeError("advance: the loop is closed")
        self._step_target = self._now + seconds
        try:
            self.run_forever()
        finally:
            self._step_target = None

    @contextlib.contextmanager
    def hold_clock(self) -> Iterator[None]:
        """Keep the clock still inside the block: the idle loop waits for real I/O.

        For waits that something outside the loop will end (a thread, a
        subprocess, the kernel). Use it from the loop's thread; it nests.
        A wait under a hold that the outside world never ends blocks, as it
        would on a real loop without a timeout: guard such waits in real time.
        """
        self._holds += 1
        try:
            yield
        finally:
            self._holds -= 1

    # -- holds taken automatically -----------------------------------------

    def run_in_executor(
        self, executor: Executor | None, func: Callable[[Unpack[_Ts]], _T], *args: *_Ts
    ) -> asyncio.Future[_T]:
        """As the standard loop; the clock holds until the result is back (or not awaited)."""
        future = super().run_in_executor(executor, func, *args)
        self._holds += 1
        future.add_done_callback(self._release_hold)
        return future

    def _release_hold(self, _future: asyncio.Future[Any]) -> None:
        self._holds -= 1

    async def shutdown_default_executor(self, *args: Any, **kwargs: Any) -> None:
        """As the standard loop; joining the threads takes no virtual time."""
        with self.hold_clock():
            await super().shutdown_default_executor(*args, **kwargs)

    # -- the jump -----------------------------------------------------------

    def run_forever(self) -> None:
        # The runaway budget is per run, so cleanup after a runaway has its own.
        self._run_jumps = 0
        self._run_start = self._now
        super().run_forever()

    def _idle(
        self, selector: selectors.BaseSelector, timeout: float | None
    ) -> list[tuple[selectors.SelectorKey, int]]:
        """Every task is idle and no I/O is ready: wait for the world, or jump.

        ``timeout`` is what ``_run_once`` would sleep: the distance to the
        earliest timer (capped at a day), or None when there is no timer.
        """
        if self._holds:
            return selector.select(None)
        if self._autojump_threshold > 0:
            events = selector.select(self._autojump_threshold)
            if events:
                return events
        deadline = None if timeout is None else self._deadline(timeout)
        target = self._step_target
        if target is not None and (deadline is None or deadline > target):
            # advance(): nothing more is due before the target; land on it, then stop.
            if self._now < target:
                self._now = target
            else:
                self.stop()
            return []
        if deadline is None:
            return selector.select(None)
        self._check_runaway(deadline)
        self._now = deadline
        self._jumps += 1
        self._run_jumps += 1
        return []

    def _deadline(self, timeout: float) -> float:
        """The clock after sleeping ``timeout``: the earliest timer's own deadline if in reach.

        Landing on the handle's ``when()`` rather than ``now + timeout``
        keeps the clock exact (``now + (when - now)`` may round).
        """
        scheduled: list[asyncio.TimerHandle] = getattr(self, "_scheduled", [])
        if scheduled:
            when = scheduled[0].when()
            if when - self._now <= timeout:
                return max(self._now, when)
        return self._now + timeout

    def _check_runaway(self, deadline: float) -> None:
        too_many = self.max_jumps is not None and self._run_jumps >= self.max_jumps
        too_far = self.max_advance is not None and deadline - self._run_start > self.max_advance
        if not (too_many or too_far):
            return
        scheduled: list[asyncio.TimerHandle] = getattr(self, "_scheduled", [])
        head = repr(scheduled[0]) if scheduled else "none"
        tasks = [repr(task) for task in asyncio.all_tasks(self)]
        if len(tasks) > 5:
            tasks[5:] = [f"... and {len(tasks) - 5} more"]
        shown = "\n  ".join(tasks)
        if too_many:
            limit = f"{self._run_jumps} jumps (max_jumps={self.max_jumps})"
        else:
            limit = f"{deadline - self._run_start:g} virtual s (max_advance={self.max_advance:g})"

        raise VirtualTimeRunaway(
            f"virtual time ran away: this run would exceed {limit} at virtual time "
            f"{deadline - self._epoch:g} s after the epoch without finishing. Something keeps "
            f"scheduling timers while the awaited work never completes (a periodic task, a retry "
            f"loop). Next timer: {head}\nPending tasks:\n  {shown or 'none'}\n"
            "Raise max_jumps/max_advance if the run is meant to be this long."
        )


def new_virtual_time_loop(
    *,
    epoch: float = DEFAULT_EPOCH,
    autojump_threshold: float = 0.0,
    max_jumps: int | None = DEFAULT_MAX_JUMPS,
    max_advance: float | None = DEFAULT_MAX_ADVANCE,
) -> VirtualTimeLoop:
    """A new :class:`VirtualTimeLoop`; a loop factory for ``asyncio.Runner`` and pytest-asyncio."""
    return VirtualTimeLoop(
        epoch=epoch,
        autojump_threshold=autojump_threshold,
        max_jumps=max_jumps,
        max_advance=max_advance,
    )


def run_virtual(
    main: Coroutine[Any, Any, _T],
    *,
    debug: bool | None = None,
    epoch: float = DEFAULT_EPOCH,
    autojump_threshold: float = 0.0,
    max_jumps: int | None = DEFAULT_MAX_JUMPS,
    max_advance: float | None = DEFAULT_MAX_ADVANCE,
) -> _T:
    """Like ``asyncio.run(main)``, on a fresh :class:`VirtualTimeLoop`.

    Cleanup is ``asyncio.run``'s: leftover tasks are cancelled, async
    generators and the default executor shut down, the loop closed. The
    loop is reachable inside ``main`` as ``asyncio.get_running_loop()``.
    """

    def factory() -> asyncio.AbstractEventLoop:
        return new_virtual_time_loop(
            epoch=epoch,
            autojump_threshold=autojump_threshold,
            max_jumps=max_jumps,
            max_advance=max_advance,
        )

    with asyncio.Runner(debug=debug, loop_factory=factory) as runner:
        return runner.run(main)
