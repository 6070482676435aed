"""CUBIC congestion control (RFC 9438) with Linux's ``tcp_cubic.c`` behaviour.

After a congestion event at window ``W_max`` the window follows the cubic

    W_cubic(t) = C * (t - K)**3 + W_max,    K = cbrt((W_max - cwnd_epoch) / C)

(RFC 9438 eq. 1 and 2; ``t`` in seconds since the congestion-avoidance epoch
began, windows in segments): concave up to ``W_max``, a plateau around it,
then convex probing beyond. Growth depends on time, not on the RTT, so long
and short paths share a bottleneck fairly, and a large window recovers in
seconds rather than the thousands of round trips Reno needs.

Constants and rules are Linux's (``net/ipv4/tcp_cubic.c``), which RFC 9438
mostly codifies:

- ``beta = 717/1024`` (~0.7): ssthresh after loss is ``cwnd * 717 / 1024``,
  at least 2 (``cubictcp_recalc_ssthresh``);
- ``C = 0.4`` (Linux's ``bic_scale = 41`` gives 410/1024 = 0.4004 in its
  fixed point; this module uses RFC 9438's 0.4 exactly, a 0.1 % difference);
- fast convergence (RFC 9438 4.7): a loss below the previous ``W_max``
  means a new flow is competing, so ``W_max`` is set to
  ``cwnd * (1 + beta) / 2`` to release bandwidth sooner;
- the target is evaluated one minimum RTT ahead, ``W_cubic(t + delay_min)``
  (RFC 9438 4.2 says ``t + RTT``; Linux uses the minimum RTT it observed),
  and the window grows toward it by ``+1`` every ``cnt`` acknowledged
  segments, ``cnt = cwnd / (target - cwnd)``; at most one segment per two
  acknowledged (``cnt >= 2``, a 1.5x per-RTT cap) and, before any loss
  (``W_max == 0``), at least 5 % per RTT (``cnt <= 20``);
- the TCP-friendly region (RFC 9438 4.3): an estimate ``W_est`` of what Reno
  with the same beta would have grows by one every ``cwnd * 15 / 8``
  acknowledged segments (Linux's integer form of ``1 / alpha_cubic``,
  ``alpha_cubic = 3 * (1 - beta) / (1 + beta)``), and when it is ahead of
  ``cwnd`` the window grows at least that fast. RFC 9438 switches
  ``alpha_cubic`` to 1 once ``W_est`` passes the old ``W_max``; Linux
  does not, nor does this;
- the target is recomputed at most once per 1/32 s while the window is
  unchanged (Linux's ``HZ / 32`` shortcut, which also bounds the cost per
  ACK), and delay samples within 1 s of a new epoch are ignored;
- after an idle period (``CA_EVENT_TX_START``) the epoch shifts forward by
  the idle time so the curve resumes where it left off (RFC 9438 5.8);
- a retransmission timeout forgets everything, ``W_max`` included
  (``cubictcp_state`` -> ``bictcp_reset``).

Slow start ends early with HyStart++ (RFC 9406), the standard successor of
Linux's HyStart (its ``hystart`` module parameter, on by default there and
here): the first slow start watches the minimum RTT of each round trip, and
when a round's minimum (after ``N_RTT_SAMPLE`` samples) exceeds the last
round's by ``clamp(lastRoundMinRTT / 8, 4 ms, 16 ms)`` the queue is
building: the sender enters Conservative Slow Start (CSS), growing at a
quarter of the slow-start rate for at most ``CSS_ROUNDS`` rounds, then
congestion avoidance with ``ssthresh = cwnd``. If a CSS round's minimum RTT
falls back below the one that triggered it, the exit was spurious and slow
start resumes. Without pacing, slow start adds at most ``L = 8`` segments
per ACK (RFC 9406 4.3). Linux's HyStart (ACK-train detection, a different
delay threshold) is not implemented: HyStart++ replaces it. Rounds are
counted with ``snd_una``/``snd_nxt`` passed to :meth:`Cubic.on_ack`.

Time is continuous seconds here, where Linux counts jiffies; the curve is
the same, only its sampling grid differs.
"""

