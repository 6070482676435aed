"""A wait queue: what Linux calls ``sk_sleep``, for coroutines.

A socket call that cannot complete parks a future here and re-checks its
condition when woken; waking is idempotent and cheap when nobody waits, so
the transport task can wake a socket for every batch that touched it. A
woken waiter always re-checks, which is what makes a cancelled call safe:
the data it did not take stays queued for the next one.
"""

from __future__ import annotations

import asyncio


class WaitQueue:
    __slots__ = ("_waiters",)

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future[None]] = []

    def __bool__(self) -> bool:
        return bool(self._waiters)

    async def wait(self) -> None:
        """Sleep until the next :meth:`wake_all`."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def wake_all(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
