"""Round-trip time estimation and the retransmission timeout (RFC 6298), as Linux does it.

One :class:`RttEstimator` per connection. The control block feeds it the RTT
samples an ACK yields (:meth:`RttEstimator.on_ack`, Linux's
``tcp_ack_update_rtt``), doubles the timeout when the retransmission timer
fires (:meth:`RttEstimator.backoff`, from ``tcp_retransmit_timer``) and reads
:attr:`RttEstimator.rto` to arm that timer. Nothing here reads a clock: RTT
samples are durations the caller measured on its own ``now``.

Why Linux's arithmetic rather than the RFC's text
-------------------------------------------------
RFC 6298 section 2 computes ``SRTT``/``RTTVAR`` with gains 1/8 and 1/4 and
``RTO = SRTT + max(G, 4*RTTVAR)``, at least 1 s. Linux (``tcp_rtt_estimator``
and ``tcp_set_rto`` in ``net/ipv4/tcp_input.c``) keeps the gains but differs
in ways a Linux peer, ``ss -ti`` and packetdrill scripts all make visible, so
this module reproduces it to the microsecond:

- Integers in microseconds with the kernel's scaling: ``srtt_us`` holds
  8*SRTT, ``mdev_us`` and ``rttvar_us`` hold 4*deviation. Rounding therefore
  truncates exactly where the kernel's shifts do.
- The variance term added to SRTT is not ``4*RTTVAR`` of the latest sample but
  ``rttvar_us``: the largest ``mdev`` seen during the last flight of data
  (``mdev_max_us``), never below ``TCP_RTO_MIN``. That lower bound is how
  Linux's 200 ms minimum enters: ``RTO = SRTT + max(TCP_RTO_MIN, 4*mdev)``,
  so a 50 us loopback path gets ``rto:201`` in ``ss``, not 200. ``rttvar_us``
  decays a quarter of the way toward ``mdev_max_us`` once per flight (when
  ``snd_una`` passes ``rtt_seq``), not per sample: a burst of ACKs for one
  window does not collapse the timeout.
- When a sample is *below* SRTT, its deviation counts only 1/32 instead of
  1/4 (an Eifel-like rule: an RTT drop must not inflate the RTO).
- The timeout is kept in jiffies (``usecs_to_jiffies`` rounds up), so it is a
  whole multiple of the tick (1 ms for ``CONFIG_HZ=1000``); the maximum is
  ``TCP_RTO_MAX`` = 120 s, the initial value ``TCP_TIMEOUT_INIT`` = 1 s (RFC
  6298 2.1), and 3 s (``TCP_TIMEOUT_FALLBACK``, RFC 6298 5.7) when the
  handshake produced no sample.
- ``tcp_info`` reports ``rtt = srtt_us >> 3`` and ``rttvar = mdev_us >> 2``
  (the current mean deviation, not the max-tracking ``rttvar_us``); the
  properties :attr:`RttEstimator.rtt_us`, :attr:`RttEstimator.rttvar_us` and
  :attr:`RttEstimator.rto_us` give exactly those fields.

Karn's algorithm (RFC 6298 section 3, Karn and Partridge 1987) is enforced in
:meth:`RttEstimator.on_ack`: a timing taken from transmit times is discarded
when any retransmitted segment was cumulatively acknowledged, because the ACK
may be for either copy. A timestamp echo (RFC 7323 section 4) is
unambiguous, since it names the transmission it answers, so it still yields a
sample. The backed-off timeout stays in force until a valid sample arrives,
which is what clears the backoff (RFC 6298 5.7 note, Linux sets
``icsk_backoff = 0`` only in ``tcp_ack_update_rtt``).

Also here, because ``tcp_info.min_rtt`` and CUBIC need it: the windowed
minimum RTT (``tcp_update_rtt_min``), a Kathleen Nichols running-min filter
over ``net.ipv4.tcp_min_rtt_wlen`` (300 s) as in ``lib/minmax.c``.
"""

from __future__ import annotations

from aiostack.core.tcp.isn import TCP_TS_HZ
from aiostack.wire.seqnum import SEQ_MASK

__all__ = [
    "TCP_MIN_RTT_WLEN",
    "TCP_RTO_MAX",
    "TCP_RTO_MIN",
    "TCP_TIMEOUT_FALLBACK",
    "TCP_TIMEOUT_INIT",
    "TCP_TS_HZ",
    "MinRttFilter",
    "RttEstimator",
    "ts_rtt",
]

