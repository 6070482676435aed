"""The sender's SACK scoreboard: RFC 6675 loss recovery bookkeeping, with RFC 2883 D-SACK.

The scoreboard remembers which outstanding bytes the receiver has reported
in SACK blocks (RFC 2018), decides which of the others count as lost, and
answers the two questions RFC 6675's recovery asks on every ACK: how much
data is in the network (``SetPipe``) and what to send next (``NextSeg``).
It holds no data and sends nothing: the connection asks, transmits, and
reports back with :meth:`SackScoreboard.on_transmit`.

Representation
    SACKed ranges are a sorted list of disjoint, non-adjacent intervals
    ``[start, end)``, kept as two parallel lists of integers for bisection.
    The integers are stream offsets: unbounded, counted from the ``snd_una``
    the scoreboard was created with, turned from and into sequence numbers
    only at the interface with :func:`~aiostack.wire.seqnum.seq_diff`
    relative to the current ``snd_una``. That is the same thing as "modular
    arithmetic relative to snd_una" for every value inside the window, but a
    cumulative ACK does not have to rewrite every stored interval, and
    nothing inside can go wrong at the 2**32 wrap. Every operation is a
    bisection plus work on the intervals it touches, never per byte.

Which bytes are lost
    Without RACK (see ``rack_mode``), RFC 6675's ``IsLost(S)``, with
    ``DupThresh`` (:attr:`dup_thresh`, 3 by default; a connection that
    detects reordering may raise it, as Linux raises ``tp->reordering``):
    an unSACKed byte is lost when at least ``DupThresh`` discontiguous
    SACKed ranges lie above it, or more than
    ``(DupThresh - 1) * SMSS`` SACKed bytes do. Both counts only grow as the
    byte gets lower, so the lost bytes are exactly the unSACKed ones below one
    boundary: the start of the highest interval at which the rule is met,
    found by walking at most ``DupThresh`` intervals down from the top. This
    was chosen over Linux's older FACK-less rule (mark the ``reordering``
    lowest un-SACKed segments, ``tcp_mark_head_lost``) because it is the
    specification the tests can check exactly, it needs no segment
    boundaries (the scoreboard is byte-based), and it is what Linux's rule
    approximates when segments are full-sized. Time-based loss detection
    (RACK-TLP, RFC 8985, Linux's default) and the RTO mark lost bytes
    through :meth:`SackScoreboard.mark_lost` and :meth:`SackScoreboard.on_rto`.

D-SACK (RFC 2883 section 4)
    The first block of an ACK is a D-SACK when it starts below the ACK's
    cumulative acknowledgment number, or when the second block contains it
    (Linux's ``tcp_check_dsack``). It reports data received twice; it is
    returned to the caller (for undo and reordering detection) and never
    marks anything.

Validation
    A block is used only if it is a proper range within what was sent and
    above ``snd_una``, exactly Linux's ``tcp_is_sackblock_valid``: ``snd_una
    < start < end <= snd_nxt``. Others (stale blocks from reordered ACKs,
    garbage, blocks reaching beyond what was sent) are ignored and counted
    in ``discarded`` (Linux's TCPSACKDiscard). A D-SACK must lie wholly below
    ``snd_una`` or wholly above it.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from enum import IntEnum
from typing import NamedTuple, cast

from aiostack.wire.seqnum import SEQ_MASK, seq_gt, seq_le, seq_lt

#: RFC 6675's DupThresh (and Linux's initial ``tcp_reordering``).
DUP_THRESH = 3

_HALF = 1 << 31
# NamedTuple's generated __new__ costs a Python frame; per-ACK results are
# built directly.
_tuple_new = tuple.__new__
#: The interval lists of a scoreboard that has never been sent a SACK block:
#: an immutable empty sequence shared by all (read-only uses need no list;
#: _mark creates real lists before the first insertion).
_NO_INTERVALS = cast("list[int]", ())


class NextSegRule(IntEnum):
    """Why :meth:`SackScoreboard.next_seg` chose a segment."""

    #: RFC 6675 section 5 step (4.3): the first retransmission on entering
    #: recovery, the segment at ``snd_una``.
    HEAD = 0
    #: NextSeg rule (1): the lowest lost byte not yet retransmitted.
    LOST = 1
    #: NextSeg rule (2): new data (``seq`` is ``snd_nxt``; the caller sizes it).
    NEW = 2
    #: NextSeg rule (3): an unSACKed byte below the highest SACK, not yet lost.
    UNLOST = 3
    #: NextSeg rule (4): the once-per-recovery rescue retransmission.
    RESCUE = 4


class NextSeg(NamedTuple):
    """A segment to send: ``length`` bytes from ``seq`` (at most one SMSS)."""

    seq: int
    length: int
    rule: NextSegRule


class SackUpdate(NamedTuple):
    """What one ACK told the scoreboard."""

    #: Bytes SACKed for the first time (RFC 6675 counts an ACK that SACKs new
    #: data as a duplicate ACK for loss detection).
    newly_sacked: int
    #: Previously SACKed bytes now covered by the cumulative ACK (delivered
    #: already: the caller does not count them as newly delivered again).
    sacked_acked: int
    #: The D-SACK range ``(start_seq, end_seq)`` of this ACK, or None.
    dsack: tuple[int, int] | None
    #: Blocks ignored as invalid.
    discarded: int


class SackScoreboard:
    """RFC 6675's scoreboard and its ``Update``, ``IsLost``, ``SetPipe`` and ``NextSeg``.

    The RFC's variables map to sequence numbers here as: HighACK + 1 is
    :attr:`snd_una`, HighData + 1 is :attr:`snd_nxt` (kept current with
    :meth:`on_send` or :meth:`on_transmit`), HighRxt + 1 is the end of the
    highest retransmission of this recovery, RecoveryPoint + 1 is
    :attr:`recovery_point`. Sizes are in bytes, not segments.

    Typical use by a connection, per ACK: :meth:`update` with the ACK number
    and the SACK blocks; enter recovery when ``DupAcks >= DupThresh`` or
    ``is_lost(snd_una)`` (:meth:`enter_recovery` returns the first
    retransmission); then while ``cwnd - pipe() >= SMSS`` take
    :meth:`next_seg`, send it, and :meth:`on_transmit` it. Recovery ends on
    its own when the cumulative ACK reaches :attr:`recovery_point`.
    """

    __slots__ = (
        "_ends",
        "_hd",
        "_lost_floor",
        "_rescue",
        "_rp",
        "_rxt",
        "_sacked",
        "_sbr",
        "_starts",
        "_ua",
        "_una",
        "dup_thresh",
        "in_recovery",
        "mss",
        "new_ranges",
        "rack_mode",
        "reord_low",
    )

    def __init__(
        self,
        snd_una: int,
        snd_nxt: int | None = None,
        *,
        mss: int,
        dup_thresh: int = DUP_THRESH,
    ) -> None:
        #: Sender maximum segment size (SMSS): the unit of NextSeg and IsLost.
        self.mss = mss
        #: RFC 6675's DupThresh; raise it when reordering is detected.
        self.dup_thresh = dup_thresh
        #: Between :meth:`enter_recovery` and the ACK of the recovery point.
        self.in_recovery = False
        self._una = snd_una & SEQ_MASK
        self._ua = 0
        self._hd = 0 if snd_nxt is None else self._offset(snd_nxt)
        # Sorted, disjoint SACKed intervals [start, end) as offsets. The two
        # lists are created by the first SACK block (_mark): until then both
        # are the shared empty tuple, so a connection that never sees a loss
        # carries no lists.
        self._starts: list[int] = _NO_INTERVALS
        self._ends: list[int] = _NO_INTERVALS
        self._sacked = 0
        # HighRxt + 1 as an offset (never below _ua), and the SACKed bytes in
        # [_ua, _rxt): kept incrementally so pipe() costs O(DupThresh).
        self._rxt = 0
        self._sbr = 0
        self._rescue: int | None = None
        self._rp = 0
        # Bytes below this offset were declared lost by a timer (RTO, RACK).
        self._lost_floor = 0
        #: RACK (RFC 8985) decides what is lost: IsLost's SACK counting is
        #: off and only :meth:`mark_lost`/:meth:`on_rto` marks count. The
        #: rescue retransmission (NextSeg rule 4) is off too, as in Linux:
        #: TLP and RACK cover the tail it was made for.
        self.rack_mode = False
        #: With ``rack_mode``, :meth:`update` fills this list (created by
        #: the first SACK block) with the ranges ``(start_seq, end_seq)``
        #: SACKed for the first time by the ACK.
        self.new_ranges: list[tuple[int, int]] | None = None
        #: The lowest byte (an offset) the last :meth:`update` delivered for
        #: the first time, cumulatively or by SACK, below the highest byte
        #: SACKed before it; ``None`` if none. Delivered below what was
        #: already SACKed: reordering, unless it was retransmitted (the
        #: connection knows; Linux ``tcp_check_sack_reordering``).
        self.reord_low: int | None = None

    # -- conversions -------------------------------------------------------

    def _offset(self, seq: int) -> int:
        # self._ua + seq_diff(seq, self._una), inlined (called per segment).
        return self._ua + ((seq - self._una + _HALF) & SEQ_MASK) - _HALF

    def _seq(self, off: int) -> int:
        return (self._una + off - self._ua) & SEQ_MASK

    # -- state -------------------------------------------------------------

    @property
    def snd_una(self) -> int:
        """HighACK + 1: the first byte not cumulatively acknowledged."""
        return self._una

    @property
    def snd_nxt(self) -> int:
        """HighData + 1: the byte after the highest one sent."""
        return self._seq(self._hd)

    @property
    def recovery_point(self) -> int:
        """RecoveryPoint + 1: recovery ends when ``snd_una`` reaches it."""
        return self._seq(self._rp)

    @property
    def can_enter_recovery(self) -> bool:
        """False until ``snd_una`` passes the recovery point of the last recovery or RTO.

        RFC 6675 section 5: a new recovery MUST NOT start until HighACK is at
        least RecoveryPoint (one reduction per window of data, as RFC 6582's
        ``recover``).
        """
        return not self.in_recovery and self._ua >= self._rp

    @property
    def sacked_bytes(self) -> int:
        """Outstanding bytes the receiver has SACKed."""
        return self._sacked

    @property
    def lost_bytes(self) -> int:
        """Outstanding bytes neither SACKed nor acknowledged that count as lost."""
        boundary, above = self._lost_boundary()
        if boundary <= self._ua:
            return 0
        return (boundary - self._ua) - (self._sacked - above)

    @property
    def retrans_bytes(self) -> int:
        """UnSACKed bytes at or below HighRxt: retransmitted in this recovery."""
        return (self._rxt - self._ua) - self._sbr

    @property
    def high_sacked(self) -> int | None:
        """End of the highest SACKed range (Linux's ``highest_sack``), or None."""
        return self._seq(self._ends[-1]) if self._ends else None

    def blocks(self) -> list[tuple[int, int]]:
        """The SACKed ranges ``(start_seq, end_seq)`` in ascending order."""
        return [(self._seq(s), self._seq(e)) for s, e in zip(self._starts, self._ends, strict=True)]

    def is_sacked(self, seq: int, length: int) -> bool:
        """Whether every byte of ``[seq, seq + length)`` is SACKed.

        Bytes below ``snd_una`` are acknowledged, not SACKed: False.
        """
        s = self._offset(seq)
        if s < self._ua:
            return False
        if length <= 0:
            return True
        j = bisect_right(self._starts, s) - 1
        return j >= 0 and self._ends[j] >= s + length

    # -- IsLost, SetPipe -----------------------------------------------------

    def _lost_boundary(self) -> tuple[int, int]:
        """``(boundary, sacked bytes at or above it)``; unSACKed bytes below it are lost."""
        starts = self._starts
        ends = self._ends
        boundary = self._ua
        above = 0
        acc = 0
        n = len(starts)
        threshold = (self.dup_thresh - 1) * self.mss
        if self.rack_mode:
            n = 0
        for i in range(n - 1, -1, -1):
            acc += ends[i] - starts[i]
            # Intervals i..n-1 lie wholly above any hole below starts[i].
            if n - i >= self.dup_thresh or acc > threshold:
                boundary = starts[i]
                above = acc
                break
        if self._lost_floor > boundary:
            boundary = min(self._lost_floor, self._hd)
            above = self._sacked_from(boundary)
        return boundary, above

    def _sacked_from(self, off: int) -> int:
        """SACKed bytes at or above offset ``off`` (walks down from the top)."""
        starts = self._starts
        ends = self._ends
        acc = 0
        i = len(starts) - 1
        while i >= 0 and ends[i] > off:
            acc += ends[i] - (starts[i] if starts[i] > off else off)
            i -= 1
        return acc

    def is_lost(self, seq: int) -> bool:
        """RFC 6675 ``IsLost``: the byte at ``seq`` is unSACKed and presumed lost."""
        s = self._offset(seq)
        if s < self._ua or s >= self._hd:
            return False
        if not self._starts and self._lost_floor <= s:
            # Nothing SACKed: the boundary is at most max(snd_una, lost floor) <= s.
            return False
        boundary, _ = self._lost_boundary()
        return s < boundary and not self.is_sacked(seq, 1)

    def pipe(self) -> int:
        """RFC 6675 ``SetPipe``: bytes presumed in flight.

        For each unSACKed outstanding byte: one if it is not lost, plus one
        if it was retransmitted in this recovery (at or below HighRxt). That
        is ``FlightSize - SACKed - lost + retransmitted``, computed from
        counters and the lost boundary rather than byte by byte. Outside
        recovery it is the flight size less what SACK and IsLost account for.
        """
        if not self._starts and self._lost_floor <= self._ua:
            # Nothing SACKed and no timer-declared loss (the usual case): no
            # byte is lost, so only the retransmitted bytes are added.
            return (self._hd - self._ua) + (self._rxt - self._ua) - self._sbr
        return (self._hd - self._ua - self._sacked) - self.lost_bytes + self.retrans_bytes

    # -- input: ACKs ---------------------------------------------------------

    def on_send(self, snd_nxt: int) -> None:
        """Record that data up to ``snd_nxt`` has been sent (HighData)."""
        off = self._ua + ((snd_nxt - self._una + _HALF) & SEQ_MASK) - _HALF  # _offset
        if off < self._ua:
            raise ValueError(f"snd_nxt {snd_nxt} below snd_una")
        if off > self._hd:
            self._hd = off

    def on_cumulative_ack(self, ack: int) -> int:
        """Advance ``snd_una`` to ``ack``; return the SACKed bytes it covered.

        Intervals below the new ``snd_una`` are dropped and one straddling it
        is trimmed. Recovery ends when the recovery point is acknowledged.
        An ACK at or below ``snd_una`` changes nothing; one beyond
        :attr:`snd_nxt` raises ``ValueError`` (the connection rejects those,
        RFC 9293 3.10.7.4).
        """
        delta = ((ack - self._una + _HALF) & SEQ_MASK) - _HALF  # seq_diff(ack, snd_una)
        if delta <= 0:
            return 0
        new_ua = self._ua + delta
        if new_ua > self._hd:
            raise ValueError(f"ack {ack} beyond snd_nxt")
        starts = self._starts
        removed = 0
        if starts:  # else nothing is SACKed (the usual ACK): nothing to drop or trim
            ends = self._ends
            k = bisect_right(ends, new_ua)  # intervals wholly below the new snd_una
            for i in range(k):
                removed += ends[i] - starts[i]
            if k:
                del starts[:k]
                del ends[:k]
            if starts and starts[0] < new_ua:
                removed += new_ua - starts[0]
                starts[0] = new_ua
            self._sacked -= removed
        if self._rxt <= new_ua:
            self._rxt = new_ua
            self._sbr = 0
        else:
            # Everything removed lay below new_ua <= HighRxt + 1.
            self._sbr -= removed
        self._ua = new_ua
        self._una = ack & SEQ_MASK
        if self.in_recovery and new_ua >= self._rp:
            self.in_recovery = False
        return removed

    def update(self, ack: int, blocks: Iterable[tuple[int, int]] = ()) -> SackUpdate:
        """RFC 6675 ``Update``: take an ACK's cumulative number and SACK blocks.

        The cumulative ACK is applied first (as Linux does), then each block
        is checked (see the module docstring) and merged. Returns what was
        learnt; see :class:`SackUpdate`.
        """
        # on_cumulative_ack ignores an ACK that is not after snd_una itself.
        ends = self._ends
        prior_fack = ends[-1] if ends else -1
        prior_ua = self._ua
        sacked_acked = self.on_cumulative_ack(ack)
        # A hole below the highest SACK filled by the cumulative ACK (the byte
        # at snd_una is never SACKed).
        self.reord_low = prior_ua if prior_fack > prior_ua < self._ua else None
        if self.new_ranges:
            self.new_ranges.clear()
        if type(blocks) is tuple and not blocks:
            # No SACK option (the usual ACK), before the general test below.
            return _tuple_new(SackUpdate, (0, sacked_acked, None, 0))
        items = blocks if isinstance(blocks, list | tuple) else list(blocks)
        if not items:
            return _tuple_new(SackUpdate, (0, sacked_acked, None, 0))
        if self.rack_mode and self.new_ranges is None:
            self.new_ranges = []  # created by the first SACK block (most flows see none)
        dsack: tuple[int, int] | None = None
        discarded = newly = 0
        una = self._una
        ua = self._ua
        span = self._hd - ua
        for idx, (s, e) in enumerate(items):
            if idx == 0 and (
                seq_lt(s, ack)
                or (len(items) > 1 and seq_le(items[1][0], s) and seq_le(e, items[1][1]))
            ):
                s &= SEQ_MASK
                e &= SEQ_MASK
                nxt = (una + span) & SEQ_MASK
                if seq_lt(s, e) and seq_le(e, nxt) and (seq_le(e, una) or seq_gt(s, una)):
                    dsack = (s, e)
                else:
                    discarded += 1
                continue
            # Linux's after(s, una) && before(s, e) && !after(e, nxt) &&
            # before(s, nxt), as signed offsets from snd_una: equivalent while
            # snd_nxt - snd_una < 2**31, and one subtraction each.
            so = ((s - una + _HALF) & SEQ_MASK) - _HALF
            eo = ((e - una + _HALF) & SEQ_MASK) - _HALF
            if 0 < so < eo <= span:
                if ua + so < prior_fack:
                    self._note_reord(ua + so, min(ua + eo, prior_fack))
                newly += self._mark(ua + so, ua + eo)
            else:
                discarded += 1
        return _tuple_new(SackUpdate, (newly, sacked_acked, dsack, discarded))

    def _note_reord(self, s: int, e: int) -> None:
        """Lower :attr:`reord_low` to the first unSACKed offset in ``[s, e)``, if any."""
        starts = self._starts
        j = bisect_right(starts, s) - 1
        if j >= 0 and self._ends[j] > s:
            s = self._ends[j]
        if s < e and (self.reord_low is None or s < self.reord_low):
            self.reord_low = s

    def reord_seq(self) -> int | None:
        """:attr:`reord_low` as a sequence number (``None`` if the last ACK showed none)."""
        low = self.reord_low
        return None if low is None else self._seq(low)

    def _mark(self, s: int, e: int) -> int:
        """Merge ``[s, e)`` (offsets, ``_ua < s < e <= _hd``); return the bytes new to it."""
        starts = self._starts
        ends = self._ends
        if not starts:
            starts = self._starts = []
            ends = self._ends = []
        rxt = self._rxt
        lo = bisect_left(ends, s)  # first interval ending at or after s
        hi = bisect_right(starts, e, lo)  # past the last one starting at or before e
        collect = self.new_ranges
        if lo == hi:
            if collect is not None:
                collect.append((self._seq(s), self._seq(e)))
            starts.insert(lo, s)
            ends.insert(lo, e)
            self._sacked += e - s
            if s < rxt:
                self._sbr += (e if e < rxt else rxt) - s
            return e - s
        new = below = 0
        cur = s
        for k in range(lo, hi):
            ks = starts[k]
            if ks > cur:
                if collect is not None:
                    collect.append((self._seq(cur), self._seq(ks)))
                new += ks - cur
                if cur < rxt:
                    below += (ks if ks < rxt else rxt) - cur
            if ends[k] > cur:
                cur = ends[k]
        if cur < e:
            if collect is not None:
                collect.append((self._seq(cur), self._seq(e)))
            new += e - cur
            if cur < rxt:
                below += (e if e < rxt else rxt) - cur
        starts[lo:hi] = [starts[lo] if starts[lo] < s else s]
        ends[lo:hi] = [ends[hi - 1] if ends[hi - 1] > e else e]
        self._sacked += new
        self._sbr += below
        return new

    # -- recovery ------------------------------------------------------------

    def _hole_from(self, off: int) -> tuple[int, int]:
        """The first unSACKed offset at or after ``off`` and the end of its hole."""
        starts = self._starts
        i = bisect_right(starts, off)
        if i and self._ends[i - 1] > off:
            off = self._ends[i - 1]
        return off, starts[i] if i < len(starts) else self._hd

    def _segment(self, off: int, length: int, rule: NextSegRule) -> NextSeg:
        result: NextSeg = _tuple_new(NextSeg, (self._seq(off), length, rule))
        return result

    def enter_recovery(self) -> NextSeg | None:
        """Start loss recovery (RFC 6675 section 5 steps 4.1-4.3); return the first retransmission.

        RecoveryPoint becomes HighData, HighRxt and RescueRxt are reset, and
        the segment at ``snd_una`` (HighACK + 1) is returned for the caller
        to retransmit regardless of pipe and to pass to :meth:`on_transmit`.
        The congestion response (ssthresh, cwnd, PRR) is the caller's.
        """
        self.in_recovery = True
        self._rp = self._hd
        self._rxt = self._ua
        self._sbr = 0
        self._rescue = None
        if self._hd == self._ua:
            return None
        start, hole_end = self._hole_from(self._ua)
        if start >= self._hd:
            return None
        return self._segment(start, min(self.mss, hole_end - start), NextSegRule.HEAD)

    def next_seg(self, *, new_data: bool = False) -> NextSeg | None:
        """RFC 6675 ``NextSeg``: the next segment to send, or None (rule 5).

        ``new_data`` says whether unsent data exists and the peer's window
        allows sending it (rule 2); the returned NEW segment starts at
        ``snd_nxt`` with length SMSS, to be trimmed by the caller to what is
        available. Retransmissions (rules 1, 3, 4) stop at the next SACKed
        byte, so SACKed data is never sent again. Bytes marked lost by
        :meth:`mark_lost`/:meth:`on_rto` qualify for rule 1 without rule
        (1.b)'s "below the highest SACK" (the mark came from a timer).
        """
        ua = self._ua
        hd = self._hd
        if hd == ua:
            return self._segment(hd, self.mss, NextSegRule.NEW) if new_data else None
        boundary, _ = self._lost_boundary()
        start, hole_end = self._hole_from(self._rxt)
        if start < boundary:
            length = min(self.mss, hole_end - start, boundary - start)
            return self._segment(start, length, NextSegRule.LOST)
        if new_data:
            return self._segment(hd, self.mss, NextSegRule.NEW)
        if self._ends and start < self._ends[-1]:
            return self._segment(start, min(self.mss, hole_end - start), NextSegRule.UNLOST)
        if self.in_recovery and not self.rack_mode and (self._rescue is None or ua > self._rescue):
            ends = self._ends
            if ends and ends[-1] == hd:
                hole_end = self._starts[-1]
                hole_start = ends[-2] if len(ends) > 1 else ua
            else:
                hole_end = hd
                hole_start = ends[-1] if ends else ua
            if hole_end > hole_start:
                first = max(hole_start, hole_end - self.mss)
                return self._segment(first, hole_end - first, NextSegRule.RESCUE)
        return None

    def on_transmit(self, seg: NextSeg) -> None:
        """Record that ``seg`` was sent (RFC 6675 (C.2)-(C.4)).

        A retransmission raises HighRxt to its end (HEAD also sets RescueRxt
        there, step 4.3); the rescue sets RescueRxt to RecoveryPoint and
        leaves HighRxt alone; new data raises HighData. The caller may send
        less than ``seg.length`` (``seg._replace(length=n)``).
        """
        start = self._offset(seg.seq)
        end = start + seg.length
        if seg.rule is NextSegRule.NEW:
            if end > self._hd:
                self._hd = end
        elif seg.rule is NextSegRule.RESCUE:
            self._rescue = self._rp
        else:
            self._advance_rxt(min(end, self._hd))
            if seg.rule is NextSegRule.HEAD:
                self._rescue = end

    def _advance_rxt(self, end: int) -> None:
        rxt = self._rxt
        if end <= rxt:
            return
        starts = self._starts
        ends = self._ends
        i = bisect_right(ends, rxt)
        while i < len(starts) and starts[i] < end:
            lo = starts[i] if starts[i] > rxt else rxt
            hi = ends[i] if ends[i] < end else end
            self._sbr += hi - lo
            i += 1
        self._rxt = end

    def mark_lost(self, end_seq: int) -> None:
        """Declare every unSACKed byte below ``end_seq`` lost (RACK, RFC 8985; or an RTO).

        The mark is a boundary, like IsLost's, and lasts until the
        cumulative ACK passes it.
        """
        off = min(self._offset(end_seq), self._hd)
        if off > self._lost_floor:
            self._lost_floor = off

    def on_rto(self) -> None:
        """Retransmission timeout (RFC 6675 section 5.1; Linux's ``tcp_enter_loss``).

        Recovery ends, RecoveryPoint becomes HighData (no new recovery until it
        is acknowledged), every unSACKed outstanding byte is lost and
        retransmission starts again from ``snd_una`` (HighRxt reset). SACK
        information is kept, as the RFC recommends; :meth:`clear` drops it
        when the receiver is suspected of reneging.
        """
        self.in_recovery = False
        self._rp = self._hd
        self._rescue = None
        self._rxt = self._ua
        self._sbr = 0
        self.mark_lost(self._seq(self._hd))

    def end_recovery(self) -> None:
        """Leave recovery early (an undo proved it spurious); RecoveryPoint stays.

        No new recovery starts before ``snd_una`` passes the old recovery
        point, as after a normal one.
        """
        self.in_recovery = False

    def clear_lost(self) -> None:
        """Forget timer-declared losses (a spurious RTO undone, ``tcp_undo_cwnd_reduction``)."""
        self._lost_floor = self._ua
        self._rxt = self._ua
        self._sbr = 0

    def clear(self) -> None:
        """Forget all SACK information (reneging, RFC 2018 section 8)."""
        self._starts = self._ends = _NO_INTERVALS
        self._sacked = 0
        self._sbr = 0
