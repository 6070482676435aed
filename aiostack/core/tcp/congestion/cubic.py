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

Not implemented: HyStart (Linux's delay- and ACK-train-based slow-start
exit, on by default there; RFC 9406 HyStart++ is its standard successor).
Without it slow start runs until the first loss, as Reno's does. The hook
for it is :meth:`Cubic.pkts_acked`, which already sees every RTT sample.
Time is continuous seconds here, where Linux counts jiffies; the curve is
the same, only its sampling grid differs.
"""

from __future__ import annotations

import math

from aiostack.core.tcp.congestion import CongestionControl

__all__ = ["BETA_SCALE", "CUBIC_BETA", "CUBIC_C", "Cubic"]

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


class Cubic(CongestionControl):
    """Linux's ``cubic``: RFC 9438 window growth, beta 717/1024, C 0.4, no HyStart.

    ``fast_convergence`` and ``tcp_friendliness`` are Linux's module
    parameters of the same names (both on by default); ``beta`` is in
    1024ths and ``c`` in segments/s^3, for experiments.
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
        **kwargs: int,
    ) -> None:
        super().__init__(**kwargs)
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
        """``cubictcp_recalc_ssthresh``: end the epoch, record W_max, return beta * cwnd."""
        self.epoch_start = None
        cwnd = self.cwnd
        if cwnd < self.last_max_cwnd and self.fast_convergence:
            self.last_max_cwnd = cwnd * (BETA_SCALE + self.beta) // (2 * BETA_SCALE)
        else:
            self.last_max_cwnd = cwnd
        return max(cwnd * self.beta // BETA_SCALE, 2)

    def cong_avoid(self, now: float, acked: int) -> None:
        """``cubictcp_cong_avoid``: slow start, then follow the cubic via ``cnt``."""
        if self.in_slow_start:
            acked = self.slow_start(acked)
            if not acked:
                return
        self._update(now, self.cwnd, acked)
        self.cong_avoid_ai(self.cnt, acked)

    def pkts_acked(self, now: float, acked: int, rtt: float | None) -> None:
        """``cubictcp_acked``: track the minimum delay (the ``t + RTT`` look-ahead)."""
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