from __future__ import annotations

import math
from enum import IntEnum

from aiostack.core.tcp.congestion import TCP_INFINITE_SSTHRESH, CongestionControl
from aiostack.wire.seqnum import SEQ_MASK

__all__ = [
    "BETA_SCALE",
    "CSS_GROWTH_DIVISOR",
    "CSS_ROUNDS",
    "CUBIC_BETA",
    "CUBIC_C",
    "HYSTART_L",
    "MAX_RTT_THRESH",
    "MIN_RTT_DIVISOR",
    "MIN_RTT_THRESH",
    "N_RTT_SAMPLE",
    "Cubic",
    "HyStartPhase",
]

#: ``BICTCP_BETA_SCALE``: beta is a fraction of 1024.
BETA_SCALE = 1024
#: Linux's ``beta`` module parameter: 717/1024 ~ 0.7 (RFC 9438 beta_cubic).
CUBIC_BETA = 717
#: RFC 9438 ``C`` (segments per second cubed).
CUBIC_C = 0.4
#: Window updates are skipped for this long while cwnd is unchanged (HZ/32).
_UPDATE_INTERVAL = 1 / 32
#: Delay samples this soon after an epoch starts are discarded (HZ).
_EPOCH_SETTLE = 1.0

# RFC 9406 section 4.2 constants (seconds, segments).
#: Lower bound of the RTT increase that ends slow start.
MIN_RTT_THRESH = 0.004
#: Upper bound of the RTT increase that ends slow start.
MAX_RTT_THRESH = 0.016
#: The threshold is lastRoundMinRTT / MIN_RTT_DIVISOR, clamped to the bounds.
MIN_RTT_DIVISOR = 8
#: RTT samples a round needs before its minimum is trusted.
N_RTT_SAMPLE = 8
#: CSS grows at 1/CSS_GROWTH_DIVISOR of the slow-start rate.
CSS_GROWTH_DIVISOR = 4
#: Rounds CSS lasts at most before congestion avoidance.
CSS_ROUNDS = 5
#: Largest slow-start increase per ACK without pacing (RFC 9406's L).
HYSTART_L = 8
_INF = float("inf")
_HALF = 1 << 31


class HyStartPhase(IntEnum):
    """Where HyStart++ is (RFC 9406 4.3)."""

    #: Standard slow start, watching the RTT.
    SLOW_START = 0
    #: Conservative Slow Start.
    CSS = 1
    #: Over: congestion avoidance, a loss, or HyStart++ disabled.
    DONE = 2


_DONE = HyStartPhase.DONE
_SLOW_START = HyStartPhase.SLOW_START


