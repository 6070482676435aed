"""The bounded queue between two layer tasks, carrying batches.

Why not ``asyncio.Queue``: a layer wants *everything* that is waiting, as one
list, each time it wakes (one wake-up and one Python-level loop per burst,
which is what keeps the per-packet cost flat), and the bound that matters is
in packets, like the kernel's ``netdev_max_backlog``, not in batches. A
producer never waits: what does not fit is dropped and counted, as a NIC or
the kernel's backlog drops, so a slow layer sheds load instead of growing
memory without limit. That is the receive side; the transmit side's
:class:`TransmitQueue` holds only what the stack itself produced and pushes
back on its producer instead of dropping (docs/decisions.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
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

    def hand_on(self, batch: list[T], process: Callable[[list[T]], None]) -> None:
        """Give ``batch`` to the consumer: in this pass of the loop if it is idle, else queued.

        When nothing is queued, the consumer is parked in :meth:`get` and the
        batch fits the bound, queueing would only make the consumer take this
        very batch, whole, one pass of the event loop later; ``process`` (the
        consumer's batch function, which must not raise) runs it now instead,
        as Linux runs ``ip_rcv`` and ``tcp_v4_rcv`` within the NAPI poll that
        received the frame. Otherwise the batch is queued (and what does not
        fit dropped) exactly as :meth:`put` does, so order, batching and the
        bound are what they were; only the wait for the next pass goes.
        """
        waiter = self._waiter
        if (
            not self._items
            and waiter is not None
            and not waiter.done()
            and len(batch) <= self.limit
        ):
            if batch:
                process(batch)
            return
        self.put(batch)


class TransmitQueue(BatchQueue[T]):
    """The queue in front of the device: frames the stack produced itself; never drops.

    Everything that reaches it was made by this stack (segments, replies,
    datagrams), and is bounded before it gets here: TCP by its send buffers
    and windows, replies by the receive queues that bound their triggers,
    datagrams by the sending call. Dropping such a frame would only turn a
    burst into retransmission timeouts (10,000 ``close()`` calls in a row
    queue 10,000 FINs). So when a batch would take the queue past
    :attr:`limit`, the producer transmits the whole backlog itself, there
    and then, through ``overflow`` (the link layer's transmit), as Linux
    runs the qdisc and the driver's xmit in the sending thread's context
    (``__dev_xmit_skb`` -> ``qdisc_run``). The producer is pushed back by
    doing the device's work; memory stays bounded by ``limit``; order is
    kept because the backlog goes first. Under the bound, frames wait for
    the transmit task as before, so a pass of the loop still leaves in one
    ``send_batch``.
    """

    __slots__ = ("_overflow", "direct_flushes")

    def __init__(
        self,
        name: str,
        counters: Counters,
        overflow: Callable[[list[T]], None],
        limit: int = DEFAULT_LIMIT,
    ) -> None:
        super().__init__(name, counters, limit)
        self._overflow = overflow
        #: How many times a producer transmitted the backlog itself.
        self.direct_flushes = 0

    def put(self, batch: list[T]) -> None:
        """Queue ``batch``; at the bound, hand everything queued to ``overflow`` instead."""
        if not batch:
            return
        items = self._items
        if len(items) + len(batch) < self.limit:
            if items:
                items.extend(batch)
            else:
                self._items = batch
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
            return
        if items:
            items.extend(batch)
            batch = items
            self._items = []
        self.direct_flushes += 1
        self._overflow(batch)
