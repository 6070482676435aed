"""IPv4 reassembly (RFC 791 3.2, RFC 815), with Linux's defences.

Fragments are keyed by (source, destination, protocol, identification) and
kept as a list of ``(start, end, data)`` sorted by ``start``; an arriving
fragment finds its place by bisection, so reassembly costs no per-byte work
beyond the final ``b"".join``. The rules are Linux's (``net/ipv4/ip_fragment.c``
and ``inet_fragment.c``):

- a duplicate (a fragment whose bytes all lie within data we already hold
  contiguously) is ignored, as since Linux 5.1 (which checks against runs of
  consecutive fragments; an exact copy is the common case);
- any other overlap discards the whole datagram (since Linux 4.19; overlaps
  are how "teardrop" style attacks slip data past filters), counted as
  ``IpReasmOverlaps`` and ``IpReasmFails``;
- an empty fragment (nothing left after trimming) discards the datagram,
  as Linux's ``end == offset`` check does;
- a datagram longer than 65535 bytes, or a second "last" fragment that
  disagrees about the end, discards the datagram;
- a non-final fragment whose length is not a multiple of 8 is trimmed;
- all incomplete datagrams together hold at most ``ipfrag_high_thresh``
  bytes: past that, fragments of new datagrams are dropped;
- a datagram still incomplete ``ipfrag_time`` seconds after its first
  fragment arrived is dropped; if its first fragment (offset 0) was seen,
  an ICMP time exceeded (fragment reassembly) goes back to the sender.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from dataclasses import dataclass, field

from aiostack.core.counters import Counters
from aiostack.settings import Settings
from aiostack.wire.ipv4 import FLAG_MF, MAX_PACKET_LEN, Ipv4Header

#: What each fragment costs against ``ipfrag_high_thresh`` beyond its data,
#: standing in for the kernel's per-skb overhead so a flood of tiny
#: fragments cannot hide under the byte cap.
FRAGMENT_OVERHEAD = 256

Key = tuple[int, int, int, int]


@dataclass(slots=True)
class _Datagram:
    created: float
    starts: list[int] = field(default_factory=list)
    pieces: list[tuple[int, int, bytes]] = field(default_factory=list)
    #: Total payload length once the last fragment (MF clear) has arrived.
    length: int | None = None
    received: int = 0
    memory: int = 0
    #: Header bytes of the first fragment plus 8 payload bytes, for ICMP.
    first_header: Ipv4Header | None = None
    first_quote: bytes = b""


@dataclass(slots=True)
class Reassembled:
    header: Ipv4Header
    payload: bytes


class Reassembler:
    """See the module docstring. Pure: ``now`` in seconds comes in."""

    def __init__(self, settings: Settings, counters: Counters) -> None:
        self.settings = settings
        self.counters = counters
        # Insertion order is creation order, and every datagram has the same
        # lifetime, so the first entry is always the next to expire.
        self._queues: OrderedDict[Key, _Datagram] = OrderedDict()
        self.memory = 0
        #: Quotes (first-fragment header + 8 bytes) owed an ICMP time exceeded,
        #: with the header they came with; drained by the caller.
        self.timed_out: list[tuple[Ipv4Header, bytes]] = []

    def __len__(self) -> int:
        return len(self._queues)

    def add(
        self, now: float, header: Ipv4Header, payload: memoryview, raw: memoryview
    ) -> Reassembled | None:
        """Add one fragment; return the whole datagram when this completes it.

        ``raw`` is the fragment as received (header included), kept only
        when it is the first fragment, to quote in an ICMP time exceeded.
        """
        counters = self.counters
        counters.IpReasmReqds += 1
        key = (header.src, header.dst, header.proto, header.ident)
        queue = self._queues.get(key)
        if queue is None:
            if self.memory >= self.settings.ipfrag_high_thresh:
                counters.IpReasmFails += 1
                counters.drop("ipv4.reassembly_memory")
                return None
            queue = _Datagram(now)
            self._queues[key] = queue

        start = header.frag_offset
        end = start + len(payload)
        last = not header.frag & FLAG_MF
        if not last and end & 7:
            end &= ~7
        if end > MAX_PACKET_LEN - header.header_len:
            self._discard(key, "ipv4.reassembly_too_long")
            return None
        if last:
            if (queue.length is not None and end != queue.length) or end < max(
                (p[1] for p in queue.pieces), default=0
            ):
                self._discard(key, "ipv4.reassembly_bad_end")
                return None
            queue.length = end
        elif queue.length is not None and end > queue.length:
            self._discard(key, "ipv4.reassembly_bad_end")
            return None
        if end <= start:
            self._discard(key, "ipv4.reassembly_empty")
            return None

        pieces = queue.pieces
        index = bisect.bisect_right(queue.starts, start)
        before = pieces[index - 1] if index > 0 else None
        after = pieces[index] if index < len(pieces) else None
        if before is not None and before[1] > start:
            # Starts inside data we hold: a duplicate if it also ends inside it.
            covered, following = before[1], index
            while covered < end and following < len(pieces) and pieces[following][0] == covered:
                covered = pieces[following][1]
                following += 1
            if covered >= end:
                counters.drop("ipv4.reassembly_duplicate")
                return None
        if (before is not None and before[1] > start) or (after is not None and after[0] < end):
            counters.IpReasmOverlaps += 1
            self._discard(key, "ipv4.reassembly_overlap")
            return None

        data = bytes(payload[: end - start])
        queue.starts.insert(index, start)
        queue.pieces.insert(index, (start, end, data))
        queue.received += end - start
        cost = len(data) + FRAGMENT_OVERHEAD
        queue.memory += cost
        self.memory += cost
        if start == 0:
            queue.first_header = header
            queue.first_quote = bytes(raw[: header.header_len + 8])

        if queue.length is None or queue.received != queue.length or queue.first_header is None:
            return None
        del self._queues[key]
        self.memory -= queue.memory
        first = queue.first_header
        whole = Ipv4Header(
            first.tos,
            first.header_len + queue.length,
            first.ident,
            0,
            first.ttl,
            first.proto,
            first.checksum,
            first.src,
            first.dst,
            first.options,
        )
        counters.IpReasmOKs += 1
        return Reassembled(whole, b"".join(piece[2] for piece in queue.pieces))

    def poll_at(self) -> float | None:
        if not self._queues:
            return None
        oldest = next(iter(self._queues.values()))
        return oldest.created + self.settings.ipfrag_time

    def poll(self, now: float) -> None:
        """Expire datagrams older than ``ipfrag_time``."""
        limit = now - self.settings.ipfrag_time
        while self._queues:
            key, queue = next(iter(self._queues.items()))
            if queue.created > limit:
                break
            self.counters.IpReasmTimeout += 1
            self._discard(key, "ipv4.reassembly_timeout")
            if queue.first_header is not None:
                self.timed_out.append((queue.first_header, queue.first_quote))

    def _discard(self, key: Key, reason: str) -> None:
        queue = self._queues.pop(key)
        self.memory -= queue.memory
        self.counters.IpReasmFails += 1
        self.counters.drop(reason)
