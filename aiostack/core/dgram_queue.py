"""The receive queue and pending error shared by raw and ping endpoints.

Both are Linux's plain ``sk_receive_queue`` plus ``sk_err``: a datagram is
queued whole with its source, charged its length plus a fixed overhead
against the receive buffer (Linux charges an skb's truesize), and a full
buffer refuses it (``sock_queue_rcv_skb``). The endpoints declare the
rest of their state; this base class holds the queue once.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

#: Linux charges a queued skb its truesize; a fixed overhead stands in for it.
SKB_OVERHEAD = 256


@dataclass(eq=False, slots=True, kw_only=True)
class DatagramQueue:
    """Base of raw and ping endpoints: the receive queue and the pending error."""

    rcvbuf: int
    #: ``sk_err``: reported once by the next receive or SO_ERROR.
    error: int = 0
    queue: deque[tuple[bytes, int]] = field(default_factory=deque)
    queued: int = 0
    #: ``sk_state == TCP_ESTABLISHED`` (connect()ed), which decides which ICMP errors count.
    connected: bool = False
    #: IP_RECVERR: every ICMP error is reported, not only hard ones on a connected socket.
    recverr: bool = False

    def push(self, datagram: bytes, src: int) -> bool:
        """Queue one datagram from ``src`` unless the receive buffer is full."""
        if self.queued >= self.rcvbuf:
            return False
        self.queue.append((datagram, src))
        self.queued += len(datagram) + SKB_OVERHEAD
        return True

    def pop(self) -> tuple[bytes, int] | None:
        if not self.queue:
            return None
        item = self.queue.popleft()
        self.queued -= len(item[0]) + SKB_OVERHEAD
        return item

    def take_error(self) -> int:
        """``sock_error``: the pending error, cleared."""
        code, self.error = self.error, 0
        return code
