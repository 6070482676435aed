"""RACK-TLP (RFC 8985): time-based loss detection and tail loss probes, as Linux does them.

RACK ("recent acknowledgment") replaces counting duplicate ACKs with time:
once a segment sent *later* than some outstanding segment has been
delivered, the outstanding one is lost when it has stayed undelivered for
longer than the RTT of that delivery plus a reordering window. One
reordered or one lost retransmission no longer waits for three duplicate
ACKs or an RTO. TLP ("tail loss probe") covers the case where no later
segment exists to be delivered: after about two RTTs without an ACK the
sender sends one probe segment (new data, or the last segment again), whose
ACK or SACK then lets RACK or the normal recovery find the loss.

This module holds the state (RFC 8985 section 6.1's ``RACK.*`` and
``TLP.*`` variables) and the per-segment transmit log RACK needs; it sends
nothing and reads no clock. The connection (:mod:`.input`, :mod:`.output`,
:mod:`.connection`) feeds it every transmission (:meth:`Rack.on_send`),
every ACK (:meth:`Rack.on_ack`) and asks it for losses
(:meth:`Rack.detect_loss`), which it reports to the SACK scoreboard.

The transmit log
    One record per transmitted segment: ```(start, end, xmit_ts, flags)``
    with ``start``/``end`` stream offsets (unbounded integers counted from
    the ``snd_una`` the log was created with, as in :mod:`.sack`, so nothing
    goes wrong at the 2**32 wrap). Records live in two lists: ``_recs`` in
    sequence order (cumulative ACKs pop from the front, SACKs bisect into
    it) and ``_tq`` in transmission-time order, the equivalent of Linux's
    ``tsorted_sent_queue``: original transmissions are appended as sent and
    a retransmission appends a new entry for its record, leaving the old
    one stale. Stale, delivered and lost entries are skipped at the front,
    so the loss walk (RFC 8985 ``RACK_detect_loss``) visits only segments
    still in flight and sent before the most recently delivered one. With
    no loss there are no SACKs, the walk never runs, and every ACK costs a
    pop per acknowledged record: O(1) amortised.

Deviations, each as Linux or documented here:

- A retransmission that covers part of a record (after the MSS shrank)
  stamps the whole record; Linux splits the skb. Loss of the untouched part
  is then found by the next RACK round or the RTO.
- Losses are reported to the byte-based scoreboard as a boundary
  (:meth:`SackScoreboard.mark_lost`) for first transmissions, which are in
  time order and sequence order at once, so RACK's lost set among them is a
  prefix; a lost *retransmission* is reported separately
  (:attr:`Rack.lost_rtx`) for the connection to send again, as Linux's
  ``tcp_rack_mark_lost`` marks it lost for ``tcp_xmit_retransmit_queue``.
- The retransmission-ambiguity check of ``RACK_update`` uses the minimum
  RTT only (a retransmission acknowledged faster than the path's minimum RTT
  was acknowledged for its original); the per-segment TSval check needs a
  TSval per record, which the log does not keep.
"""

from __future__ import annotations

from bisect import bisect_left
from operator import itemgetter
from typing import Any

from aiostack.wire.seqnum import SEQ_MASK

__all__ = [
    "RACK_RECOVERY_THRESH",
    "TCP_RACK_LOSS_DETECTION",
    "TCP_RACK_NO_DUPTHRESH",
    "TCP_RACK_STATIC_REO_WND",
    "TCP_TIMEOUT_MIN",
    "TLP_MAX_ACK_DELAY",
    "TLP_PTO_NO_SRTT",
    "Rack",
]

#: ``net.ipv4.tcp_recovery`` bits (Linux ``TCP_RACK_*``).
TCP_RACK_LOSS_DETECTION = 0x1
TCP_RACK_STATIC_REO_WND = 0x2
TCP_RACK_NO_DUPTHRESH = 0x4
#: ``TCP_RACK_RECOVERY_THRESH``: recoveries a widened reordering window survives
#: without a new D-SACK (RFC 8985 6.2 step 4, ``RACK.reo_wnd_persist``).
RACK_RECOVERY_THRESH = 16
#: Largest reordering-window multiplier (Linux keeps ``reo_wnd_steps`` in a byte).
_REO_WND_MULT_MAX = 0xFF
#: TLP's allowance for a delayed ACK when one segment is in flight: RFC 8985's
#: ``WCDelAckT``; Linux adds ``TCP_RTO_MIN`` (200 ms).
TLP_MAX_ACK_DELAY = 0.2
#: Linux adds ``TCP_TIMEOUT_MIN`` (2 jiffies) to the PTO otherwise.
TCP_TIMEOUT_MIN = 0.002
#: RFC 8985 7.2: the PTO without an RTT sample.
TLP_PTO_NO_SRTT = 1.0
#: Default DupThresh for the reordering window's shortcut (the connection
#: passes its own ``tp->reordering``, which starts at ``tcp_reordering``).
_DUP_THRESH = 3

