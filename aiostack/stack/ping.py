"""ICMP echo from the stack itself: ``await stack.ping(address)``.

The stack is both the kernel and the ``ping`` program here: requests carry
this stack's identifier and a sequence number, and replies are matched back
to the waiting call by sequence. Errors about our requests (host
unreachable after ARP fails, an ICMP unreachable from a router) fail the
matching call with the errno Linux's ping would show.

The round-trip time is measured on the loop's clock, so that on a
virtual-time loop it is virtual time; except on uvloop, whose ``time()`` is
libuv's millisecond clock, too coarse for the tens of microseconds a ping
over a TAP takes: there ``time.perf_counter`` measures it.
"""

from __future__ import annotations

import asyncio
import struct
import time
from typing import TYPE_CHECKING

from aiostack.core.icmp import TransportError
from aiostack.core.ipv4 import Datagram
from aiostack.errors import os_error
from aiostack.wire import icmpv4
from aiostack.wire.icmpv4 import IcmpType

if TYPE_CHECKING:
    from aiostack.stack.stack import Stack

_ECHO = struct.Struct("!HH")


def _coarse_clock(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether the loop's ``time()`` ticks in milliseconds (uvloop's libuv clock)."""
    return type(loop).__module__.startswith("uvloop")


class Pinger:
    def __init__(self, stack: Stack, ident: int) -> None:
        self.stack = stack
        self.ident = ident
        self._sequence = 0
        self._waiters: dict[int, asyncio.Future[bytes]] = {}

    async def ping(self, address: int, payload: bytes, timeout: float | None) -> float:
        stack = self.stack
        self._sequence = (self._sequence + 1) & 0xFFFF
        sequence = self._sequence
        route = stack.routes.lookup(address)
        if route is None:
            raise os_error(101)  # ENETUNREACH
        loop = asyncio.get_running_loop()
        clock = time.perf_counter if _coarse_clock(loop) else loop.time
        waiter: asyncio.Future[bytes] = loop.create_future()
        self._waiters[sequence] = waiter
        try:
            start = clock()
            code = stack.ip.send_icmp(
                stack.now(),
                route.source,
                address,
                IcmpType.ECHO_REQUEST,
                0,
                icmpv4.echo_rest(self.ident, sequence),
                payload,
            )
            if code:
                raise os_error(code)
            stack.counters.IcmpOutEchos += 1
            stack.flush_ip_output()
            async with asyncio.timeout(timeout):
                echoed = await waiter
            if echoed != payload:
                raise ValueError("ping: echo reply payload differs from the request")
            return clock() - start
        finally:
            self._waiters.pop(sequence, None)

    def echo_reply(self, dgram: Datagram) -> None:
        payload = dgram.payload
        if len(payload) < icmpv4.HEADER_LEN:
            return
        ident, sequence = _ECHO.unpack_from(payload, 4)
        if ident != self.ident:
            return
        waiter = self._waiters.get(sequence)
        if waiter is not None and not waiter.done():
            waiter.set_result(bytes(payload[icmpv4.HEADER_LEN :]))

    def error(self, err: TransportError) -> None:
        # For an echo request the quoted "ports" are the identifier and sequence.
        if err.sport != self.ident:
            return
        waiter = self._waiters.get(err.dport)
        if waiter is not None and not waiter.done():
            waiter.set_exception(os_error(err.errno))
