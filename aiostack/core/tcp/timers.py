"""Named deadlines of one TCP control block, checked lazily.

Linux keeps four kernel timers per socket (``icsk_retransmit_timer``, which
also carries the probe timer, ``icsk_delack_timer``, ``sk_timer`` for
keepalive and the FIN-WAIT-2 linger, and the TIME-WAIT timer of the mini
socket). Here a timer is just an attribute holding an absolute deadline in
seconds (the stack's ``now``) or ``None`` when disarmed, in the spirit of
smoltcp's ``enum Timer``:

- arming or re-arming is one assignment, so restarting the retransmission
  timer on an ACK (RFC 6298 5.3) costs no event-loop handle;
- :meth:`Timers.poll_at` is the earliest deadline, which the stack's single
  timer task sleeps until (DESIGN.md principle 1); an idle connection has at
  most its keepalive deadline and costs nothing per tick;
- :meth:`Timers.expired` yields the names of the due timers; the control
  block acts on them at the start of ``poll_transmit(now)``. A deadline that
  moved later since the timer task slept is simply not due: stale wake-ups
  are harmless (the gVisor ``timer.go`` lesson).
"""

from __future__ import annotations

__all__ = [
    "TCP_ATO_MIN",
    "TCP_DELACK_MAX",
    "TCP_MAX_QUICKACKS",
    "TIMER_NAMES",
    "Timers",
    "clamp_probe0_to_user_timeout",
    "clamp_to_user_timeout",
    "keepalive_expired",
    "user_timeout_expired",
]

#: Linux ``TCP_ATO_MIN`` (HZ/25 = 40 ms): the smallest delayed-ACK timeout.
#: The timeout (``ato``) adapts from the data inter-arrival times, as
#: Linux's ``tcp_event_data_recv`` does, between this and
#: :data:`TCP_DELACK_MAX`.
TCP_ATO_MIN = 0.04
#: Linux ``TCP_DELACK_MAX`` (HZ/5 = 200 ms): the largest delayed-ACK timeout.
TCP_DELACK_MAX = 0.2
#: Linux ``TCP_MAX_QUICKACKS``: segments ACKed at once in quick-ACK mode.
TCP_MAX_QUICKACKS = 16
#: One jiffy at HZ=1000: what ``tcp_clamp_rto_to_user_timeout`` returns once
#: the user timeout has passed ("fire ASAP").
_JIFFY = 0.001
#: Linux ``TCP_TIMEOUT_MIN`` (2 jiffies): the shortest timer Linux arms.
TCP_TIMEOUT_MIN = 0.002

#: Timer names in the order :meth:`Timers.expired` reports them (the order
#: the control block handles simultaneous expiries: ACK before retransmit).
TIMER_NAMES: tuple[str, ...] = (
    "delack",
    "reorder",
    "loss_probe",
    "retransmit",
    "persist",
    "keepalive",
    "fin_wait2",
    "time_wait",
)


