"""The IP task: IPv4 input for every packet of a batch, ICMP answered in place.

Datagrams for transports (and ICMP errors about our own traffic) go on to
the transport task as one batch; whatever the IP layer sent (echo replies,
ICMP errors) goes to the transmit task as one batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiostack.core.icmp import TransportError
from aiostack.core.ipv4 import Datagram

if TYPE_CHECKING:
    from aiostack.stack.stack import Stack

#: What the transport task receives.
TransportInput = Datagram | TransportError


class IpTask:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack

    async def run(self) -> None:
        stack = self.stack
        queue = stack.ip_queue
        while True:
            batch = await queue.get()
            stack.run_batch(self.process, batch)

    def process(self, batch: list[tuple[memoryview, bool, bool]]) -> None:
        """One batch, from the queue or handed on by the link layer; nothing escapes."""
        try:
            self.receive(batch)
        except Exception:
            self.stack.internal_error("ip")

    def receive(self, batch: list[tuple[memoryview, bool, bool]]) -> None:
        stack = self.stack
        ip = stack.ip
        receive = ip.receive
        now = stack.now()
        reassembling = len(ip.reassembler)
        delivered: list[TransportInput] = []
        for packet, broadcast, trusted in batch:
            result = receive(now, packet, broadcast, trusted)
            if result is not None:
                delivered.append(result)
        if delivered:
            stack.l4_queue.hand_on(delivered, stack.transport_task.process)
        if ip.raw.touched:
            for ep in ip.raw.take_touched():
                ep.owner.wake()
        stack.flush_ip_output()
        if len(ip.reassembler) > reassembling:
            stack.timer.kick()
