"""The transport task: TCP to its shell, UDP delivery, ICMP errors, echo replies to pingers.

Sockets are woken once per batch, not once per datagram: a burst of 64
datagrams for one socket costs one wake-up of its reader.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiostack.core.icmp import TransportError
from aiostack.core.ipv4 import Datagram
from aiostack.stack.l3 import TransportInput
from aiostack.wire.ipv4 import IpProto

if TYPE_CHECKING:
    from aiostack.stack.stack import Stack


_UDP = int(IpProto.UDP)
_TCP = int(IpProto.TCP)
_ICMP = int(IpProto.ICMP)


class TransportTask:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack

    async def run(self) -> None:
        stack = self.stack
        queue = stack.l4_queue
        while True:
            batch = await queue.get()
            stack.run_batch(self.process, batch)

    def process(self, batch: list[TransportInput]) -> None:
        """One batch, from the queue or handed on by the IP task; nothing escapes."""
        try:
            self.receive(batch)
        except Exception:
            self.stack.internal_error("transport")

    def receive(self, batch: list[TransportInput]) -> None:
        stack = self.stack
        udp = stack.udp
        now = stack.now()
        woken: set[Any] = set()
        touched: dict[Any, None] = {}
        tcp = stack.tcp
        tcp.verify_batch(batch)
        for item in batch:
            if type(item) is not Datagram:
                assert type(item) is TransportError
                self.error(item, woken)
                continue
            proto = item.proto
            if proto == _TCP:
                tcp.receive(now, item, touched)
            elif proto == _UDP:
                for ep in udp.receive(now, item):
                    woken.add(ep.owner)
            elif proto == _ICMP:
                stack.pinger.echo_reply(item)
                ping = stack.ping_sockets.receive(item.src, item.dst, item.payload)
                if ping is not None:
                    woken.add(ping.owner)
        tcp.finish_batch(now, touched)  # releases a segment GRO held, too
        for owner in woken:
            if owner is not None:
                owner.wake()
        stack.flush_ip_output()

    def error(self, err: TransportError, woken: set[Any]) -> None:
        # raw_icmp_error first: raw sockets of the quoted protocol hear of it too.
        woken.update(ep.owner for ep in self.stack.ip.raw.error(err))
        if err.proto == IpProto.TCP:
            stack = self.stack
            stack.tcp.error(stack.now(), err)
        elif err.proto == IpProto.UDP:
            ep = self.stack.udp.error(err)
            if ep is not None:
                woken.add(ep.owner)
        elif err.proto == IpProto.ICMP:
            self.stack.pinger.error(err)
            ping = self.stack.ping_sockets.error(err)
            if ping is not None:
                woken.add(ping.owner)