class Cubic(CongestionControl):
    """Linux's ``cubic``: RFC 9438 window growth, beta 717/1024, C 0.4, HyStart++.

    ``fast_convergence``, ``tcp_friendliness`` and ``hystart`` are Linux's
    module parameters of the same names (all on by default; ``hystart``
    selects RFC 9406 HyStart++ here); ``beta`` is in 1024ths and ``c`` in
    segments/s^3, for experiments.
    """

    __slots__ = (
        "_ack_cnt",
        "_beta_scale",
        "_last_cwnd",
        "_last_time",
        "beta",
        "c",
        "cnt",
        "delay_min",
        "epoch_start",
        "fast_convergence",
        "hs_css_baseline",
        "hs_css_credit",
        "hs_css_rounds",
        "hs_cur_min",
        "hs_exit_rtt",
        "hs_last_min",
        "hs_phase",
        "hs_samples",
        "hs_window_end",
        "hystart",
        "k",
        "last_max_cwnd",
        "origin_point",
        "tcp_cwnd",
        "tcp_friendliness",
    )
    name = "cubic"

    def __init__(
        self,
        *,
        fast_convergence: bool = True,
        tcp_friendliness: bool = True,
        beta: int = CUBIC_BETA,
        c: float = CUBIC_C,
        hystart: bool = True,
        **kwargs: int,
    ) -> None:
        super().__init__(**kwargs)
        self.hystart = hystart
        #: HyStart++ state (RFC 9406 4.2's variables): the phase, the end of
        #: the current round (``snd_nxt`` at its start; None before the
        #: first), last and current round minimum RTT, the current round's
        #: exit threshold (last + RttThresh), samples this round,
        #: CSS's baseline minimum RTT, rounds spent in CSS and the fraction
        #: of a segment CSS has accumulated.
        self.hs_phase = HyStartPhase.SLOW_START if hystart else HyStartPhase.DONE
        self.hs_window_end: int | None = None
        self.hs_last_min = _INF
        self.hs_exit_rtt = _INF
        self.hs_cur_min = _INF
        self.hs_samples = 0
        self.hs_css_baseline = _INF
        self.hs_css_rounds = 0
        self.hs_css_credit = 0
        if not 0 < beta < BETA_SCALE or c <= 0:
            raise ValueError(f"need 0 < beta < {BETA_SCALE} and c > 0, got {beta}, {c}")
        self.fast_convergence = fast_convergence
        self.tcp_friendliness = tcp_friendliness
        self.beta = beta
        self.c = c
        # Linux's beta_scale: 8 * (1 + beta) / 3 / (1 - beta) in integers (15
        # for 717), so W_est grows by 1 per cwnd * beta_scale / 8 segments.
        self._beta_scale = 8 * (BETA_SCALE + beta) // 3 // (BETA_SCALE - beta)
        self._reset()

    def _reset(self) -> None:
        """``bictcp_reset``: forget the curve, ``W_max`` and the minimum delay."""
        #: ``cnt``: segments to acknowledge per +1 of cwnd (0 before the first update).
        self.cnt = 0
        #: ``last_max_cwnd``: W_max, the window at the last congestion event.
        self.last_max_cwnd = 0
        self._last_cwnd = 0
        self._last_time = 0.0
        #: ``bic_origin_point``: the plateau of the current curve.
        self.origin_point = 0
        #: ``bic_K``: seconds from the epoch start to the plateau.
        self.k = 0.0
        #: ``delay_min``: smallest RTT sample in seconds (0.0: none yet).
        self.delay_min = 0.0
        #: ``epoch_start``: when congestion avoidance began on this curve.
        self.epoch_start: float | None = None
        self._ack_cnt = 0
        #: ``tcp_cwnd``: W_est, the Reno-equivalent window (TCP-friendly region).
        self.tcp_cwnd = 0

    def w_cubic(self, t: float) -> float:
        """RFC 9438 eq. 1 on the current curve: the window ``t`` s after the epoch start."""
        return self.c * (t - self.k) ** 3 + self.origin_point

    # -- tcp_congestion_ops ---------------------------------------------

    def recalc_ssthresh(self) -> int:
        """``cubictcp_recalc_ssthresh``: end the epoch, record W_max, return beta * cwnd.

        A loss also ends HyStart++ (RFC 9406 4.3: congestion avoidance from
        here, whether it came in slow start or in CSS).
        """
        self.hs_phase = HyStartPhase.DONE
        self.epoch_start = None
        cwnd = self.cwnd
        if cwnd < self.last_max_cwnd and self.fast_convergence:
            self.last_max_cwnd = cwnd * (BETA_SCALE + self.beta) // (2 * BETA_SCALE)
        else:
            self.last_max_cwnd = cwnd
        return max(cwnd * self.beta // BETA_SCALE, 2)

    def cong_avoid(self, now: float, acked: int) -> None:
        """``cubictcp_cong_avoid``: slow start (HyStart++'s pace), then follow the cubic."""
        if self.in_slow_start:
            if self.hs_phase is not HyStartPhase.DONE and self.ssthresh >= TCP_INFINITE_SSTHRESH:
                # RFC 9406 4.3: at most L segments per ACK; a quarter in CSS.
                if acked > HYSTART_L:
                    acked = HYSTART_L
                if self.hs_phase is HyStartPhase.CSS:
                    credit = self.hs_css_credit + acked
                    acked = credit // CSS_GROWTH_DIVISOR
                    self.hs_css_credit = credit - acked * CSS_GROWTH_DIVISOR
                    if not acked:
                        return
            acked = self.slow_start(acked)
            if not acked:
                return
        self._update(now, self.cwnd, acked)
        self.cong_avoid_ai(self.cnt, acked)

    def on_ack(
        self,
        now: float,
        acked: int,
        *,
        rtt: float | None = None,
        cwnd_limited: bool = True,
        snd_una: int = 0,
        snd_nxt: int = 0,
    ) -> None:
        """Run HyStart++'s round and RTT bookkeeping, then the usual ACK processing.

        The base class's body is repeated rather than called (one frame less
        per ACK): ``pkts_acked``, then ``cong_avoid`` if the window was used.
        """
        if self.hs_phase is not _DONE:
            end = self.hs_window_end
            if (
                end is not None
                and (snd_una - end) & SEQ_MASK >= _HALF  # the round goes on
                and rtt is not None
                and rtt >= 0
                and self.hs_phase is _SLOW_START
                and self.ssthresh >= TCP_INFINITE_SSTHRESH
            ):
                # _hystart's common case written out: a slow-start sample that
                # does not (yet) end slow start.
                cur = self.hs_cur_min
                if rtt < cur:
                    cur = self.hs_cur_min = rtt
                self.hs_samples += 1
                if self.hs_samples >= N_RTT_SAMPLE and cur >= self.hs_exit_rtt:
                    self._enter_css(cur)
            else:
                self._hystart(rtt, snd_una, snd_nxt)
        # self.pkts_acked(now, acked, rtt), written out (once per ACK): keep equal.
        if rtt is not None and rtt >= 0:
            epoch = self.epoch_start
            if epoch is None or now - epoch >= _EPOCH_SETTLE:
                delay = rtt if rtt > 0 else 1e-6
                if not self.delay_min or delay < self.delay_min:
                    self.delay_min = delay
        if acked > 0 and cwnd_limited:
            self.cong_avoid(now, acked)

    def _hystart(self, rtt: float | None, snd_una: int, snd_nxt: int) -> None:
        """RFC 9406 4.3 for one ACK of the first slow start (or its CSS)."""
        if self.ssthresh < TCP_INFINITE_SSTHRESH:
            self.hs_phase = _DONE
            return
        end = self.hs_window_end
        if end is None or (snd_una - end) & SEQ_MASK < _HALF:  # seq_ge(snd_una, end)
            # A round ends when the data sent at its start is acknowledged.
            self.hs_window_end = snd_nxt & SEQ_MASK
            if end is not None:
                last = self.hs_last_min = self.hs_cur_min
                # The exit test of the new round: RttThresh = clamp(last / 8, 4, 16 ms).
                thresh = min(max(last / MIN_RTT_DIVISOR, MIN_RTT_THRESH), MAX_RTT_THRESH)
                self.hs_exit_rtt = last + thresh
            self.hs_cur_min = _INF
            self.hs_samples = 0
            if self.hs_phase is HyStartPhase.CSS and end is not None:
                if self.hs_css_rounds >= CSS_ROUNDS:
                    # CSS is over: congestion avoidance from the current window.
                    self.ssthresh = max(self.cwnd, 2)
                    self.hs_phase = _DONE
                    return
                self.hs_css_rounds += 1
        if rtt is None or rtt < 0:
            return
        cur = self.hs_cur_min
        if rtt < cur:
            cur = self.hs_cur_min = rtt
        samples = self.hs_samples = self.hs_samples + 1
        if samples < N_RTT_SAMPLE:
            return
        if self.hs_phase is HyStartPhase.SLOW_START:
            if cur >= self.hs_exit_rtt:  # infinite until a round with samples has ended
                self._enter_css(cur)
        elif cur < self.hs_css_baseline:
            # The RTT went back down: the exit was spurious, resume slow start.
            self.hs_css_baseline = _INF
            self.hs_phase = HyStartPhase.SLOW_START

    def _enter_css(self, cur: float) -> None:
        """The delay rose by RttThresh: Conservative Slow Start (RFC 9406 4.3)."""
        self.hs_css_baseline = cur
        self.hs_phase = HyStartPhase.CSS
        self.hs_css_rounds = 1  # a partial round counts (RFC 9406 4.3)
        self.hs_css_credit = 0

    def pkts_acked(self, now: float, acked: int, rtt: float | None) -> None:
        """``cubictcp_acked``: track the minimum delay (the ``t + RTT`` look-ahead)."""
        # on_ack repeats this body in line: keep the two equal.
        if rtt is None or rtt < 0:
            return
        if self.epoch_start is not None and now - self.epoch_start < _EPOCH_SETTLE:
            return  # just after recovery the queue is still draining
        delay = rtt if rtt > 0 else 1e-6
        if not self.delay_min or delay < self.delay_min:
            self.delay_min = delay

    def on_loss_state(self, now: float) -> None:
        """``cubictcp_state(TCP_CA_Loss)``: a timeout invalidates everything learned."""
        self._reset()

    def on_tx_start(self, now: float, last_sent: float) -> None:
        """``cubictcp_cwnd_event(CA_EVENT_TX_START)``: skip the idle time on the curve.

        An application-limited pause is not time the network spent
        without congestion; without the shift the window would jump
        toward the convex region on the first ACK after the pause.
        """
        idle = now - last_sent
        if self.epoch_start is not None and idle > 0:
            self.epoch_start = min(self.epoch_start + idle, now)

    # -- the curve ---------------------------------------------------------

    def _update(self, now: float, cwnd: int, acked: int) -> None:
        """``bictcp_update``: set ``cnt`` so that cwnd tracks W_cubic(t + delay_min)."""
        self._ack_cnt += acked
        if self._last_cwnd == cwnd and now - self._last_time <= _UPDATE_INTERVAL:
            return
        if self.epoch_start is None or now != self._last_time:
            self._last_cwnd = cwnd
            self._last_time = now
            if self.epoch_start is None:
                self.epoch_start = now
                self._ack_cnt = acked
                self.tcp_cwnd = cwnd
                if self.last_max_cwnd <= cwnd:
                    self.k = 0.0
                    self.origin_point = cwnd
                else:
                    self.k = math.cbrt((self.last_max_cwnd - cwnd) / self.c)
                    self.origin_point = self.last_max_cwnd
            t = now - self.epoch_start + self.delay_min
            delta = int(self.c * abs(t - self.k) ** 3)
            target = self.origin_point - delta if t < self.k else self.origin_point + delta
            if target > cwnd:
                self.cnt = cwnd // (target - cwnd)
            else:
                self.cnt = 100 * cwnd  # at or above the target: barely grow
            if self.last_max_cwnd == 0 and self.cnt > 20:
                self.cnt = 20  # no loss yet: still probe at 5 % per RTT
        if self.tcp_friendliness:
            per_segment = (cwnd * self._beta_scale) >> 3
            if per_segment > 0 and self._ack_cnt > per_segment:
                steps = (self._ack_cnt - 1) // per_segment
                self._ack_cnt -= steps * per_segment
                self.tcp_cwnd += steps
            if self.tcp_cwnd > cwnd:
                max_cnt = cwnd // (self.tcp_cwnd - cwnd)
                self.cnt = min(self.cnt, max_cnt)
        self.cnt = max(self.cnt, 2)
