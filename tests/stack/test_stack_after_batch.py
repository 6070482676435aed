"""Readiness callbacks run when the batch that caused them is done, in the same loop pass."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from aiostack.socket import AF_INET, SOCK_STREAM
from tests.helpers import B_IP, TIMEOUT, wired_stacks

PORT = 7300


async def test_callbacks_asked_for_mid_batch_run_when_the_batch_is_done() -> None:
    async with wired_stacks() as (a, _b):
        order: list[str] = []

        def process(batch: list[int]) -> None:
            a.call_after_batch(lambda: order.append("first"))
            order.append(f"batch {batch}")
            a.call_after_batch(lambda: order.append("second"))
            order.append("end of batch")

        a.run_batch(process, [1, 2])
        assert order == ["batch [1, 2]", "end of batch", "first", "second"]


async def test_nested_batches_run_callbacks_once_the_outermost_is_done() -> None:
    async with wired_stacks() as (a, _b):
        order: list[str] = []

        def inner(_: None) -> None:
            a.call_after_batch(lambda: order.append("callback"))
            order.append("inner")

        def outer(_: None) -> None:
            a.run_batch(inner, None)
            order.append("outer")

        a.run_batch(outer, None)
        assert order == ["inner", "outer", "callback"]


async def test_outside_a_batch_a_callback_waits_for_the_next_pass() -> None:
    async with wired_stacks() as (a, _b):
        ran = asyncio.Event()
        a.call_after_batch(ran.set)
        assert not ran.is_set()  # never re-entered from the caller's own call
        await asyncio.wait_for(ran.wait(), TIMEOUT)


async def test_a_failing_batch_or_callback_does_not_lose_the_others() -> None:
    async with wired_stacks() as (a, _b):
        loop = asyncio.get_running_loop()
        reported: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, context: reported.append(context))
        order: list[str] = []

        def boom() -> None:
            raise RuntimeError("callback bug")

        def process(_: None) -> None:
            a.call_after_batch(boom)
            a.call_after_batch(lambda: order.append("after the failing one"))
            raise ValueError("batch bug")

        with pytest.raises(ValueError, match="batch bug"):
            a.run_batch(process, None)
        assert order == ["after the failing one"]
        assert [type(c["exception"]) for c in reported] == [RuntimeError]
        # The stack is out of its batch: the next call is scheduled, not collected.
        a.call_after_batch(lambda: order.append("later"))
        assert order == ["after the failing one"]


class _Recorder(asyncio.Protocol):
    def __init__(self, events: list[str], got: asyncio.Event) -> None:
        self.events = events
        self.got = got

    def data_received(self, data: bytes) -> None:
        self.events.append("data")
        self.got.set()


async def test_a_transport_sees_data_in_the_pass_that_received_it() -> None:
    """No loop callback runs between the batch carrying the data and data_received."""
    async with wired_stacks() as (a, b):
        events: list[str] = []
        got = asyncio.Event()
        server = await b.create_server(lambda: _Recorder(events, got), B_IP, PORT)
        client = a.socket(AF_INET, SOCK_STREAM)
        await asyncio.wait_for(client.connect((B_IP, PORT)), TIMEOUT)
        receive = b.link.receive

        def receive_and_mark(frames: list[bytes]) -> None:
            events.append("batch")
            receive(frames)

        b.link.receive = receive_and_mark  # type: ignore[method-assign]

        async def ticker() -> None:
            while True:
                events.append("tick")
                await asyncio.sleep(0)

        ticking = asyncio.create_task(ticker())
        try:
            await asyncio.sleep(0)
            await client.sendall(b"hello")
            await asyncio.wait_for(got.wait(), TIMEOUT)
        finally:
            ticking.cancel()
            client.close()
            server.close()
        data_at = events.index("data")
        assert events[data_at - 1] == "batch", events[max(0, data_at - 5) : data_at + 1]