#: ``TCP_RTO_MIN`` (HZ/5): the floor of the variance term, hence of the RTO.
TCP_RTO_MIN = 0.2
#: ``TCP_RTO_MAX`` (120*HZ): no timeout, however backed off, exceeds this.
TCP_RTO_MAX = 120.0
#: ``TCP_TIMEOUT_INIT`` (1*HZ): the RTO before any RTT sample (RFC 6298 2.1).
TCP_TIMEOUT_INIT = 1.0
#: ``TCP_TIMEOUT_FALLBACK`` (3*HZ): the RTO once established when the
#: handshake gave no sample (RFC 6298 5.7).
TCP_TIMEOUT_FALLBACK = 3.0
#: ``net.ipv4.tcp_min_rtt_wlen``: seconds the min-RTT filter remembers.
TCP_MIN_RTT_WLEN = 300.0

_USEC = 1_000_000
_HALF = 1 << 31


def _usec(seconds: float) -> int:
    """Seconds as whole microseconds (to nearest: float seconds are inexact)."""
    return round(seconds * _USEC)


_RTO_MIN_US = _usec(TCP_RTO_MIN)
_RTO_MAX_US = _usec(TCP_RTO_MAX)
_RTO_INIT_US = _usec(TCP_TIMEOUT_INIT)
_TICK_US = _usec(0.001)


def ts_rtt(ts_now: int, tsecr: int) -> float | None:
    """RTT from a timestamp echo (RFC 7323 section 4.1), Linux's ``tcp_rtt_tsopt_us``.

    ``ts_now`` is our current TSval clock (including our per-connection
    offset) and ``tsecr`` the echoed value, both in :data:`TCP_TS_HZ` ticks
    modulo 2**32. A difference of 0 ticks counts as one tick (1 ms): the echo
    proves at least that much granularity, and 0 would be no sample at all.
    An echo from the future (difference >= 2**31 ticks) is ``None``, as
    Linux returns -1 for it; the caller then has no sample.
    """
    delta = (ts_now - tsecr) & SEQ_MASK
    if delta >= 1 << 31:
        return None
    return max(delta, 1) / TCP_TS_HZ


class MinRttFilter:
    """Windowed running minimum (``lib/minmax.c``: ``minmax_running_min``).

    Keeps the best, second-best and third-best samples from successive
    sub-windows, so that the minimum over the last ``window`` seconds is
    known in O(1) memory and time, and an old minimum expires instead of
    pinning the estimate forever (a route change can lengthen the path).
    Six plain slots rather than a list of tuples: one lives in every
    connection.
    """

    __slots__ = ("_t0", "_t1", "_t2", "_v0", "_v1", "_v2")

    def __init__(self) -> None:
        self._t0 = self._t1 = self._t2 = 0.0
        self._v0 = self._v1 = self._v2 = -1  # -1: no sample yet

    @property
    def value(self) -> int | None:
        """The current windowed minimum, or ``None`` before any sample."""
        return self._v0 if self._v0 >= 0 else None

    def reset(self, now: float, value: int) -> int:
        """Forget everything and start from one sample (``minmax_reset``)."""
        self._t0 = self._t1 = self._t2 = now
        self._v0 = self._v1 = self._v2 = value
        return value

    def update(self, now: float, value: int, window: float) -> int:
        """Add a sample taken at ``now``; return the minimum over ``window`` seconds."""
        if self._v0 < 0 or value <= self._v0 or now - self._t2 > window:
            return self.reset(now, value)  # a new minimum, or nothing left in the window
        if value <= self._v1:
            self._t1 = self._t2 = now
            self._v1 = self._v2 = value
        elif value <= self._v2:
            self._t2 = now
            self._v2 = value
        # minmax_subwin_update: age the choices through the window's quarters.
        dt = now - self._t0
        if dt > window:
            # The best is older than the window: promote the 2nd and 3rd
            # choices (twice if the 2nd has expired too).
            self._t0, self._v0, self._t1, self._v1 = self._t1, self._v1, self._t2, self._v2
            self._t2, self._v2 = now, value
            if now - self._t0 > window:
                self._t0, self._v0, self._t1, self._v1 = self._t1, self._v1, self._t2, self._v2
                self._t2, self._v2 = now, value
        elif self._t1 == self._t0 and dt > window / 4:
            # A quarter window without a new 2nd choice: take one from here.
            self._t1 = self._t2 = now
            self._v1 = self._v2 = value
        elif self._t2 == self._t1 and dt > window / 2:
            self._t2 = now
            self._v2 = value
        return self._v0


