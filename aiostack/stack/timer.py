"""The stack's single timer task.

Protocol timers live in the pure core as deadlines (``poll_at()``); this
task sleeps until the earliest one and then lets every layer ``poll(now)``.
No layer ever arms a loop handle of its own, so re-arming a timer costs an
assignment, and a stack with many idle neighbours or connections costs
nothing per tick. When a layer may have created an earlier deadline it calls
:meth:`TimerTask.kick`, which wakes this task only if the new deadline is
earlier than the one it is sleeping towards.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from aiostack.link.base import DeviceClosed

if TYPE_CHECKING:
    from aiostack.stack.stack import Stack

log = logging.getLogger(__name__)


class TimerTask:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self._waiter: asyncio.Future[None] | None = None
        self._sleeping_until: float | None = None

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
        while True:
            deadline = stack.next_deadline()
            now = stack.now()
            if deadline is not None and deadline <= now:
                try:
                    stack.run_batch(stack.poll_timers, now)
                except DeviceClosed:
                    raise  # not a bug: the task ends (Stack._guard)
                except Exception:
                    stack.internal_error("timer")
                continue
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
