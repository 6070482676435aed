"""Raw IP delivery (Linux ``raw_v4_input``): a copy of every matching datagram per raw socket.

Pure: the IP layer calls :meth:`RawTable.deliver` for each datagram it
delivers locally, *before* the transport sees it (as ``ip_local_deliver_finish``
calls ``raw_local_deliver`` ahead of the protocol handler), so an ICMP raw
socket sees echo requests the stack answers itself, and a raw socket for a
protocol the stack does not speak turns away the "protocol unreachable"
error that would otherwise go back.

A raw endpoint matches, as ``raw_v4_match`` says, when its protocol is the
datagram's, its connected peer (if any) is the source and its bound address
(if any) is the destination. ICMP sockets also apply their ICMP_FILTER
(``icmp_filter``: a set bit drops that type; types >= 32 always pass; a
message too short for an ICMP header is dropped). A full receive buffer is
a counted drop, like ``sock_queue_rcv_skb``.

ICMP errors about what a raw socket sent reach it too (``raw_icmp_error``;
see :meth:`RawTable.error`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiostack.core.counters import Counters
from aiostack.core.dgram_queue import DatagramQueue
from aiostack.core.icmp import TransportError
from aiostack.wire.icmpv4 import IcmpType, UnreachCode

IPPROTO_ICMP = 1


@dataclass(eq=False, slots=True)
class RawEndpoint(DatagramQueue):
    """One raw socket's receive side: protocol, addresses, filter and queue."""

    protocol: int
    owner: Any = None
    bound_addr: int = 0
    remote_addr: int = 0
    icmp_filter: int = 0

    def matches(self, src: int, dst: int) -> bool:
        return (not self.remote_addr or self.remote_addr == src) and (
            not self.bound_addr or self.bound_addr == dst
        )


class RawTable:
    """The raw sockets of one stack by protocol (``raw_v4_hashinfo``)."""

    __slots__ = ("by_protocol", "counters", "touched")

    def __init__(self, counters: Counters) -> None:
        self.counters = counters
        self.by_protocol: dict[int, list[RawEndpoint]] = {}
        #: Endpoints that received something since the shell last looked.
        self.touched: list[RawEndpoint] = []

    def add(self, ep: RawEndpoint) -> None:
        self.by_protocol.setdefault(ep.protocol, []).append(ep)

    def remove(self, ep: RawEndpoint) -> None:
        eps = self.by_protocol.get(ep.protocol)
        if eps is not None and ep in eps:
            eps.remove(ep)
            if not eps:
                del self.by_protocol[ep.protocol]

    def deliver(self, src: int, dst: int, proto: int, packet: memoryview) -> bool:
        """Copy ``packet`` (the whole IP datagram) to every matching endpoint.

        Returns whether any endpoint took it, which is what decides whether
        an unknown protocol still earns an ICMP protocol unreachable.
        """
        eps = self.by_protocol.get(proto)
        if not eps:
            return False
        delivered = False
        copy: bytes | None = None
        for ep in eps:
            if not ep.matches(src, dst):
                continue
            if proto == IPPROTO_ICMP and _icmp_filtered(ep.icmp_filter, packet):
                continue
            delivered = True
            if copy is None:
                copy = bytes(packet)
            if ep.push(copy, src):
                self.touched.append(ep)
            else:
                self.counters.drop("raw.rcvbuf")
        return delivered

    def error(self, err: TransportError) -> list[RawEndpoint]:
        """``raw_icmp_error``: an ICMP error about a datagram of ``err.proto`` we sent.

        Every raw socket of that protocol that would have sent it (peer, if
        connected, is the quoted destination; bound address, if any, the
        quoted source) hears of it, as ``raw_err`` decides: with IP_RECVERR
        always; else only a hard error on a connected socket (fragmentation
        needed is hard: PMTU discovery is on). Returns the endpoints whose
        error was set.
        """
        eps = self.by_protocol.get(err.proto)
        if not eps:
            return []
        hard = err.fatal or (
            err.icmp_type == IcmpType.DEST_UNREACH and err.icmp_code == UnreachCode.FRAG_NEEDED
        )
        reported = []
        for ep in eps:
            if not ep.matches(err.dst, err.src):
                continue
            if ep.recverr or (hard and ep.connected):
                ep.error = err.errno
                reported.append(ep)
        return reported

    def take_touched(self) -> list[RawEndpoint]:
        touched, self.touched = self.touched, []
        return touched


def _icmp_filtered(mask: int, packet: memoryview) -> bool:
    """``icmp_filter``: whether the ICMP_FILTER mask drops this ICMP datagram."""
    ihl = (packet[0] & 0xF) << 2
    if len(packet) < ihl + 4:
        return True
    kind = packet[ihl]
    return kind < 32 and bool(mask >> kind & 1)
