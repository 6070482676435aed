"""Reno congestion avoidance (RFC 5681) and NewReno fast recovery (RFC 6582).

Two pieces, because Linux keeps them apart too:

- :class:`NewReno` is the ``TCP_CONGESTION`` algorithm Linux calls ``reno``
  (``tcp_reno_cong_avoid``, ``tcp_reno_ssthresh``, ``tcp_reno_undo_cwnd`` in
  ``net/ipv4/tcp_cong.c``): slow start, +1 segment per window per round trip,
  halve on loss. Any connection may use it, with or without SACK.
- :class:`NewRenoRecovery` is the loss-recovery bookkeeping of RFC 6582 for
  a connection *without* SACK: counting duplicate ACKs, the ``recover``
  point that keeps one window's losses to one reduction, and telling full
  from partial ACKs (a partial ACK means another hole: retransmit it at
  once rather than wait for three more duplicates or a timeout). Linux does
  this in ``tcp_fastretrans_alert`` for ``tcp_is_reno`` sockets.

Deviation from RFC 6582's text, following Linux: the window during recovery
is not "ssthresh + 3, inflated by one per duplicate ACK, deflated on partial
ACKs" (RFC 6582 3.2 steps 2-3) but set by Proportional Rate Reduction
(RFC 6937) in :meth:`CongestionControl.on_recovery_ack`, for SACK and
non-SACK connections alike, as Linux has done since 3.2. Each duplicate
ACK counts as one delivered segment there. PRR sends at the same average
rate without inflation's burst at the end of recovery, and ends recovery
with ``cwnd = ssthresh`` as RFC 6582's full-ACK step allows.
Also like Linux, ``ssthresh`` halves ``cwnd`` (``tcp_reno_ssthresh``) where
RFC 5681 eq. 4 halves FlightSize; the two differ only when the sender was
not using its window, and Linux avoids growing an unused window anyway.
"""

from __future__ import annotations

from enum import Enum

from aiostack.core.tcp.congestion import CongestionControl
from aiostack.wire.seqnum import seq_ge, seq_gt

__all__ = ["DUPACK_THRESHOLD", "NewReno", "NewRenoRecovery", "RecoveryAction"]

#: ``TCP_FASTRETRANS_THRESH``/RFC 5681 DupThresh: duplicate ACKs that mean loss.
DUPACK_THRESHOLD = 3
#: The duplicate-ACK counter saturates here instead of growing without bound
#: (a peer can send any number of duplicates).
_DUPACK_CAP = 0xFFFF


class NewReno(CongestionControl):
    """Linux's ``reno``: RFC 5681 slow start and congestion avoidance, counted in segments."""

    __slots__ = ()
    name = "reno"

    def recalc_ssthresh(self) -> int:
        """``tcp_reno_ssthresh``: half the window, at least 2 segments (RFC 5681 eq. 4)."""
        return max(self.cwnd >> 1, 2)

    def cong_avoid(self, now: float, acked: int) -> None:
        """``tcp_reno_cong_avoid``: slow start below ssthresh, then +1 per cwnd acked.

        Counting acknowledged segments rather than ACKs (RFC 3465 appropriate
        byte counting with L = ssthresh) keeps delayed or stretch ACKs from
        slowing growth; the part of an ACK past ssthresh goes to
        congestion avoidance.
        """
        if self.in_slow_start:
            acked = self.slow_start(acked)
            if not acked:
                return
        self.cong_avoid_ai(self.cwnd, acked)


class RecoveryAction(Enum):
    """What the sender should do after :class:`NewRenoRecovery` saw an ACK."""

    #: Nothing beyond normal processing.
    NONE = "none"
    #: First or second duplicate ACK: RFC 3042 limited transmit may send
    #: one new segment (if the receive window allows).
    LIMITED_TRANSMIT = "limited_transmit"
    #: Third duplicate ACK: retransmit the first unacknowledged segment and
    #: call :meth:`CongestionControl.on_congestion_event`.
    FAST_RETRANSMIT = "fast_retransmit"
    #: An ACK inside recovery that does not reach ``recover``: retransmit the
    #: (new) first unacknowledged segment now (RFC 6582 3.2 step 3).
    PARTIAL_ACK = "partial_ack"
    #: An ACK that reaches ``recover``: recovery is over, call
    #: :meth:`CongestionControl.exit_recovery`.
    FULL_ACK = "full_ack"


class NewRenoRecovery:
    """RFC 6582 fast retransmit and fast recovery state of one non-SACK connection.

    ``recover`` starts at the ISS (RFC 6582 3.2 step 1). Feed every
    duplicate ACK (RFC 5681 section 2: no data, no SYN/FIN, unchanged
    window, ``SEG.ACK == SND.UNA`` with data outstanding) to
    :meth:`on_dupack` and every ACK that advances ``snd_una`` to
    :meth:`on_new_ack`; act on the returned :class:`RecoveryAction`.
    """

    __slots__ = ("dupacks", "dupthresh", "in_recovery", "partial_acks", "recover")

    def __init__(self, iss: int, *, dupthresh: int = DUPACK_THRESHOLD) -> None:
        if dupthresh < 1:
            raise ValueError(f"dupthresh must be >= 1, got {dupthresh}")
        self.recover = iss
        self.dupthresh = dupthresh
        #: Duplicate ACKs since the last ACK that advanced ``snd_una`` (saturating).
        self.dupacks = 0
        self.in_recovery = False
        #: Partial ACKs seen in this recovery; the first one also restarts the
        #: retransmission timer (RFC 6582 3.2 step 3, the "impatient" variant).
        self.partial_acks = 0

    def on_dupack(self, snd_una: int, snd_nxt: int) -> RecoveryAction:
        """A duplicate ACK arrived (``snd_una`` is its ACK field).

        The third one starts fast retransmit only if the ACK covers more
        than ``recover`` (RFC 6582 3.2 step 2): duplicates caused by our own
        retransmissions from the previous recovery (or timeout) must not
        trigger a second reduction for the same window of data. Entering
        recovery sets ``recover`` to ``snd_nxt``, the highest sequence sent.
        """
        if self.dupacks < _DUPACK_CAP:
            self.dupacks += 1
        if self.in_recovery:
            return RecoveryAction.NONE
        if self.dupacks < self.dupthresh:
            return RecoveryAction.LIMITED_TRANSMIT
        if self.dupacks == self.dupthresh and seq_gt(snd_una, self.recover):
            self.recover = snd_nxt
            self.in_recovery = True
            self.partial_acks = 0
            return RecoveryAction.FAST_RETRANSMIT
        return RecoveryAction.NONE

    def on_new_ack(self, ack: int) -> RecoveryAction:
        """An ACK advanced ``snd_una`` to ``ack``: classify it (RFC 6582 3.2 step 3).

        In recovery, an ACK at or beyond ``recover`` is a full ACK and ends
        it; one below is a partial ACK, which reveals the next hole.
        """
        self.dupacks = 0
        if not self.in_recovery:
            return RecoveryAction.NONE
        if seq_ge(ack, self.recover):
            self.in_recovery = False
            return RecoveryAction.FULL_ACK
        self.partial_acks += 1
        return RecoveryAction.PARTIAL_ACK

    def on_rto(self, snd_nxt: int) -> None:
        """The retransmission timer fired (RFC 6582 3.2 step 4).

        Record the highest sequence sent in ``recover`` and leave fast
        recovery: the duplicates the go-back-N retransmissions will provoke
        must not start a fast retransmit of their own.
        """
        self.recover = snd_nxt
        self.in_recovery = False
        self.dupacks = 0