_HALF = 1 << 31
#: Record flags.
RETRANS = 0x1
SACKED = 0x2
LOST = 0x4
_GONE = SACKED | LOST
#: Compact a log list once this many entries at its front are dead.
_COMPACT = 256


#: A record: ``[start, end, xmit_ts, flags]`` (a list: built without a call).
_Seg = list[Any]
_START = 0
_END = 1
_TS = 2
_FLAGS = 3
_key_end = itemgetter(_END)


class Rack:
    """RFC 8985's per-connection state plus the transmit log (module docstring).

    ``xmit_ts``/``end`` describe ``RACK.segment``, the most recently sent
    segment delivered so far (``None`` before any); ``rtt`` is its RTT
    (``RACK.rtt``); ``fack`` the highest end delivered (``RACK.fack``).
    ``tlp_high_seq`` is ``TLP.end_seq`` while a probe is outstanding (Linux's
    ``tlp_high_seq``), with ``tlp_retrans`` telling whether it was a
    retransmission.
    """

    __slots__ = (
        "_recs",
        "_rh",
        "_th",
        "_tq",
        "_ua",
        "_una",
        "dsack_round",
        "end",
        "fack",
        "lost_rtx",
        "no_dupthresh",
        "pto_base",
        "pto_one",
        "reo_wnd_mult",
        "reo_wnd_persist",
        "reord_dist",
        "reordering_seen",
        "rtt",
        "special",
        "static_reo_wnd",
        "tlp_high_seq",
        "tlp_retrans",
        "tlp_start",
        "xmit_ts",
    )

    def __init__(self, snd_una: int, *, recovery: int = TCP_RACK_LOSS_DETECTION) -> None:
        self._una = snd_una & SEQ_MASK
        self._ua = 0
        self._recs: list[_Seg] = []
        self._rh = 0
        self._tq: list[tuple[float, _Seg]] | None = None
        self._th = 0
        #: Outstanding records with a flag set (retransmitted, SACKed, lost);
        #: 0 means nothing has gone wrong and ACKs take the fast path.
        self.special = 0
        self.xmit_ts: float | None = None
        self.end = 0
        self.rtt = 0.0
        self.fack = 0
        self.reordering_seen = False
        #: How far below ``RACK.fack`` the lowest never-retransmitted segment
        #: delivered by the last :meth:`on_ack` lay (bytes; 0: no reordering
        #: seen by that ACK). Linux ``tcp_check_sack_reordering``'s metric,
        #: from which the connection raises its reordering degree.
        self.reord_dist = 0
        self.reo_wnd_mult = 1
        self.reo_wnd_persist = 0
        self.dsack_round: int | None = None
        self.static_reo_wnd = bool(recovery & TCP_RACK_STATIC_REO_WND)
        self.no_dupthresh = bool(recovery & TCP_RACK_NO_DUPTHRESH)
        #: Lost retransmissions found by the last :meth:`detect_loss`, as
        #: ``(start_seq, length)``, for the connection to send again.
        self.lost_rtx: list[tuple[int, int]] = []
        self.tlp_high_seq: int | None = None
        #: The latest send or ACK of new data the PTO counts from, and
        #: whether it was armed for a single segment in flight. The PTO is
        #: re-armed lazily: ACKs only move ``pto_base``, and the timer,
        #: when it fires early, re-arms itself from there (see
        #: :func:`aiostack.core.tcp.loss.on_loss_probe_timer`).
        self.pto_base = 0.0
        self.pto_one = False
        self.tlp_retrans = False
        self.tlp_start = 0

    # -- conversions -------------------------------------------------------

    def _offset(self, seq: int) -> int:
        return self._ua + ((seq - self._una + _HALF) & SEQ_MASK) - _HALF

    def _seq(self, off: int) -> int:
        return (self._una + off - self._ua) & SEQ_MASK

    @property
    def outstanding(self) -> int:
        """Records in the log not yet cumulatively acknowledged."""
        return len(self._recs) - self._rh

    def last_segment(self) -> tuple[int, int] | None:
        """``(start_seq, length)`` of the highest segment sent (TLP's retransmission probe)."""
        if len(self._recs) == self._rh:
            return None
        rec = self._recs[-1]
        start = rec[_START] if rec[_START] > self._ua else self._ua
        return self._seq(start), rec[_END] - start

    # -- transmissions -----------------------------------------------------

    def on_send(self, seq: int, end_seq: int, now: float) -> None:
        """A first transmission of ``[seq, end_seq)`` (data and/or FIN) at ``now``."""
        ua = self._ua
        una = self._una
        rec = [
            ua + ((seq - una + _HALF) & SEQ_MASK) - _HALF,
            ua + ((end_seq - una + _HALF) & SEQ_MASK) - _HALF,
            now,
            0,
        ]
        self._recs.append(rec)
        tq = self._tq
        if tq is not None:
            tq.append((now, rec))

    def _time_queue(self) -> list[tuple[float, _Seg]]:
        """The time-ordered queue, built from the log when first needed.

        While no outstanding record is retransmitted or SACKed, transmission
        order is sequence order and the queue would only mirror ``_recs``,
        so it does not exist (no cost per segment while nothing is lost).
        """
        tq = self._tq
        if tq is None:
            tq = self._tq = [(rec[_TS], rec) for rec in self._recs[self._rh :]]
            self._th = 0
        return tq

    def on_retransmit(self, seq: int, length: int, now: float) -> None:
        """``length`` sequence numbers from ``seq`` were sent again at ``now``."""
        s = self._offset(seq)
        e = s + length
        recs = self._recs
        i = bisect_left(recs, s + 1, lo=self._rh, key=_key_end)
        tq = self._time_queue()
        while i < len(recs) and recs[i][_START] < e:
            rec = recs[i]
            flags = rec[_FLAGS]
            if not flags & SACKED:
                if not flags:
                    self.special += 1
                rec[_TS] = now
                rec[_FLAGS] = (flags | RETRANS) & ~LOST
                tq.append((now, rec))
            i += 1

    # -- ACKs ----------------------------------------------------------------

    def on_ack(
        self,
        now: float,
        ack: int,
        sacked: list[tuple[int, int]],
        *,
        min_rtt: float,
    ) -> bool:
        """RFC 8985 ``RACK_update`` and ``RACK_detect_reordering`` for one ACK.

        ``ack`` is the cumulative acknowledgment; ``sacked`` the sequence
        ranges SACKed for the first time by this ACK (from the scoreboard).
        A record counts as SACKed when its last byte is newly SACKed (the
        receiver SACKs whole segments). Every record delivered by either is
        considered for ``RACK.segment``: the newest transmission wins, except
        that a retransmission delivered faster than ``min_rtt`` (seconds; 0
        when unknown) is taken to be an ACK of its original and skipped.
        Returns whether ``RACK.segment`` advanced.

        While no outstanding record was retransmitted or SACKed (no loss),
        the newest record acknowledged is simply the last one below ``ack``:
        a step per record, nothing else.
        """
        best_ts = self.xmit_ts
        best_end = self.end
        best_rtt = self.rtt
        advanced = False
        low = -1  # lowest start of a never-retransmitted record delivered below fack
        ack_off = self._ua + ((ack - self._una + _HALF) & SEQ_MASK) - _HALF
        recs = self._recs
        h = self._rh
        fack = self.fack
        if ack_off > self._ua:
            if not self.special:
                n = len(recs)
                k = h
                while k < n and recs[k][_END] <= ack_off:
                    k += 1
                if k > h:
                    rec = recs[k - 1]
                    ts = rec[_TS]
                    end = rec[_END]
                    if end > fack:
                        fack = end
                    if best_ts is None or ts > best_ts or (ts == best_ts and end > best_end):
                        best_ts, best_end, best_rtt = ts, end, now - ts
                        advanced = True
                    h = k
            else:
                n = len(recs)
                while h < n and recs[h][_END] <= ack_off:
                    rec = recs[h]
                    flags = rec[_FLAGS]
                    h += 1
                    if flags:
                        self.special -= 1
                        if flags & SACKED:
                            continue
                    ts = rec[_TS]
                    end = rec[_END]
                    if end > fack:
                        fack = end
                    elif end < fack and not flags & RETRANS:
                        self.reordering_seen = True
                        if low < 0 or rec[_START] < low:
                            low = rec[_START]
                    if flags & RETRANS and now - ts < min_rtt:
                        continue
                    if best_ts is None or ts > best_ts or (ts == best_ts and end > best_end):
                        best_ts, best_end, best_rtt = ts, end, now - ts
                        advanced = True
            if h > _COMPACT and 2 * h > len(recs):
                del recs[:h]
                h = 0
            self._rh = h
            self._ua = ack_off
            self._una = ack & SEQ_MASK
        # Newly SACKed records.
        for s_seq, e_seq in sacked:
            s = self._offset(s_seq)
            e = self._offset(e_seq)
            i = bisect_left(recs, s + 1, lo=self._rh, key=_key_end)
            while i < len(recs) and recs[i][_START] < e:
                rec = recs[i]
                i += 1
                flags = rec[_FLAGS]
                if flags & SACKED or rec[_END] > e:
                    continue
                if not flags:
                    self.special += 1
                    self._time_queue()
                rec[_FLAGS] = flags | SACKED
                ts = rec[_TS]
                end = rec[_END]
                if end > fack:
                    fack = end
                elif end < fack and not flags & RETRANS:
                    self.reordering_seen = True
                    if low < 0 or rec[_START] < low:
                        low = rec[_START]
                if flags & RETRANS and now - ts < min_rtt:
                    continue
                if best_ts is None or ts > best_ts or (ts == best_ts and end > best_end):
                    best_ts, best_end, best_rtt = ts, end, now - ts
                    advanced = True
        self.fack = fack
        self.reord_dist = fack - low if low >= 0 else 0
        if advanced:
            self.xmit_ts = best_ts
            self.end = best_end
            self.rtt = best_rtt
        if self._tq is not None:
            if not self.special:
                self._tq = None  # back to "time order is sequence order"
            else:
                self._trim()
        return advanced

    def on_clean_ack(self, now: float, ack: int) -> None:
        """:meth:`on_ack` for the usual ACK: no SACK blocks, nothing flagged (``special == 0``).

        The records below ``ack`` are popped and the last of them, the
        newest transmission, becomes ``RACK.segment``. Kept apart from
        :meth:`on_ack` because it runs for every ACK of a loss-free flow.
        """
        ua = self._ua
        ack_off = ua + ((ack - self._una + _HALF) & SEQ_MASK) - _HALF
        if ack_off <= ua:
            return
        recs = self._recs
        h = k = self._rh
        n = len(recs)
        while k < n and recs[k][_END] <= ack_off:
            k += 1
        if k > h:
            rec = recs[k - 1]
            ts = rec[_TS]
            end = rec[_END]
            if end > self.fack:
                self.fack = end
            best = self.xmit_ts
            if best is None or ts > best or (ts == best and end > self.end):
                self.xmit_ts = ts
                self.end = end
                self.rtt = now - ts
            if k > _COMPACT and 2 * k > n:
                del recs[:k]
                k = 0
            self._rh = k
        self._ua = ack_off
        self._una = ack & SEQ_MASK
        self._tq = None  # nothing flagged: time order is sequence order again

    def _stale(self, ts: float, rec: _Seg) -> bool:
        """A time-queue entry no longer in flight: delivered, lost, or sent again since."""
        return bool(rec[_FLAGS] & _GONE) or rec[_TS] != ts or rec[_END] <= self._ua

    def _trim(self) -> None:
        """Drop dead entries at the front of the time queue (amortised O(1))."""
        tq = self._tq
        if tq is None:
            return
        th = self._th
        n = len(tq)
        while th < n:
            ts, rec = tq[th]
            if not self._stale(ts, rec):
                break
            th += 1
        if th > _COMPACT and 2 * th > n:
            del tq[:th]
            th = 0
        self._th = th

    # -- the reordering window -----------------------------------------------

    def on_dsack(self, snd_una: int, snd_nxt: int) -> None:
        """A D-SACK arrived: widen the window once per round trip (RFC 8985 6.2 step 4)."""
        if self.static_reo_wnd:
            return
        if self.dsack_round is not None and ((snd_una - self.dsack_round) & SEQ_MASK) < _HALF:
            self.dsack_round = None
        if self.dsack_round is None:
            self.dsack_round = snd_nxt & SEQ_MASK
            if self.reo_wnd_mult < _REO_WND_MULT_MAX:
                self.reo_wnd_mult += 1
            self.reo_wnd_persist = RACK_RECOVERY_THRESH

    def on_recovery_end(self) -> None:
        """Fast or RTO recovery ended: the widened window fades after 16 of them."""
        if self.reo_wnd_persist > 0:
            self.reo_wnd_persist -= 1
        if self.reo_wnd_persist <= 0:
            self.reo_wnd_mult = 1

    def reo_wnd(
        self,
        *,
        in_recovery: bool,
        sacked_segs: int,
        min_rtt: float,
        srtt: float,
        dupthresh: int = _DUP_THRESH,
    ) -> float:
        """``RACK.reo_wnd`` in seconds (RFC 8985 6.2 step 4, Linux ``tcp_rack_reo_wnd``).

        Zero (no reordering allowance) until reordering has been seen, when
        already recovering, or once ``dupthresh`` segments are SACKed (Linux
        compares ``sacked_out`` with ``tp->reordering``; unless
        ``tcp_recovery`` has the no-dupthresh bit); else
        ``min(reo_wnd_mult * min_rtt / 4, srtt)``.
        """
        if not self.reordering_seen:
            if in_recovery:
                return 0.0
            if not self.no_dupthresh and sacked_segs >= dupthresh:
                return 0.0
        wnd = self.reo_wnd_mult * min_rtt / 4
        return wnd if wnd < srtt else srtt

    # -- loss detection --------------------------------------------------------

    def detect_loss(self, now: float, reo_wnd: float) -> tuple[int | None, float]:
        """RFC 8985 ``RACK_detect_loss``: mark what has waited too long.

        Walks the segments in flight sent before ``RACK.segment``: each
        whose ``xmit_ts + RACK.rtt + reo_wnd`` has passed is lost. Returns
        ``(end_seq, timeout)``: the end of the highest lost first
        transmission (``None`` if none; everything unSACKed below it is lost
        too) and the seconds until the last one still waiting would be (0.0
        when none waits; the caller arms the reorder timer with it). Lost
        retransmissions are appended to :attr:`lost_rtx`.
        """
        rack_ts = self.xmit_ts
        if rack_ts is None:
            return None, 0.0
        rack_end = self.end
        deadline = self.rtt + reo_wnd
        lost_end = -1
        timeout = 0.0
        tq = self._time_queue()
        th = self._th
        n = len(tq)
        i = th
        while i < n:
            ts, rec = tq[i]
            flags = rec[_FLAGS]
            if self._stale(ts, rec):
                if i == th:
                    th += 1
                i += 1
                continue
            # RACK_sent_after(RACK.xmit_ts, RACK.end_seq, ts, end): else stop,
            # everything later in the queue was sent later still.
            if not (rack_ts > ts or (rack_ts == ts and rack_end > rec[_END])):
                break
            remaining = ts + deadline - now
            if remaining <= 0:
                if not flags:
                    self.special += 1
                rec[_FLAGS] = flags | LOST
                if flags & RETRANS:
                    start = rec[_START] if rec[_START] > self._ua else self._ua
                    self.lost_rtx.append((self._seq(start), rec[_END] - start))
                elif rec[_END] > lost_end:
                    lost_end = rec[_END]
                if i == th:
                    th += 1
            elif remaining > timeout:
                timeout = remaining
            i += 1
        self._th = th
        return (self._seq(lost_end) if lost_end >= 0 else None), timeout

    def retrans_outstanding(self) -> bool:
        """Whether a retransmitted segment is still neither acknowledged nor SACKed.

        Linux's ``retrans_out != 0``, for the partial-ACK undo; a walk of the
        outstanding records, run only when a partial ACK looks delayed.
        """
        recs = self._recs
        for i in range(self._rh, len(recs)):
            flags = recs[i][_FLAGS]
            if flags & RETRANS and not flags & SACKED:
                return True
        return False

    def on_rto(self) -> None:
        """A retransmission timeout: the probe episode ends; losses are the RTO's now."""
        self.tlp_high_seq = None
        self.lost_rtx.clear()

    # -- TLP -------------------------------------------------------------------

    @staticmethod
    def pto(srtt: float, one_segment: bool, rto_left: float) -> float:
        """RFC 8985 7.2 ``TLP_calc_PTO`` with Linux's constants (``tcp_schedule_loss_probe``).

        ``2 * SRTT``, plus the worst-case delayed ACK (200 ms) when only one
        segment is in flight (its ACK may be delayed) or 2 ms otherwise;
        1 s without an RTT sample; never later than the RTO would fire.
        """
        if srtt > 0:
            pto = 2 * srtt + (TLP_MAX_ACK_DELAY if one_segment else TCP_TIMEOUT_MIN)
        else:
            pto = TLP_PTO_NO_SRTT
        return pto if pto < rto_left else rto_left
