"""Pure wire codecs: bytes in, headers and payload views out, and back.

Nothing here does I/O, reads a clock or imports asyncio. Each module parses a
``memoryview`` of a received frame with precompiled ``struct`` calls into a
small slotted dataclass plus a view of its payload (no copies), and writes
headers into a preallocated buffer with ``emit_into``. Malformed input raises
:class:`aiostack.wire.errors.ParseError` and nothing else, so the shell can
count every drop by its ``reason``.
"""

from aiostack.wire import (
    arp,
    checksum,
    ethernet,
    icmpv4,
    ipv4,
    pcap,
    seqnum,
    tcp,
    udp,
    virtio,
)

__all__ = [
    "arp",
    "checksum",
    "ethernet",
    "icmpv4",
    "ipv4",
    "pcap",
    "seqnum",
    "tcp",
    "udp",
    "virtio",
]
