"""The bounded queue between two layer tasks, carrying batches.

Why not ``asyncio.Queue``: a layer wants *everything* that is waiting, as one
list, each time it wakes (one wake-up and one Python-level loop per burst,
which is what keeps the per-packet cost flat), and the bound that matters is
in packets, like the kernel's ``netdev_max_backlog``, not in batches. A
producer never waits: what does not fit is dropped and counted, as a NIC or
the kernel's backlog drops, so a slow layer sheds load instead of growing
memory without limit.
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

from aiostack.core.counters import Counters

T = TypeVar("T")

#: Packets a queue holds at most (Linux's ``netdev_max_backlog`` is 1000).
DEFAULT_LIMIT = 4096


class BatchQueue(Generic[T]):
    """Single-consumer queue of items handed over in batches; see the module docstring."""

    __slots__ = ("_counters", "_drop_reason", "_items", "_waiter", "limit", "name")

    def __init__(self, name: str, counters: Counters, limit: int = DEFAULT_LIMIT) -> None:
        if limit <= 0:
            raise ValueError(f"limit: {limit} must be positive")
        self.name = name
        self.limit = limit
        self._counters = counters
        self._drop_reason = f"queue.{name}_full"
        self._items: list[T] = []
        self._waiter: asyncio.Future[None] | None = None

    def __len__(self) -> int:
        return len(self._items)

    def put(self, batch: list[T]) -> None:
        """Append ``batch`` (the queue may keep the list itself); drop what does not fit."""
        if not batch:
            return
        items = self._items
        room = self.limit - len(items)
        if len(batch) > room:
            self._counters.drop(self._drop_reason, len(batch) - max(room, 0))
            if room <= 0:
                return
            batch = batch[:room]
        if items:
            items.extend(batch)
        else:
            self._items = batch
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> list[T]:
        """Wait for at least one item; return and remove everything queued."""
        while not self._items:
            waiter = asyncio.get_running_loop().create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                self._waiter = None
        items = self._items
        self._items = []
        return items

    def get_nowait(self) -> list[T]:
        items = self._items
        self._items = []
        return items