class RttEstimator:
    """SRTT, RTT variance and RTO of one connection (RFC 6298, Linux's numbers).

    Construction gives the pre-handshake state of ``tcp_init_sock``: no
    sample, RTO 1 s, ``mdev_us`` 1 s (so ``tcp_info.rttvar`` reads 250 ms).
    ``rto_min``/``rto_max``/``rto_initial`` are in seconds (Linux's route
    ``rto_min`` and ``TCP_RTO_MAX_MS`` may change the first two);
    ``tick`` is the jiffy the timeout is rounded up to (1 ms, ``HZ=1000``;
    0 disables the rounding). ``min_rtt_window`` is ``tcp_min_rtt_wlen``.
    """

    __slots__ = (
        "_backoff",
        "_mdev4",
        "_mdev_max4",
        "_min_rtt",
        "_rto",
        "_rto_initial_us",
        "_rto_max_us",
        "_rto_min_us",
        "_rtt_seq",
        "_rttvar4",
        "_srtt8",
        "_tick_us",
        "min_rtt_window",
    )

    def __init__(
        self,
        *,
        rto_min: float = TCP_RTO_MIN,
        rto_max: float = TCP_RTO_MAX,
        rto_initial: float = TCP_TIMEOUT_INIT,
        tick: float = 0.001,
        min_rtt_window: float = TCP_MIN_RTT_WLEN,
    ) -> None:
        if not 0 < rto_min <= rto_max:
            raise ValueError(f"need 0 < rto_min <= rto_max, got {rto_min}, {rto_max}")
        if tick < 0 or rto_initial <= 0:
            raise ValueError(f"need tick >= 0 and rto_initial > 0, got {tick}, {rto_initial}")
        # Linux's defaults share one int object each (_usec would build four
        # fresh ints per connection: 128 bytes of every control block).
        self._rto_min_us = _RTO_MIN_US if rto_min == TCP_RTO_MIN else _usec(rto_min)
        self._rto_max_us = _RTO_MAX_US if rto_max == TCP_RTO_MAX else _usec(rto_max)
        self._rto_initial_us = (
            _RTO_INIT_US if rto_initial == TCP_TIMEOUT_INIT else _usec(rto_initial)
        )
        self._tick_us = _TICK_US if tick == 0.001 else _usec(tick)
        self.min_rtt_window = min_rtt_window
        # Linux's fields, microseconds, with the kernel's scaling (module doc).
        self._srtt8 = 0  # srtt_us: 8 * SRTT
        self._mdev4 = self._rto_initial_us  # mdev_us: 4 * mean deviation
        self._mdev_max4 = 0  # mdev_max_us: largest mdev_us this flight
        self._rttvar4 = 0  # rttvar_us: the variance term of the RTO
        self._rtt_seq = 0  # rtt_seq: snd_nxt when rttvar_us last decayed
        self._backoff = 0  # icsk_backoff
        self._min_rtt = MinRttFilter()
        self._rto = self.base_rto_us  # icsk_rto, a whole number of ticks

    # -- reading --------------------------------------------------------

    @property
    def has_sample(self) -> bool:
        """Whether any RTT sample has been taken (Linux: ``srtt_us != 0``)."""
        return self._srtt8 != 0

    @property
    def rtt_us(self) -> int:
        """``tcp_info.tcpi_rtt``: smoothed RTT in microseconds (0 before a sample)."""
        return self._srtt8 >> 3

    @property
    def rttvar_us(self) -> int:
        """``tcp_info.tcpi_rttvar``: mean deviation in microseconds (``mdev_us >> 2``)."""
        return self._mdev4 >> 2

    @property
    def rto_us(self) -> int:
        """``tcp_info.tcpi_rto``: the current (backed-off) timeout in microseconds."""
        return self._rto

    @property
    def srtt(self) -> float:
        """Smoothed RTT in seconds (0.0 before a sample)."""
        return (self._srtt8 >> 3) / _USEC

    @property
    def rto(self) -> float:
        """The timeout to arm the retransmission timer with, in seconds."""
        return self._rto / _USEC

    @property
    def backoff(self) -> int:
        """``tcp_info.tcpi_backoff``: doublings since the last valid sample."""
        return self._backoff

    @property
    def min_rtt_us(self) -> int | None:
        """``tcp_info.tcpi_min_rtt``: windowed minimum RTT in microseconds."""
        return self._min_rtt.value

    @property
    def base_rto_us(self) -> int:
        """The RTO without backoff (``__tcp_set_rto`` then ``tcp_bound_rto``)."""
        if not self._srtt8:
            return min(self._round(self._rto_initial_us), self._rto_max_us)
        return min(self._round((self._srtt8 >> 3) + self._rttvar4), self._rto_max_us)

    # -- feeding --------------------------------------------------------

    def on_ack(
        self,
        now: float,
        *,
        snd_una: int,
        snd_nxt: int,
        seq_rtt: float | None = None,
        retrans_acked: bool = False,
        sack_rtt: float | None = None,
        ts_rtt: float | None = None,
        ca_rtt: float | None = None,
        ack_maybe_delayed: bool = False,
    ) -> float | None:
        """Take the RTT sample an ACK offers, if any (Linux ``tcp_ack_update_rtt``).

        Call for every ACK that acknowledges new data (cumulatively or by
        SACK), after updating ``snd_una``. Candidates, best first, as Linux
        ranks them:

        - ``seq_rtt``: ``now`` minus the first transmission time of the
          oldest segment this ACK cumulatively acknowledged. Ignored when
          ``retrans_acked`` (some acknowledged segment had been
          retransmitted): Karn's algorithm, RFC 6298 section 3.
        - ``sack_rtt``: the same for the oldest newly SACKed, never
          retransmitted segment (RFC 6675 makes a SACK as good as an ACK).
        - ``ts_rtt``: from the timestamp echo (:func:`ts_rtt`), used only if
          neither of the above exists, and only if the ACK advanced
          ``snd_una`` (RFC 7323 4.1 RTTM rule; pass ``None`` otherwise). It
          is unambiguous, so retransmissions do not void it.

        ``ca_rtt`` (the newest acknowledged segment's RTT, less inflated by
        ACK compression) feeds only the min-RTT filter; it defaults to the
        chosen sample. ``ack_maybe_delayed`` skips a min-RTT sample above
        the current minimum, as Linux does when the ACK may have been a
        delayed one. Returns the sample used, in seconds, or ``None``. A
        valid sample updates SRTT and the RTO and clears the backoff.
        """
        if retrans_acked:
            seq_rtt = None
        rtt = seq_rtt if seq_rtt is not None and seq_rtt >= 0 else None
        if rtt is None and sack_rtt is not None and sack_rtt >= 0:
            rtt = sack_rtt
        if rtt is None and ts_rtt is not None and ts_rtt >= 0:
            rtt = ca_rtt = ts_rtt
        if rtt is None:
            return None
        if ack_maybe_delayed:
            self._update_min_rtt(
                now, rtt if ca_rtt is None or ca_rtt < 0 else ca_rtt, ack_maybe_delayed
            )
        else:
            # _update_min_rtt written out for the usual ACK (once per sample).
            us = round((rtt if ca_rtt is None or ca_rtt < 0 else ca_rtt) * _USEC)
            if not us:
                tick = self._tick_us
                us = tick if tick > 1 else 1
            self._min_rtt.update(now, us, self.min_rtt_window)
        self._sample_us(round(rtt * _USEC), snd_una, snd_nxt)  # round(): _usec inlined
        return rtt

    def sample(self, rtt: float, *, snd_una: int, snd_nxt: int) -> None:
        """Feed one valid RTT measurement (``tcp_rtt_estimator`` + ``tcp_set_rto``).

        ``rtt`` is in seconds (rounded to the microsecond). ``snd_una`` and
        ``snd_nxt`` mark flights: ``rttvar_us`` decays toward the flight's
        largest deviation only when ``snd_una`` passes the ``snd_nxt`` noted
        at the previous decay. This also clears the exponential backoff
        (RFC 6298 5.7: the next timeout derives from the fresh estimate).
        Prefer :meth:`on_ack`, which applies Karn's rule first.
        """
        m = _usec(rtt)
        if m < 0:
            raise ValueError(f"negative RTT sample {rtt}")
        self._sample_us(m, snd_una, snd_nxt)

    def _sample_us(self, m: int, snd_una: int, snd_nxt: int) -> None:
        """:meth:`sample` for a sample ``m`` already in whole microseconds (>= 0)."""
        rto_min4 = self._rto_min_us
        srtt = self._srtt8
        if srtt:
            m -= srtt >> 3  # error of the estimate
            srtt += m  # srtt = 7/8 srtt + 1/8 sample (scaled by 8)
            if m < 0:
                m = -m - (self._mdev4 >> 2)
                # The sample fell: let it lower mdev only at gain 1/32, so a
                # drop in RTT neither inflates nor collapses the RTO.
                if m > 0:
                    m >>= 3
            else:
                m -= self._mdev4 >> 2
            self._mdev4 += m  # mdev = 3/4 mdev + 1/4 |error| (scaled by 4)
            if self._mdev4 > self._mdev_max4:
                self._mdev_max4 = self._mdev4
                if self._mdev_max4 > self._rttvar4:
                    self._rttvar4 = self._mdev_max4
            if (self._rtt_seq - snd_una) & SEQ_MASK >= _HALF:  # seq_gt(snd_una, rtt_seq)
                if self._mdev_max4 < self._rttvar4:
                    self._rttvar4 -= (self._rttvar4 - self._mdev_max4) >> 2
                self._rtt_seq = snd_nxt
                self._mdev_max4 = rto_min4
        else:
            srtt = m << 3
            self._mdev4 = m << 1  # so that the first RTO is 3 * RTT
            self._rttvar4 = max(self._mdev4, rto_min4)
            self._mdev_max4 = self._rttvar4
            self._rtt_seq = snd_nxt
        srtt = self._srtt8 = srtt if srtt > 1 else 1
        # self.base_rto_us with _round written out (once per RTT sample):
        # srtt is set, so the RTO is srtt + 4 * rttvar in whole ticks, capped.
        us = (srtt >> 3) + self._rttvar4
        tick = self._tick_us
        if tick > 1:
            us = -(-us // tick) * tick
        rto_max = self._rto_max_us
        self._rto = us if us < rto_max else rto_max
        self._backoff = 0

    def _update_min_rtt(self, now: float, rtt: float, maybe_delayed: bool) -> None:
        """``tcp_update_rtt_min``: 0 counts as one jiffy; delayed ACKs may not raise it."""
        us = round(rtt * _USEC) or max(1, self._tick_us)
        if maybe_delayed:
            current = self._min_rtt.value
            if current is not None and us > current:
                return
        self._min_rtt.update(now, us, self.min_rtt_window)

    # -- timer events ---------------------------------------------------

    def backoff_rto(self) -> float:
        """The retransmission timer fired: double the RTO, capped (``tcp_retransmit_timer``).

        Returns the new timeout in seconds, to re-arm the timer with. The
        backoff survives timer restarts and new ACKs without a valid sample
        (Karn), and ends only with :meth:`sample` or :meth:`on_ack`.
        """
        self._backoff += 1
        self._rto = min(self._rto << 1, self._rto_max_us)
        return self._rto / _USEC

    def revert_backoff(self) -> float:
        """Undo one doubling (RFC 6069, Linux ``tcp_ld_RTO_revert``).

        An ICMP unreachable for a retransmission says the path, not
        congestion, lost it; the timeout falls back to the estimate shifted
        by the remaining backoff. Returns the new timeout in seconds.
        """
        if self._backoff:
            self._backoff -= 1
        self._rto = min(self.base_rto_us << self._backoff, self._rto_max_us)
        return self._rto / _USEC

    def on_established(self) -> None:
        """Entering ESTABLISHED (``tcp_init_metrics``): apply RFC 6298 5.7.

        With no sample from the handshake (its SYN or SYN-ACK was
        retransmitted and timestamps were off), the RTO becomes 3 s rather
        than the aggressive 1 s, and so do the variance terms, so that the
        first data is not retransmitted spuriously on a slow path.
        """
        if not self._srtt8:
            fallback = _usec(TCP_TIMEOUT_FALLBACK)
            self._rttvar4 = self._mdev4 = self._mdev_max4 = fallback
            self._rto = min(self._round(fallback), self._rto_max_us)

    # -- helpers --------------------------------------------------------

    def _round(self, us: int) -> int:
        """Round a timeout up to whole ticks, as ``usecs_to_jiffies`` does."""
        tick = self._tick_us
        if tick <= 1:
            return us
        return -(-us // tick) * tick
