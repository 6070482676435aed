"""Urgent data, as Linux keeps it (RFC 9293 3.8.5 with RFC 6093's semantics).

The urgent pointer points one past the urgent byte (RFC 6093 3: what
every stack does; Linux's ``tcp_stdurg`` default of 0). Linux keeps one
out-of-band byte per connection: ``urg_seq`` is the sequence number of the
last urgent byte announced and ``urg_data`` its state, as in ``tcp.h``:
:data:`URG_NOTYET` (announced, not arrived), :data:`URG_VALID` with the byte
in the low 8 bits (arrived, not read), :data:`URG_READ` (taken with
``MSG_OOB``), 0 (none, or already passed by the reader).

The byte stays in the receive buffer, as in Linux; the readers here stop
at the mark (``tcp_recvmsg`` never reads across it in one call) and, when
``SO_OOBINLINE`` is off, step over the byte at the mark. A later urgent
pointer replaces an unread byte (``tcp_check_urg``).

``copied_seq`` is not kept: it is ``rcv_nxt`` minus the bytes readable.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from aiostack.core.tcp.state import EV_URGENT
from aiostack.errors import os_error
from aiostack.wire.seqnum import seq_add, seq_diff, seq_gt, seq_lt, seq_sub

if TYPE_CHECKING:
    from aiostack.core.tcp.connection import TcpConnection

__all__ = [
    "URG_NOTYET",
    "URG_READ",
    "URG_VALID",
    "at_mark",
    "check_urg",
    "copied_seq",
    "inq",
    "limit",
    "read_done",
    "recv_urg",
    "skip_mark",
    "urg",
]

URG_VALID = 0x100
URG_NOTYET = 0x200
URG_READ = 0x400


def copied_seq(conn: TcpConnection) -> int:
    """Sequence number of the next byte the application reads (Linux ``copied_seq``)."""
    return seq_sub(conn.rcvbuf.rcv_nxt, len(conn.rcvbuf))


def urg(conn: TcpConnection, seq: int, urg_ptr: int | None, payload: memoryview | bytes) -> None:
    """Linux ``tcp_urg``: note a new urgent pointer; pick up the urgent byte when it arrives.

    ``urg_ptr`` is the header's pointer when URG is set, else None; ``seq``
    the sequence number of the first payload byte. Runs before the text is
    queued (RFC 9293 step six comes before step seven).
    """
    if urg_ptr is not None:
        check_urg(conn, seq, urg_ptr)
    if conn.urg_data == URG_NOTYET:
        off = seq_sub(conn.urg_seq, seq)
        if 0 <= off < len(payload):
            conn.urg_data = URG_VALID | payload[off]


def check_urg(conn: TcpConnection, seq: int, urg_ptr: int) -> None:
    """Linux ``tcp_check_urg``: a pointer beyond anything seen sets a new mark."""
    ptr = seq_add(seq, urg_ptr - 1 if urg_ptr else 0)
    rcv_nxt = conn.rcvbuf.rcv_nxt
    copied = copied_seq(conn)
    if seq_gt(copied, ptr) or seq_lt(ptr, rcv_nxt):
        return  # already read, or not a new pointer (no replay)
    if conn.urg_data and not seq_gt(ptr, conn.urg_seq):
        return  # a duplicate or older pointer
    if conn.urg_seq == copied and conn.urg_data and not conn.urginline and copied != rcv_nxt:
        # The reader sits at the old mark with the old byte not taken in
        # line: step over it, or it would turn up in the stream.
        conn.rcvbuf.read(1)
    conn.urg_data = URG_NOTYET
    conn.urg_seq = ptr
    conn.events |= EV_URGENT  # sk_send_sigurg: tell the owner (SIGURG)


def _hole(conn: TcpConnection) -> bool:
    """The reader is at an urgent byte that is out of line and in the buffer."""
    return (
        bool(conn.urg_data)
        and not conn.urginline
        and conn.urg_data != URG_NOTYET
        and conn.urg_seq == copied_seq(conn)
        and len(conn.rcvbuf) > 0
    )


def skip_mark(conn: TcpConnection, *, peek: bool) -> int:
    """Step over the out-of-line urgent byte at the read position; return 1 if there is one.

    Reading consumes it (``tcp_recvmsg``'s ``urg_hole``); a peek only
    reports it, so the caller peeks one byte further and drops the first.
    """
    if not _hole(conn):
        return 0
    if not peek:
        conn.rcvbuf.read(1)
        read_done(conn)
    return 1


def limit(conn: TcpConnection, n: int, skipped: int) -> int:
    """Clamp a read of ``n`` bytes (negative: all) so it stops at the mark."""
    if not conn.urg_data:
        return n
    off = seq_diff(conn.urg_seq, seq_add(copied_seq(conn), skipped))
    if off > 0 and (n < 0 or off < n):
        return off
    return n


def read_done(conn: TcpConnection) -> None:
    """Once the reader is past the mark the urgent state ends (``tcp_recvmsg``'s ``skip_copy``)."""
    if conn.urg_data and seq_gt(copied_seq(conn), conn.urg_seq):
        conn.urg_data = 0


def readable_len(conn: TcpConnection) -> int:
    """Bytes a ``recv`` could take now, the out-of-line urgent byte at the mark not counted."""
    n = len(conn.rcvbuf)
    return n - 1 if n and conn.urg_data and _hole(conn) else n


def inq(conn: TcpConnection) -> int:
    """Linux ``tcp_inq`` (SIOCINQ): up to the mark while an out-of-line byte is queued."""
    n = len(conn.rcvbuf)
    if not conn.urg_data or conn.urginline:
        return n
    copied = copied_seq(conn)
    if seq_lt(conn.urg_seq, copied) or not seq_lt(conn.urg_seq, conn.rcvbuf.rcv_nxt):
        return n
    return seq_sub(conn.urg_seq, copied)


def at_mark(conn: TcpConnection) -> bool:
    """SIOCATMARK: the next byte to read is the urgent byte (``tcp_ioctl``)."""
    return bool(conn.urg_data) and conn.urg_seq == copied_seq(conn)


def recv_urg(conn: TcpConnection, bufsize: int, *, peek: bool, closed: bool) -> bytes:
    """Linux ``tcp_recv_urg``: the out-of-band byte for ``recv(MSG_OOB)``; never waits.

    EINVAL with ``SO_OOBINLINE``, with no urgent data or once it was read;
    ENOTCONN when closed without the peer's FIN; the byte (kept by a peek);
    ``b""`` at EOF; EAGAIN while the pointer is known but the byte is not.
    """
    data = conn.urg_data
    if conn.urginline or not data or data == URG_READ:
        raise os_error(errno.EINVAL)
    if closed and not conn.fin_received:
        raise os_error(errno.ENOTCONN)
    if data & URG_VALID:
        if not peek:
            conn.urg_data = URG_READ
        return bytes((data & 0xFF,)) if bufsize > 0 else b""
    if closed or conn.fin_received or conn.shut_rd:
        return b""
    raise os_error(errno.EAGAIN)
