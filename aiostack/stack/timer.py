"""The stack's single timer task.

Protocol timers live in the pure core as deadlines (``poll_at()``); this
task sleeps until the earliest one and then lets every layer ``poll(now)``.
No layer ever arms a loop handle of its own, so re-arming a timer costs an
assignment, and a stack with many idle neighbours or connections costs
nothing per tick. When a layer may have created an earlier deadline it calls
:meth:`TimerTask.kick`, which wakes this task only if the new deadline is
earlier than the one it is sleeping towards.

Input first: when timers fall due, the task first runs the input already
waiting for the stack (in the device or a layer queue) up the stack, then
fires what is still due. Otherwise a burst of ACKs still unread behind a
busy loop pass (10,000 FINs acknowledged at once) lets every connection's
retransmission timer fire for a segment the peer has already acknowledged;
in Linux the NAPI poll processes an ACK microseconds after it arrives, long
before a timer could act on it. The drain is bounded by :data:`MAX_DEFER`
seconds and :data:`MAX_DEFER_FRAMES` frames, so an input flood delays timers
by that much at most and never starves them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from aiostack.link.base import DeviceClosed

if TYPE_CHECKING:
    from aiostack.stack.stack import Stack

log = logging.getLogger(__name__)

#: Longest due timers wait while the input already waiting is taken in
#: (seconds): one minimum RTO (200 ms). Taking in a full TAP queue (10,000
#: frames) takes a Python stack about that long; measured on the
#: 10,000-connection close, 50 and 100 ms still let thousands of spurious
#: retransmissions through, 200 ms none. Holding a timer that long only under
#: a flood at most doubles a first RTO (one backoff's worth), where a spurious
#: RTO costs a segment and collapses the congestion window.
MAX_DEFER = 0.2
#: ... and in frames: more than a TAP aiostack creates can hold
#: (``netlink.TAP_TXQUEUELEN``), so the bound is time unless the clock stands
#: still (virtual time).
MAX_DEFER_FRAMES = 16384


class TimerTask:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self._waiter: asyncio.Future[None] | None = None
        self._sleeping_until: float | None = None
        self.max_defer = MAX_DEFER
        self.max_defer_frames = MAX_DEFER_FRAMES
        #: Frames taken in by this task before firing timers (diagnostics).
        self.frames_first = 0
        #: How many times the drain stopped at a bound with input possibly left.
        self.deferral_limits = 0

    def kick(self) -> None:
        """A deadline may have moved earlier: wake up if it did."""
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        deadline = self.stack.next_deadline()
        if deadline is None:
            return
        if self._sleeping_until is None or deadline < self._sleeping_until:
            waiter.set_result(None)

    async def run(self) -> None:
        stack = self.stack
        loop = asyncio.get_running_loop()
        drained = False  # the input waiting when these timers fell due is in
        while True:
            deadline = stack.next_deadline()
            now = stack.now()
            if deadline is not None and deadline <= now:
                if not drained:
                    drained = True
                    try:
                        taken = stack.take_pending_input(
                            now + self.max_defer, self.max_defer_frames
                        )
                    except DeviceClosed:
                        raise  # not a bug: the task ends (Stack._guard)
                    except Exception:
                        stack.internal_error("timer")
                        taken = 0
                    self.frames_first += taken
                    if taken >= self.max_defer_frames or stack.now() >= now + self.max_defer:
                        self.deferral_limits += 1
                    # The input may have cancelled or moved the deadlines: look again.
                    continue
                drained = False
                try:
                    stack.run_batch(stack.poll_timers, now)
                except DeviceClosed:
                    raise  # not a bug: the task ends (Stack._guard)
                except Exception:
                    stack.internal_error("timer")
                continue
            drained = False
            waiter = loop.create_future()
            self._waiter = waiter
            self._sleeping_until = deadline
            handle = loop.call_at(deadline, _wake, waiter) if deadline is not None else None
            try:
                await waiter
            finally:
                self._waiter = None
                if handle is not None:
                    handle.cancel()


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
