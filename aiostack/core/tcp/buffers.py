"""TCP's byte buffers: what is sent and unacknowledged, what has arrived, and the window.

Three pure data structures for the control block, none of which knows about
segments, flags or timers:

:class:`SendBuffer`
    The bytes the application wrote that the peer has not acknowledged yet
    (Linux's write queue plus retransmit queue), bounded like ``SO_SNDBUF``
    and indexed by sequence number from ``snd_una``.

:class:`ReceiveBuffer` (with its :class:`Assembler`)
    In-order bytes waiting for the application, plus out-of-order segments
    held until the hole before them fills; it keeps ``rcv_nxt``, answers with
    what a SACK option (RFC 2018) and a D-SACK block (RFC 2883) should say,
    and is bounded by the receive buffer.

:class:`ReceiveWindow`
    The window to advertise, computed as Linux's ``__tcp_select_window`` and
    ``tcp_select_window`` do: receiver-side silly-window avoidance
    (RFC 1122 4.2.3.3), rounding for the window scale (RFC 7323), and never
    moving the right edge back.

How they keep DESIGN.md's principle 4 ("bytes are touched once"):

- Nothing here loops over bytes. Data is held as the ``bytes`` objects (or
  read-only ``memoryview`` slices of received frames) it arrived in, found by
  bisection over sorted offsets, and copied only where a copy is the point:
  the application's bytes into the send buffer (Linux copies from user space
  too; an immutable ``bytes`` write that fits is kept without a copy), and
  received bytes out to the application in :meth:`ReceiveBuffer.read`.
- Positions inside each structure are plain unbounded integers (stream
  offsets), never 32-bit sequence numbers. The only modular arithmetic is at
  the edge, where a sequence number is turned into an offset with
  :func:`~aiostack.wire.seqnum.seq_diff` against the one sequence number the
  structure tracks (``snd_una`` or ``rcv_nxt``). Sorting and bisection then
  cannot go wrong at the 2**32 wrap, and advancing the left edge does not
  rewrite every stored key.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from itertools import islice
from typing import NamedTuple

from aiostack.core.tcp import rmem as _rmem
from aiostack.core.tcp.rmem import (
    TCP_DEFAULT_SCALING_RATIO,
    TCP_RMEM_TO_WIN_SCALE,
    measured_ratio,
    skb_memory,
    skb_truesize,
    win_from_space,
)
from aiostack.wire.seqnum import SEQ_MASK, seq_diff

# seq_diff, inlined on the per-segment paths (a call costs as much as the rest).
_HALF = 1 << 31

#: What the buffers accept as data. A ``bytearray`` is copied on entry (the
#: caller may reuse it); ``bytes`` and ``memoryview`` are kept as they are, so
#: a view passed in must not be modified afterwards (received frames are not).
BytesLike = bytes | bytearray | memoryview

#: A stored run of data.
Piece = bytes | memoryview

# ---------------------------------------------------------------------------
# Send side
# ---------------------------------------------------------------------------

#: Writes shorter than this are appended to an open ``bytearray`` chunk rather
#: than kept as chunks of their own, so an application writing a few bytes at
#: a time does not leave one Python object (and one join per segment) per
#: write. Segments cut from such a chunk are ``bytes`` copies (see
#: :meth:`SendBuffer.peek`); below one MSS a copy costs what a join would.
COALESCE_BELOW = 2048
#: An open ``bytearray`` chunk stops growing at this size.
COALESCE_LIMIT = 64 * 1024


class SendBuffer:
    """Unacknowledged and unsent application bytes, indexed by sequence number.

    The buffer starts at ``snd_una``: the byte at ``snd_una`` is the oldest
    one not yet acknowledged, and ``len(buf)`` bytes follow it (sent and
    unsent alike; where ``snd_nxt`` is, is the connection's business, see
    :meth:`unsent`). The SYN and FIN occupy sequence numbers but no bytes
    here: the caller keeps their accounting and never passes :meth:`ack` a
    number beyond :attr:`end_seq`.

    Storage is a list of chunks, each the unit the application wrote, with
    the stream offset where each starts; a lookup is a bisection (with a
    hint that makes sequential segmentation O(1)), acknowledged chunks are
    dropped from the front lazily, so streaming costs amortised O(1) per
    segment however large the buffer is. Large writes are immutable ``bytes``
    and :meth:`peek` hands out ``memoryview`` slices of them: no copy until
    the segment's payload is written into the outgoing frame. Small writes
    are gathered into an open ``bytearray`` chunk instead; slices of that come
    back as ``bytes`` copies, because a live view would forbid appending to
    it (CPython raises ``BufferError`` on resizing an exported bytearray) and
    a segment may be held (queued, or kept for a later retransmission) for as
    long as the connection likes.

    Memory is freed a chunk at a time: a chunk stays until its last byte is
    acknowledged. Capacity counts logical bytes (``len``), so the memory held
    can exceed ``capacity`` by at most the acknowledged prefix of the oldest
    chunk, i.e. by less than one write.
    """

    __slots__ = ("_base", "_chunks", "_end", "_first", "_hint", "_starts", "_una", "capacity")

    def __init__(self, capacity: int, snd_una: int = 0) -> None:
        #: Most bytes :meth:`write` lets the buffer hold (``SO_SNDBUF``); may be
        #: changed at any time, shrinking never discards data already held.
        self.capacity = capacity
        self._una = snd_una & SEQ_MASK
        # Stream offsets: _base is the offset of snd_una, _end of the byte
        # after the last one written. They only grow.
        self._base = 0
        self._end = 0
        self._chunks: list[bytes | bytearray] = []
        self._starts: list[int] = []
        # Chunks before _first are acknowledged and only wait for compaction.
        self._first = 0
        # Index of the chunk the last peek ended in (sequential access hint).
        self._hint = 0

    def __len__(self) -> int:
        """Bytes held: written and not yet acknowledged (Linux's SIOCOUTQ)."""
        return self._end - self._base

    @property
    def snd_una(self) -> int:
        """Sequence number of the first byte held."""
        return self._una

    @property
    def end_seq(self) -> int:
        """Sequence number just after the last byte written (Linux's ``write_seq``)."""
        # output.transmit computes this in line (per poll): keep the two equal.
        return (self._una + self._end - self._base) & SEQ_MASK

    @property
    def free(self) -> int:
        """Bytes :meth:`write` would accept now."""
        return max(self.capacity - (self._end - self._base), 0)

    def rebase(self, snd_una: int) -> None:
        """Set the sequence number of the next byte written; only while empty.

        For a socket created before its initial sequence number is chosen.
        """
        if self._end != self._base:
            raise ValueError("rebase of a non-empty send buffer")
        self._una = snd_una & SEQ_MASK

    def write(self, data: BytesLike) -> int:
        """Append as much of ``data`` as fits; return how many bytes were taken.

        A partial count means the buffer is full (``send`` then reports what it
        took, or blocks, as Linux's ``tcp_sendmsg`` does); 0 means no room.
        """
        room = self.capacity - (self._end - self._base)
        if room <= 0:
            return 0
        if type(data) is bytes:
            size = len(data)
            view = None
        else:
            view = memoryview(data)
            if view.ndim != 1 or view.itemsize != 1:
                view = view.cast("B")
            size = view.nbytes
        n = size if size <= room else room
        if n == 0:
            return 0
        chunks = self._chunks
        if n < COALESCE_BELOW:
            tail = chunks[-1] if len(chunks) > self._first else None
            piece = (memoryview(data) if view is None else view)[:n]
            if type(tail) is bytearray and len(tail) + n <= COALESCE_LIMIT:
                tail += piece
            else:
                chunks.append(bytearray(piece))
                self._starts.append(self._end)
            piece.release()
        else:
            if view is None and n == size:
                chunk = data  # immutable and taken whole: kept without a copy
            else:
                chunk = bytes((memoryview(data) if view is None else view)[:n])
            assert isinstance(chunk, bytes)
            chunks.append(chunk)
            self._starts.append(self._end)
        self._end += n
        return n

    def unsent(self, snd_nxt: int) -> int:
        """Bytes held at and after ``snd_nxt`` (not sent yet)."""
        off = seq_diff(snd_nxt, self._una)
        size = self._end - self._base
        if off < 0 or off > size:
            raise ValueError(f"snd_nxt {snd_nxt} outside the send buffer")
        return size - off

    def peek(self, seq: int, max_len: int) -> bytes | memoryview:
        """Up to ``max_len`` bytes starting at ``seq``, to become a segment's payload.

        ``seq`` must lie within the buffer (``snd_una`` up to :attr:`end_seq`;
        at the end the answer is empty). The result is a read-only
        ``memoryview`` when the range lies in one large chunk, else ``bytes``;
        either stays valid and unchanged after :meth:`ack` and later writes.
        """
        off = ((seq - self._una + _HALF) & SEQ_MASK) - _HALF
        size = self._end - self._base
        if off < 0 or off > size:
            raise ValueError(f"seq {seq} outside the send buffer")
        n = size - off
        if max_len < n:
            n = max_len
        if n <= 0:
            return b""
        pos = self._base + off
        chunks = self._chunks
        i = self._hint
        # The hint: segments are usually cut one after another from one chunk.
        if i < self._first or i >= len(chunks) or not 0 <= pos - self._starts[i] < len(chunks[i]):
            i = self._find(pos)
        chunk = chunks[i]
        at = pos - self._starts[i]
        clen = len(chunk)
        if at + n <= clen:
            self._hint = i
            if type(chunk) is bytes:
                if at == 0 and n == clen:
                    return chunk
                return memoryview(chunk)[at : at + n]
            with memoryview(chunk) as whole, whole[at : at + n] as part:
                return bytes(part)
        # The range spans chunks: one join (the copy a segment needs anyway).
        views = [memoryview(chunk)[at:]]
        need = n - (clen - at)
        try:
            while need > 0:
                i += 1
                chunk = chunks[i]
                clen = len(chunk)
                views.append(memoryview(chunk)[:need] if need < clen else memoryview(chunk))
                need -= clen
            self._hint = i
            return b"".join(views)
        finally:
            for v in views:
                v.release()

    def peek_next(self, seq: int, n: int) -> bytes | memoryview:
        """:meth:`peek` for ``n`` (> 0) bytes known to be held from ``seq`` on.

        The fast path's full segment (:mod:`.fastpath`): when the range lies
        in the chunk the last peek ended in and that chunk is ``bytes``, the
        answer comes from the hint alone; otherwise it is :meth:`peek`'s.
        Either way it is what ``peek(seq, n)`` returns.
        """
        i = self._hint
        chunks = self._chunks
        if self._first <= i < len(chunks):
            chunk = chunks[i]
            at = self._base + ((seq - self._una) & SEQ_MASK) - self._starts[i]
            if at >= 0 and at + n <= len(chunk) and type(chunk) is bytes:
                if at == 0 and n == len(chunk):
                    return chunk
                return memoryview(chunk)[at : at + n]
        return self.peek(seq, n)

    def _find(self, pos: int) -> int:
        """Index of the live chunk holding stream offset ``pos``."""
        starts = self._starts
        h = self._hint
        if self._first <= h < len(starts):
            s = starts[h]
            if s <= pos:
                if pos < s + len(self._chunks[h]):
                    return h
                h += 1
                if h < len(starts) and pos < starts[h] + len(self._chunks[h]):
                    return h
        return bisect_right(starts, pos, self._first) - 1

    def ack(self, new_una: int) -> int:
        """Acknowledge up to ``new_una``; return the bytes freed (0 for an old ACK).

        Raises ``ValueError`` beyond :attr:`end_seq`: the caller takes the FIN
        (and SYN) out of the acknowledged range first.
        """
        off = ((new_una - self._una + _HALF) & SEQ_MASK) - _HALF
        if off <= 0:
            return 0
        if off > self._end - self._base:
            raise ValueError(f"ack {new_una} beyond the data written")
        self._base += off
        self._una = new_una & SEQ_MASK
        chunks = self._chunks
        if self._base == self._end:
            # Everything acknowledged: start afresh (keeps the lists short).
            chunks.clear()
            self._starts.clear()
            self._first = self._hint = 0
            return off
        starts = self._starts
        i = self._first
        base = self._base
        while starts[i] + len(chunks[i]) <= base:
            chunks[i] = b""  # release the memory now; the slot goes at compaction
            i += 1
        self._first = i
        if i >= 32 and 2 * i >= len(chunks):
            del chunks[:i]
            del starts[:i]
            self._hint = max(self._hint - i, 0)
            self._first = 0
        return off


# ---------------------------------------------------------------------------
# Receive side
# ---------------------------------------------------------------------------

#: How many out-of-order blocks the receiver remembers in recency order (RFC
#: 2018 asks for the most recent first, then those reported recently); more
#: than the 4 that fit in an option, so merged blocks leave no gap.
RECENT_BLOCKS = 8


class Assembler:
    """Out-of-order data: non-overlapping pieces and the blocks they form.

    Keys are unbounded stream offsets (see the module docstring). Two sorted
    structures are kept in step:

    - pieces: ``(start, data)`` runs of received bytes, never overlapping; an
      arriving segment only adds the parts that fill gaps, as zero-copy
      slices of itself, and what it repeats is reported as duplicate;
    - blocks: maximal contiguous ranges ``[start, end)``, what a SACK option
      describes, merged as pieces join up.

    Adding a segment costs two bisections plus work proportional to the
    pieces it overlaps; nothing is per byte. The recency list remembers which
    blocks received data most recently, for RFC 2018's ordering.
    """

    __slots__ = ("_bends", "_bstarts", "_pieces", "_recent", "_starts", "size")

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._pieces: list[Piece] = []
        self._bstarts: list[int] = []
        self._bends: list[int] = []
        # Offsets of the segments that arrived most recently, one per block,
        # newest first.
        self._recent: list[int] = []
        #: Bytes held.
        self.size = 0

    def __bool__(self) -> bool:
        return bool(self._starts)

    @property
    def piece_count(self) -> int:
        """Stored runs (the analogue of Linux's out-of-order skbs)."""
        return len(self._starts)

    def blocks(self) -> list[tuple[int, int]]:
        """All blocks ``(start, end)`` in ascending order."""
        return list(zip(self._bstarts, self._bends, strict=True))

    def add(self, start: int, data: Piece, max_pieces: int) -> tuple[int, int, int]:
        """Store ``data`` at offset ``start``; return ``(stored, dup_start, dup_end)``.

        ``stored`` counts bytes new to the assembler. ``[dup_start, dup_end)``
        is the first contiguous range of ``data`` that was already held (empty
        when nothing was): what RFC 2883 reports in a D-SACK block. When the
        new bytes would raise the number of pieces above ``max_pieces``,
        nothing is stored and ``stored`` is minus the count of new bytes that
        were refused.
        """
        end = start + len(data)
        starts = self._starts
        pieces = self._pieces
        lo = bisect_right(starts, start) - 1
        if lo < 0 or starts[lo] + len(pieces[lo]) <= start:
            lo += 1
        hi = bisect_left(starts, end, lo)
        dup_lo = dup_hi = 0
        if lo == hi:
            # Overlaps nothing: kept whole, as it came.
            if len(starts) >= max_pieces:
                return start - end, 0, 0
            starts.insert(lo, start)
            pieces.insert(lo, data)
            stored = end - start
        else:
            # Walk the pieces it overlaps: gaps between them are new (kept as
            # slices of data), the overlaps are repeats.
            view = data if isinstance(data, memoryview) else memoryview(data)
            new_starts: list[int] = []
            new_pieces: list[Piece] = []
            stored = gaps = 0
            cur = start
            for k in range(lo, hi):
                ps = starts[k]
                piece = pieces[k]
                pe = ps + len(piece)
                if ps > cur:
                    new_starts.append(cur)
                    new_pieces.append(view[cur - start : ps - start])
                    stored += ps - cur
                    gaps += 1
                    cur = ps
                d_hi = pe if pe < end else end
                if d_hi > cur:
                    if dup_hi == dup_lo:
                        dup_lo, dup_hi = cur, d_hi
                    elif cur == dup_hi:
                        dup_hi = d_hi
                new_starts.append(ps)
                new_pieces.append(piece)
                if pe > cur:
                    cur = pe
            if cur < end:
                new_starts.append(cur)
                new_pieces.append(view[cur - start :])
                stored += end - cur
                gaps += 1
            if gaps:
                if len(starts) + gaps > max_pieces:
                    return -stored, dup_lo, dup_hi
                starts[lo:hi] = new_starts
                pieces[lo:hi] = new_pieces
        self.size += stored
        # Merge [start, end) into the blocks (adjacent blocks join).
        bs = self._bstarts
        be = self._bends
        i = bisect_left(be, start)
        j = bisect_right(bs, end, i)
        recent = self._recent
        if i == j:
            # A block of its own: no other block's marker can be inside it.
            bs.insert(i, start)
            be.insert(i, end)
        else:
            ms = bs[i] if bs[i] < start else start
            me = be[j - 1] if be[j - 1] > end else end
            if j == i + 1:
                bs[i] = ms
                be[i] = me
            else:
                del bs[i + 1 : j]
                del be[i + 1 : j]
                bs[i] = ms
                be[i] = me
            # The blocks merged into this one give up their markers.
            if recent and ms <= recent[0] < me and j == i + 1:
                del recent[0]  # the usual case: the newest block grew
            else:
                recent = [m for m in recent if not ms <= m < me]
                self._recent = recent
        recent.insert(0, start)
        if len(recent) > RECENT_BLOCKS:
            del recent[RECENT_BLOCKS:]
        return stored, dup_lo, dup_hi

    def pop_front(self, at: int) -> tuple[list[Piece], int]:
        """Remove and return the first block's pieces if it starts at ``at``.

        Returns ``(pieces, end)``; ``([], at)`` when the first block starts
        later (a hole remains). Called when ``rcv_nxt`` reaches ``at``.
        """
        bs = self._bstarts
        if not bs or bs[0] != at:
            return [], at
        end = self._bends[0]
        del bs[0]
        del self._bends[0]
        k = bisect_left(self._starts, end)
        out = self._pieces[:k]
        del self._pieces[:k]
        del self._starts[:k]
        self.size -= end - at
        self._recent = [m for m in self._recent if m >= end]
        return out, end

    def recent_blocks(self, limit: int) -> list[tuple[int, int]]:
        """Up to ``limit`` blocks, the one that received data most recently first.

        RFC 2018 section 4: the first block reports the segment that triggered
        the ACK, the others repeat the most recently reported ones. Blocks
        beyond the recency list follow in ascending order, so that as many
        distinct blocks as fit are reported.
        """
        if limit <= 0 or not self._bstarts:
            return []
        bs = self._bstarts
        be = self._bends
        out: list[tuple[int, int]] = []
        for m in self._recent:
            j = bisect_right(bs, m) - 1
            out.append((bs[j], be[j]))
            if len(out) >= limit:
                return out
        if len(out) < len(bs):
            seen = {s for s, _ in out}
            for s, e in zip(bs, be, strict=True):
                if s not in seen:
                    out.append((s, e))
                    if len(out) >= limit:
                        break
        return out


class InsertResult(NamedTuple):
    """What one arriving segment did to a :class:`ReceiveBuffer`."""

    #: Bytes that became readable in order (how far ``rcv_nxt`` advanced).
    delivered: int
    #: New bytes stored out of order, beyond a hole.
    queued: int
    #: ``(start_seq, end_seq)`` of the first contiguous range of the segment
    #: that had already been received (RFC 2883 D-SACK), or None.
    dsack: tuple[int, int] | None
    #: Bytes thrown away: beyond the buffer's budget, or refused because the
    #: out-of-order piece limit was reached. The caller counts them and ACKs.
    dropped: int


_NOTHING = InsertResult(0, 0, None, 0)
# NamedTuple's generated __new__ costs a Python frame; on the per-segment path
# the tuple is built directly (half the cost).
_tuple_new = tuple.__new__


class ReceiveBuffer:
    """Received bytes: in order for the application, and out of order in an :class:`Assembler`.

    The buffer owns ``rcv_nxt`` for data (the caller adds one for a FIN it
    has processed). :meth:`insert` takes any segment payload at any sequence
    number and sorts it out:

    - bytes before ``rcv_nxt`` are duplicates: trimmed, reported for D-SACK;
    - bytes at ``rcv_nxt`` become readable, together with any out-of-order
      blocks they join up with;
    - bytes beyond a hole are stored out of order (repeats trimmed, reported);
    - bytes at or beyond the budget edge ``rcv_nxt + capacity - len(self)``
      are dropped and reported (``dropped``).

    The budget edge is measured in sequence space from the first unread byte,
    so everything held, readable and out of order together, never exceeds
    ``capacity``, and the whole window may hold out-of-order data (no fixed
    fraction is reserved). Whether a segment is within the advertised window
    is the connection's test (RFC 9293 3.10.7.4), done before ``insert``; the
    budget is the memory bound behind it. A window advertised from
    :attr:`free_space` with :class:`ReceiveWindow` stays within the budget
    except for the up to ``2**wscale - 1`` bytes Linux's rounding adds; a
    caller that wants those accepted too gives ``capacity`` that much slack.

    Each out-of-order piece is a Python object, so their number is capped as
    well (``max_ooo_pieces``; Linux charges each skb's ``truesize`` for the
    same reason): past it, a segment that would add pieces is dropped. In-order
    data is never refused by that cap.
    """

    __slots__ = (
        "_head",
        "_nxt",
        "_nxt_abs",
        "_ooo",
        "_ooo_rmem",
        "_ready",
        "_ready_len",
        "_ready_ts",
        "_tail_room",
        "_ts_len",
        "_ts_room",
        "_ts_val",
        "advmss",
        "capacity",
        "dsack",
        "header_len",
        "limit",
        "max_ooo_pieces",
        "ratio_mss",
        "rcvbuf",
        "rmem",
        "scaling_ratio",
        "skb_model",
        "window",
    )

    def __init__(
        self,
        capacity: int,
        rcv_nxt: int = 0,
        *,
        max_ooo_pieces: int | None = None,
        rcvbuf: int | None = None,
    ) -> None:
        # Memory accounting (see :mod:`.rmem`). With ``rcvbuf`` (a connection's
        # ``sk_rcvbuf``) each segment costs its modelled skb ``truesize`` and
        # window bytes are ``rcvbuf`` scaled by ``scaling_ratio``, as Linux's
        # ``tcp_space``; ``capacity`` is then ignored and derived. Without,
        # the buffer counts payload bytes against ``capacity`` (ratio 1:1).
        self.skb_model = rcvbuf is not None
        #: ``sk_rcvbuf``: memory the buffer may use (truesize bytes).
        self.rcvbuf = rcvbuf if rcvbuf is not None else capacity
        #: ``scaling_ratio`` (window bytes per 256 buffer bytes).
        self.scaling_ratio = TCP_DEFAULT_SCALING_RATIO if rcvbuf is not None else 256
        #: ``sk_rmem_alloc``: truesize of the segments held, until fully read.
        self.rmem = 0
        #: Linux's ``rcv_mss`` as ``tcp_measure_rcv_mss`` keeps it for the
        #: ratio (a longer segment measures again), and ``advmss`` caps it.
        self.ratio_mss = 536
        self.advmss = 65535
        #: IP and TCP header bytes of a received segment (for its truesize).
        self.header_len = 40
        #: Window bytes the whole buffer gives (``tcp_full_space``); may change.
        self.capacity = win_from_space(self.rcvbuf, self.scaling_ratio)
        #: Payload bytes held at most (the budget edge): ``sk_rcvbuf``
        #: (Linux collapses queued skbs before it drops in-window data).
        self.limit = self.rcvbuf
        # truesize of each _ready piece, and of the out-of-order data; the
        # last length charged and its truesize (segments repeat their size).
        self._ready_ts: list[int] = []
        self._ooo_rmem = 0
        self._ts_len = 0
        self._ts_val = 0
        self._ts_room = 0
        # Tail room of the newest readable segment's skb (tcp_try_coalesce).
        self._tail_room = 0
        #: The connection's :class:`ReceiveWindow`, told when the ratio moves
        #: its clamp (``tcp_measure_rcv_mss`` -> ``tcp_set_window_clamp``).
        self.window: ReceiveWindow | None = None
        #: Out-of-order pieces allowed; default: one per 256 bytes of capacity.
        self.max_ooo_pieces = max(64, capacity // 256) if max_ooo_pieces is None else max_ooo_pieces
        #: Pending D-SACK range ``(start_seq, end_seq)`` for the next ACK, set
        #: by :meth:`insert` (the latest duplicate wins, as in Linux) and taken
        #: by :meth:`ack_blocks`.
        self.dsack: tuple[int, int] | None = None
        self._nxt = rcv_nxt & SEQ_MASK
        self._nxt_abs = 0
        # Readable pieces in order. A list, not a deque: an empty deque costs
        # 600 bytes per connection, and reads drop consumed pieces in one
        # slice deletion (see _consume), so the list never shifts per piece.
        self._ready: list[Piece] = []
        self._ready_len = 0
        # Bytes of _ready[0] already read.
        self._head = 0
        # The out-of-order assembler exists only while a hole is open (created
        # by the first segment beyond one, dropped when the hole fills): most
        # connections never need one, and it is five lists.
        self._ooo: Assembler | None = None

    def __len__(self) -> int:
        """Bytes readable in order (Linux's SIOCINQ)."""
        return self._ready_len

    @property
    def rcv_nxt(self) -> int:
        """Sequence number of the next byte expected in order."""
        return self._nxt

    @property
    def out_of_order_bytes(self) -> int:
        """Bytes held beyond a hole."""
        return self._ooo.size if self._ooo is not None else 0

    @property
    def has_out_of_order(self) -> bool:
        """Whether a hole is open (Linux sends ACKs at once while it is)."""
        # The per-segment paths in output.py and input.py test ``_ooo`` in
        # line, and output.build computes free_space in line: keep them equal.
        return self._ooo is not None

    @property
    def free_space(self) -> int:
        """Window bytes the memory not in use gives (Linux's ``tcp_space``).

        ``(rcvbuf - rmem) * scaling_ratio >> 8``: without the skb model, the
        capacity not taken by readable or out-of-order bytes. Never negative.
        """
        free = ((self.rcvbuf - self.rmem) * self.scaling_ratio) >> 8
        return free if free > 0 else 0

    def set_rcvbuf(self, rcvbuf: int) -> None:
        """A new ``sk_rcvbuf`` (auto-tuning, ``SO_RCVBUF``): capacity and budget follow."""
        self.rcvbuf = rcvbuf
        self.limit = rcvbuf if self.skb_model else self.limit
        self.capacity = win_from_space(rcvbuf, self.scaling_ratio)

    def _charge(self, n: int) -> int:
        """truesize of an ``n``-byte segment (remembered for the next of the same size).

        Also ``tcp_measure_rcv_mss``'s ratio: a segment longer than
        ``ratio_mss`` sets ``scaling_ratio`` to its ``len / truesize``.
        """
        if self.skb_model:
            ts, self._ts_room = skb_memory(n + self.header_len)
        else:
            ts = n
        self._ts_len = n
        self._ts_val = ts
        return ts

    def _measure(self, n: int, ts: int) -> None:
        """``tcp_measure_rcv_mss`` for a segment longer than ``ratio_mss``."""
        self.ratio_mss = n if n < self.advmss else self.advmss
        if self.skb_model:
            ratio = measured_ratio(n, ts)
            if ratio != self.scaling_ratio:
                self.scaling_ratio = ratio
                self.capacity = win_from_space(self.rcvbuf, ratio)
                if self.window is not None:
                    self.window.set_window_clamp(self.capacity)

    def reset(self, rcv_nxt: int) -> None:
        """Set ``rcv_nxt`` (once the peer's ISN is known); only while empty."""
        if self._ready_len or self._ooo:
            raise ValueError("reset of a non-empty receive buffer")
        self._nxt = rcv_nxt & SEQ_MASK

    def _seq(self, off: int) -> int:
        return (self._nxt + off - self._nxt_abs) & SEQ_MASK

    def append_next(self, seq: int, data: bytes | memoryview) -> bool:
        """:meth:`insert`'s common case alone, for the fast path (:mod:`.fastpath`).

        ``data`` (``bytes`` or a 1-D byte view, not empty) starting at ``seq``
        is taken when it is the next in order, fits and nothing is out of
        order; then it is queued exactly as :meth:`insert` would queue it and
        the answer is True. Otherwise nothing changes and the answer is
        False (the caller takes the general path); :meth:`insert` takes its
        common case through here too.
        """
        n = len(data)
        nxt = self._nxt
        if (
            seq != nxt
            or self._ooo is not None
            or n > self.limit - self._ready_len
            or not n
            or (
                type(data) is not bytes
                and (type(data) is not memoryview or data.ndim != 1 or data.itemsize != 1)
            )
        ):
            return False
        self._ready.append(data)
        self._ready_len += n
        # Memory accounting, as insert's first branch.
        ts = self._ts_val if n == self._ts_len else self._charge(n)
        if n <= self._tail_room:
            # Linux tcp_try_coalesce: copied into the unread tail skb, whose
            # charge now goes with this piece (freed when all is read).
            self._tail_room -= n
            tss = self._ready_ts
            tss.append(tss[-1])
            tss[-2] = 0
        else:
            self.rmem += ts
            self._ready_ts.append(ts)
            self._tail_room = self._ts_room
        if n > self.ratio_mss:
            self._measure(n, ts)
        self._nxt = (nxt + n) & SEQ_MASK
        self._nxt_abs += n
        return True

    def insert(self, seq: int, data: BytesLike) -> InsertResult:
        """Take a segment's payload that starts at ``seq``; see the class docstring."""
        if type(data) is bytearray:
            data = bytes(data)
        elif type(data) is memoryview and (data.ndim != 1 or data.itemsize != 1):
            data = data.cast("B")
        assert not isinstance(data, bytearray)
        n = len(data)
        if n == 0:
            return _NOTHING
        nxt = self._nxt
        rel = ((seq - nxt + _HALF) & SEQ_MASK) - _HALF
        room = self.limit - self._ready_len
        if rel == 0 and n <= room and self._ooo is None and self.append_next(seq, data):
            # The common case: the next bytes in order, nothing out of order.
            return _tuple_new(InsertResult, (n, 0, None, 0))
        dsack: tuple[int, int] | None = None
        end_rel = rel + n
        if end_rel <= 0:
            # Entirely old: a retransmission of data already acknowledged.
            dsack = (seq & SEQ_MASK, (seq + n) & SEQ_MASK)
            self.dsack = dsack
            return InsertResult(0, 0, dsack, 0)
        if rel < 0:
            dsack = (seq & SEQ_MASK, self._nxt)
            data = memoryview(data)[-rel:]
            rel = 0
        dropped = 0
        if end_rel > room:
            keep = room - rel
            if keep <= 0:
                if dsack is not None:
                    self.dsack = dsack
                return InsertResult(0, 0, dsack, end_rel - rel)
            dropped = end_rel - room
            data = memoryview(data)[:keep]
            end_rel = room
        ooo = self._ooo
        if ooo is None:
            ooo = self._ooo = Assembler()
        start = self._nxt_abs + rel
        limit = self.max_ooo_pieces if rel > 0 else 1 << 62
        stored, dup_lo, dup_hi = ooo.add(start, data, limit)
        if dsack is None and dup_hi > dup_lo:
            dsack = (self._seq(dup_lo), self._seq(dup_hi))
        if dsack is not None:
            self.dsack = dsack
        if stored < 0:
            # Over the piece cap: the new bytes are refused (the repeated ones
            # were held already and are not counted as dropped).
            if not ooo:
                self._ooo = None
            return InsertResult(0, 0, dsack, dropped - stored)
        if rel > 0:
            if stored:
                # Linux charges the whole skb to the out-of-order queue.
                ts = self._charge(len(data)) if self.skb_model else stored
                self._ooo_rmem += ts
                self.rmem += ts
            return _tuple_new(InsertResult, (0, stored, dsack, dropped))
        ooo_before = ooo.size - stored  # held out of order before this segment
        pieces, end = ooo.pop_front(self._nxt_abs)
        if not ooo:
            self._ooo = None  # the hole is filled
        delivered = end - self._nxt_abs
        self._ready.extend(pieces)
        self._account_joined(pieces, ooo_before, ooo.size if ooo else 0)
        self._ready_len += delivered
        self._nxt_abs = end
        self._nxt = (self._nxt + delivered) & SEQ_MASK
        return InsertResult(delivered, 0, dsack, dropped)

    def sack_blocks(self, limit: int = 4) -> list[tuple[int, int]]:
        """SACK blocks ``(start_seq, end_seq)``, the most recently received first (RFC 2018)."""
        ooo = self._ooo
        if ooo is None:
            return []
        return [(self._seq(s), self._seq(e)) for s, e in ooo.recent_blocks(limit)]

    def ack_blocks(self, limit: int = 4) -> list[tuple[int, int]]:
        """The blocks for the SACK option of the ACK being built now.

        A pending D-SACK range comes first and is consumed (RFC 2883: each
        duplicate is reported once), then :meth:`sack_blocks`. ``limit`` is
        what fits in the option space: 4 without timestamps, 3 with.
        """
        out: list[tuple[int, int]] = []
        if self.dsack is not None and limit > 0:
            out.append(self.dsack)
            self.dsack = None
        out.extend(self.sack_blocks(limit - len(out)))
        return out

    def read(self, n: int = -1) -> bytes:
        """Remove and return up to ``n`` readable bytes (all of them if ``n`` < 0)."""
        return self._take(n, consume=True)

    def peek(self, n: int = -1) -> bytes:
        """Like :meth:`read` but leaves the bytes in place (``MSG_PEEK``)."""
        return self._take(n, consume=False)

    def read_into(self, buffer: bytearray | memoryview) -> int:
        """Copy readable bytes into ``buffer`` (``recv_into``); return the count."""
        with memoryview(buffer) as dest:
            want = min(dest.nbytes, self._ready_len)
            if want == 0:
                return 0
            flat = dest.cast("B") if dest.ndim != 1 or dest.itemsize != 1 else dest
            pos = 0
            head = self._head
            for piece in self._ready:
                k = min(len(piece) - head, want - pos)
                with memoryview(piece) as pv:
                    flat[pos : pos + k] = pv[head : head + k]
                pos += k
                head = 0
                if pos == want:
                    break
            if flat is not dest:
                flat.release()
        self._consume(want)
        return want

    def _take(self, n: int, *, consume: bool) -> bytes:
        if n < 0 or n > self._ready_len:
            n = self._ready_len
        if n == 0:
            return b""
        ready = self._ready
        first = ready[0]
        head = self._head
        if len(first) - head >= n:
            if type(first) is bytes:
                out = first if head == 0 and n == len(first) else first[head : head + n]
            else:
                out = bytes(first[head : head + n])
        else:
            # One join: the copy out to the application.
            parts: list[Piece] = [memoryview(first)[head:]]
            need = n - (len(first) - head)
            for piece in islice(ready, 1, None):
                if need <= len(piece):
                    parts.append(memoryview(piece)[:need])
                    break
                parts.append(piece)
                need -= len(piece)
            out = b"".join(parts)
        if consume:
            self._consume(n)
        return out

    def _account_joined(self, pieces: list[Piece], ooo_before: int, ooo_after: int) -> None:
        """Memory accounting for pieces that became readable when a hole filled.

        Each piece is charged as one segment of its length; the out-of-order
        charge is released in proportion to the out-of-order bytes that moved
        (the assembler merges pieces, so Linux's per-skb charges are not
        kept exactly; see docs/tcp.md).
        """
        charges = [self._charge(len(p)) for p in pieces]
        self._ready_ts.extend(charges)
        self._tail_room = 0
        if self._ooo_rmem:
            released = (
                self._ooo_rmem
                if not ooo_after or ooo_before <= 0
                else self._ooo_rmem * max(ooo_before - ooo_after, 0) // ooo_before
            )
            self._ooo_rmem -= released
            self.rmem -= released
        self.rmem += sum(charges)

    def _consume(self, n: int) -> None:
        ready = self._ready
        self._ready_len -= n
        n += self._head
        k = 0
        count = len(ready)
        while k < count and n >= len(ready[k]):
            n -= len(ready[k])
            k += 1
        if k:
            del ready[:k]
            # A segment's memory is freed once all of it was read (sk_eat_skb).
            ts = self._ready_ts
            self.rmem -= sum(ts[:k])
            del ts[:k]
            if not ready:
                self._tail_room = 0  # the tail skb is freed
        self._head = n


# ---------------------------------------------------------------------------
# Receive window
# ---------------------------------------------------------------------------

#: Largest window scale (RFC 7323 2.3; Linux's TCP_MAX_WSCALE).
MAX_WSCALE = 14
#: Largest value of the 16-bit window field.
MAX_WINDOW_FIELD = 0xFFFF
#: ``SOCK_MIN_RCVBUF``: twice ``TCP_SKB_MIN_TRUESIZE`` (2048 + struct sk_buff).
_SOCK_MIN_RCVBUF = 2 * (2048 + 256)


def select_initial_window(
    space: int,
    mss: int,
    *,
    max_space: int,
    window_clamp: int = 0,
    wscale_ok: bool = True,
    init_rcv_wnd: int = 0,
) -> tuple[int, int, int]:
    """The window offered in a SYN: ``(rcv_wnd, window_clamp, rcv_wscale)``.

    Linux's ``tcp_select_initial_window``. ``space`` is the receive space now
    (window bytes the buffer provides); ``max_space`` the most it can ever be,
    ``max(net.ipv4.tcp_rmem[2], net.core.rmem_max)`` on Linux, from which the
    scale is chosen so the largest window still fits 16 bits (6 MiB gives 7,
    15 MiB gives 8). ``window_clamp`` 0 means unclamped (``TCP_WINDOW_CLAMP``
    unset). The window is rounded down to whole segments and, unscaled in the
    SYN, at most 65535; ``init_rcv_wnd`` (segments, a route attribute) caps it
    further. The returned clamp is no larger than the scaled field can say.
    """
    space = max(space, 0)
    if window_clamp == 0:
        window_clamp = MAX_WINDOW_FIELD << MAX_WSCALE
    space = min(window_clamp, space)
    if space > mss > 0:
        space -= space % mss
    rcv_wnd = min(space, MAX_WINDOW_FIELD)
    if init_rcv_wnd:
        rcv_wnd = min(rcv_wnd, init_rcv_wnd * mss)
    wscale = 0
    if wscale_ok:
        top = min(max(space, max_space), window_clamp)
        wscale = min(max(top.bit_length() - 1 - 15, 0), MAX_WSCALE)
    return rcv_wnd, min(MAX_WINDOW_FIELD << wscale, window_clamp), wscale


def select_window(
    *,
    free_space: int,
    allowed_space: int,
    window_clamp: int,
    rcv_ssthresh: int,
    rcv_mss: int,
    rcv_wscale: int,
    rcv_wnd: int,
) -> int:
    """The window the free space justifies now, in bytes: Linux's ``__tcp_select_window``.

    Receiver-side silly window avoidance (RFC 1122 4.2.3.3) the way Linux
    does it: once free space falls below half of the full space, a window
    smaller than one MSS (the peer's, as estimated: ``rcv_mss``) or than
    1/16 of the buffer is not offered at all (0, so the sender waits for a
    real opening instead of sending slivers). The window grows no faster than
    ``rcv_ssthresh`` (see :meth:`ReceiveWindow.grow`). Without window scaling
    it is kept a multiple of the MSS and left alone while within one MSS of
    the free space; with scaling it is rounded up to the scale unit so a
    small window is not scaled away to zero.

    ``allowed_space`` is the whole buffer in window bytes (``tcp_full_space``)
    and ``free_space`` the part not in use (``tcp_space``; may be negative
    after the buffer shrinks). Linux also ends quick-ACK mode when free space
    is below half of the full space; that is the caller's policy.
    """
    return _select_window(
        free_space, allowed_space, window_clamp, rcv_ssthresh, rcv_mss, rcv_wscale, rcv_wnd
    )


def _select_window(
    free_space: int,
    allowed_space: int,
    window_clamp: int,
    rcv_ssthresh: int,
    rcv_mss: int,
    rcv_wscale: int,
    rcv_wnd: int,
) -> int:
    """:func:`select_window` with positional arguments (called once per segment sent)."""
    mss = rcv_mss
    # min() written as conditionals here and below (once per segment sent).
    full_space = window_clamp if window_clamp < allowed_space else allowed_space
    if mss > full_space:
        mss = full_space
        if mss <= 0:
            return 0
    if free_space < (full_space >> 1):
        # This window might be the one offered: never round it up with the scale.
        free_space &= ~((1 << rcv_wscale) - 1)
        if free_space < (allowed_space >> 4) or free_space < mss:
            return 0
    if rcv_ssthresh < free_space:
        free_space = rcv_ssthresh
    if rcv_wscale:
        unit = 1 << rcv_wscale
        return (free_space + unit - 1) & ~(unit - 1)
    window = rcv_wnd
    if window <= free_space - mss or window > free_space:
        return free_space - free_space % mss if mss > 0 else free_space
    if mss == full_space and free_space > window + (full_space >> 1):
        return free_space
    return window


@dataclass(slots=True)
class ReceiveWindow:
    """The advertised receive window of one connection and the rules that move it.

    ``rcv_wnd`` is the last window offered (bytes, before scaling) and
    ``rcv_wup`` the ``rcv_nxt`` it was offered at, so the right edge promised
    to the peer is ``rcv_wup + rcv_wnd`` (RFC 9293's RCV.NXT + RCV.WND at the
    time). :meth:`select` keeps that edge from ever moving back (RFC 9293
    3.8.6 strongly discourages shrinking; Linux never does by default).
    """

    #: Our window scale shift (0 when not negotiated).
    rcv_wscale: int
    #: Largest window ever offered (``TCP_WINDOW_CLAMP``, or from the buffer).
    window_clamp: int
    #: Slow-start-like limit on window growth (Linux's ``rcv_ssthresh``).
    rcv_ssthresh: int
    rcv_wnd: int = 0
    rcv_wup: int = 0
    #: The connection's receive buffer, when it models skb memory: growth
    #: then tests the segment's truesize as Linux does (see :meth:`grow`).
    buffer: ReceiveBuffer | None = None
    #: ``net.ipv4.tcp_rmem[2]`` (``__tcp_grow_window``'s bound).
    max_space: int = 6291456

    def receive_window(self, rcv_nxt: int) -> int:
        """Window open from ``rcv_nxt`` to the promised right edge (``tcp_receive_window``)."""
        win = self.rcv_wnd - seq_diff(rcv_nxt, self.rcv_wup)
        return win if win > 0 else 0

    @property
    def right_edge(self) -> int:
        """Sequence number just past the last byte the peer may send."""
        return (self.rcv_wup + self.rcv_wnd) & SEQ_MASK

    def select(self, rcv_nxt: int, free_space: int, allowed_space: int, rcv_mss: int) -> int:
        """Choose the window for an outgoing non-SYN segment; return the header field.

        Linux's ``tcp_select_window``: the window :func:`select_window` allows,
        but if that would pull the right edge back the current window is kept
        (rounded up to the scale unit so the scaled value does not shrink it
        either). Records the new ``rcv_wnd``/``rcv_wup`` and returns the value
        for the 16-bit field (scaled and capped at 65535). A SYN's window is
        never scaled (RFC 7323 2.2): the caller sends ``min(rcv_wnd, 65535)``.
        """
        rcv_wnd = self.rcv_wnd
        wscale = self.rcv_wscale
        # receive_window(rcv_nxt), inlined: this runs for every segment sent.
        cur = rcv_wnd - (((rcv_nxt - self.rcv_wup + _HALF) & SEQ_MASK) - _HALF)
        new = _select_window(
            free_space,
            allowed_space,
            self.window_clamp,
            self.rcv_ssthresh,
            rcv_mss,
            wscale,
            rcv_wnd,
        )
        if new < cur:
            unit = 1 << wscale
            new = (cur + unit - 1) & ~(unit - 1)
        self.rcv_wnd = new
        self.rcv_wup = rcv_nxt & SEQ_MASK
        top = MAX_WINDOW_FIELD << wscale
        return (new if new < top else top) >> wscale

    def update_due(
        self, rcv_nxt: int, *, free_space: int, allowed_space: int, rcv_mss: int
    ) -> bool:
        """Whether a read freed enough space to send a window update now.

        Linux's rule in ``tcp_cleanup_rbuf``: when the open window is at most
        half the clamp and the window the free space now allows is at least
        twice it, an ACK goes out at once instead of waiting for the delayed
        ACK timer, so a drained buffer does not leave the sender stalled.
        """
        now = self.receive_window(rcv_nxt)
        if 2 * now > self.window_clamp:
            return False
        new = select_window(
            free_space=free_space,
            allowed_space=allowed_space,
            window_clamp=self.window_clamp,
            rcv_ssthresh=self.rcv_ssthresh,
            rcv_mss=rcv_mss,
            rcv_wscale=self.rcv_wscale,
            rcv_wnd=self.rcv_wnd,
        )
        return new != 0 and new >= 2 * now

    def init_buffer_space(self, full_space: int, advmss: int) -> None:
        """The clamp as the connection is established (Linux ``tcp_init_buffer_space``).

        ``full_space`` is the whole buffer as window (``tcp_full_space``). The
        clamp is at most that, and one ``advmss`` less when the clamp would
        otherwise reach within a segment of it ("attempt to accept more than
        half of the window", ``tcp_app_win``), but at least two segments;
        ``rcv_ssthresh`` is kept within the clamp.
        """
        if self.window_clamp >= full_space:
            self.window_clamp = full_space
            if full_space > 4 * advmss:
                self.window_clamp = max(full_space - (full_space >> 31), 4 * advmss)
        if self.window_clamp > 2 * advmss and self.window_clamp + advmss > full_space:
            self.window_clamp = max(2 * advmss, full_space - advmss)
        if self.rcv_ssthresh > self.window_clamp:
            self.rcv_ssthresh = self.window_clamp

    def set_window_clamp(self, clamp: int) -> None:
        """A new clamp after ``scaling_ratio`` changed (Linux ``tcp_set_window_clamp``).

        ``tcp_measure_rcv_mss`` sets the clamp to the buffer's new window
        (``tcp_win_from_space(sk_rcvbuf)``), at least ``SOCK_MIN_RCVBUF / 2``
        and at most what the scaled field can say. A smaller clamp pulls
        ``rcv_ssthresh`` down with it; a larger one lets it rise to the
        window offered now.
        """
        new = max(_SOCK_MIN_RCVBUF // 2, clamp)
        top = MAX_WINDOW_FIELD << self.rcv_wscale
        if new > top:
            new = top
        old = self.window_clamp
        if new == old:
            return
        self.window_clamp = new
        if new < old:
            if self.rcv_ssthresh > new:
                self.rcv_ssthresh = new
        else:
            self.rcv_ssthresh = max(min(self.rcv_wnd, new), self.rcv_ssthresh)

    def grow(self, seg_len: int, advmss: int, free_space: int) -> bool:
        """Raise ``rcv_ssthresh`` for an arriving in-order segment; True if it grew.

        Linux's ``tcp_grow_window`` for segments of at least 128 bytes: the
        limit rises by ``max(2 * advmss, 2 * seg_len)`` up to the clamp and
        the free space when the segment's skb ``truesize``, as window
        (``tcp_win_from_space``), is no more than its length. Otherwise
        (a segment smaller than the one ``scaling_ratio`` was measured on)
        ``__tcp_grow_window`` halves that cost and the bound ``tcp_rmem[2]``
        gives until the cost fits, growing by ``max(2 * rcv_mss, 2 * seg_len)``
        if it fits before the bound falls below ``rcv_ssthresh``, else not at
        all. Linux also enters quick-ACK mode when it grows.
        """
        if seg_len < 128:
            return False
        # min()/max() and win_from_space written as expressions: the fast
        # path calls this for every in-order segment.
        ssthresh = self.rcv_ssthresh
        clamp = self.window_clamp
        if not (ssthresh < clamp and ssthresh < free_space):
            return False
        room = (clamp if clamp < free_space else free_space) - ssthresh
        if room <= 0:
            return False
        incr = 2 * advmss
        rb = self.buffer
        if rb is not None and rb.skb_model:
            ratio = rb.scaling_ratio
            # skb_truesize(packet_len), its memo read here (saves the call).
            packet_len = seg_len + rb.header_len
            memo = _rmem._truesize_memo
            ts = memo[1] if memo[0] == packet_len else skb_truesize(packet_len)
            cost = (ts * ratio) >> TCP_RMEM_TO_WIN_SCALE
            if cost > seg_len:
                cost >>= 1
                bound = win_from_space(self.max_space, ratio) >> 1
                incr = 0
                while ssthresh <= bound:
                    if cost <= seg_len:
                        incr = 2 * rb.ratio_mss
                        break
                    cost >>= 1
                    bound >>= 1
                if not incr:
                    return False
        step = 2 * seg_len
        if incr > step:
            step = incr
        self.rcv_ssthresh = ssthresh + (room if room < step else step)
        return True