class Timers:
    """Deadlines (seconds) by name; ``None`` means disarmed.

    ``retransmit``
        RFC 6298 retransmission timer; also times SYN and SYN-ACK
        retransmission (Linux's ``ICSK_TIME_RETRANS``).
    ``delack``
        Delayed ACK (RFC 1122 4.2.3.2, Linux's ``ICSK_TIME_DACK``).
    ``reorder``
        RACK's reordering timer (RFC 8985 6.3, Linux's
        ``ICSK_TIME_REO_TIMEOUT``): when it fires, segments that were
        waiting out the reordering window are checked for loss again.
    ``loss_probe``
        TLP's probe timeout, the PTO (RFC 8985 7.2, Linux's
        ``ICSK_TIME_LOSS_PROBE``). Linux multiplexes the last two onto the
        retransmission timer; here they are deadlines of their own and the
        RTO stays armed behind them.
    ``persist``
        Zero-window probe (RFC 9293 3.8.6.1, Linux's ``ICSK_TIME_PROBE0``).
    ``keepalive``
        Keepalive (RFC 1122 4.2.3.6, ``SO_KEEPALIVE``).
    ``fin_wait2``
        Orphaned FIN-WAIT-2 linger (``net.ipv4.tcp_fin_timeout``).
    ``time_wait``
        2MSL wait (Linux: ``TCP_TIMEWAIT_LEN`` = 60 s).
    """

    __slots__ = TIMER_NAMES

    def __init__(self) -> None:
        self.delack: float | None = None
        self.reorder: float | None = None
        self.loss_probe: float | None = None
        self.retransmit: float | None = None
        self.persist: float | None = None
        self.keepalive: float | None = None
        self.fin_wait2: float | None = None
        self.time_wait: float | None = None

    # The methods below spell the names out instead of looping over
    # TIMER_NAMES with getattr: poll_at() runs after every drive of the
    # stack, and the loop cost more than the rest of an ACK's output path.
    # TcpConnection.poll_transmit writes the same test out (due or not, per
    # segment; tests/core/tcp/test_hot_path_inlines.py checks each name).
    # TIMER_NAMES stays the one list of names (and the order of expired()).

    def poll_at(self) -> float | None:
        """The earliest armed deadline, or ``None`` when every timer is idle."""
        best = self.delack
        t = self.reorder
        if t is not None and (best is None or t < best):
            best = t
        t = self.loss_probe
        if t is not None and (best is None or t < best):
            best = t
        t = self.retransmit
        if t is not None and (best is None or t < best):
            best = t
        t = self.persist
        if t is not None and (best is None or t < best):
            best = t
        t = self.keepalive
        if t is not None and (best is None or t < best):
            best = t
        t = self.fin_wait2
        if t is not None and (best is None or t < best):
            best = t
        t = self.time_wait
        if t is not None and (best is None or t < best):
            best = t
        return best

    def expired(self, now: float) -> list[str]:
        """Names of the timers due at ``now`` (deadline <= now), disarming them."""
        due: list[str] = []
        for name in TIMER_NAMES:
            t = getattr(self, name)
            if t is not None and t <= now:
                setattr(self, name, None)
                due.append(name)
        return due

    def clear(self) -> None:
        """Disarm everything (the connection reached CLOSED)."""
        self.delack = self.retransmit = self.persist = None
        self.reorder = self.loss_probe = None
        self.keepalive = self.fin_wait2 = self.time_wait = None

    def armed(self) -> dict[str, float]:
        """The armed timers and their deadlines (for ``ss``-style debugging)."""
        return {n: t for n in TIMER_NAMES if (t := getattr(self, n)) is not None}


# -- TCP_USER_TIMEOUT (RFC 5482; Linux tcp_timer.c) -----------------------------


def user_timeout_expired(now: float, start: float | None, user_timeout: float) -> bool:
    """Linux ``retransmits_timed_out`` with a user timeout: that long since ``start``.

    ``start`` is Linux's ``retrans_stamp``: the first SYN for a connection
    still opening (``tcp_connect``), the first retransmission otherwise;
    ``None`` (nothing retransmitted yet) never expires. 0 means no user
    timeout, and the retry counts decide alone.
    """
    return user_timeout > 0 and start is not None and now - start >= user_timeout


def clamp_to_user_timeout(
    now: float, rto: float, start: float | None, user_timeout: float
) -> float:
    """The next retransmission delay (Linux ``tcp_clamp_rto_to_user_timeout``).

    Never sleep past the user timeout: with one set, the delay is what is
    left of it when that is shorter than the RTO (one jiffy when nothing
    is), so the abort comes exactly when it expires, not one backed-off RTO
    later.
    """
    if user_timeout <= 0 or start is None:
        return rto
    remaining = start + user_timeout - now
    if remaining <= 0:
        return _JIFFY  # the user timeout has passed: fire as soon as possible
    return remaining if remaining < rto else rto


def clamp_probe0_to_user_timeout(
    now: float, when: float, start: float | None, user_timeout: float
) -> float:
    """The next zero-window probe delay (Linux ``tcp_clamp_probe0_to_user_timeout``).

    ``start`` is when probing began (``icsk_probes_tstamp``); the delay is
    at most what is left of the user timeout, but at least
    ``TCP_TIMEOUT_MIN`` (2 ms), so the abort comes when it expires.
    """
    if user_timeout <= 0 or start is None:
        return when
    remaining = user_timeout - max(now - start, 0.0)
    if remaining < TCP_TIMEOUT_MIN:
        remaining = TCP_TIMEOUT_MIN
    return remaining if remaining < when else when


def keepalive_expired(*, idle: float, probes_out: int, keepcnt: int, user_timeout: float) -> bool:
    """Whether the keepalive timer gives up (Linux ``tcp_keepalive_timer``).

    Without ``TCP_USER_TIMEOUT``, after ``keepcnt`` unanswered probes. With
    it, once the connection has heard nothing for ``user_timeout`` seconds
    (``idle``: since the last segment received) and at least one probe is
    out; ``keepcnt`` is then ignored.
    """
    if user_timeout > 0:
        return idle >= user_timeout and probes_out > 0
    return probes_out >= keepcnt
