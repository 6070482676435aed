"""Congestion control behind one small interface, selected by name like ``TCP_CONGESTION``.

Linux splits congestion control in two, and so does this package:

- the *algorithm* (``struct tcp_congestion_ops``: ``ssthresh``,
  ``cong_avoid``, ``pkts_acked``, ``undo_cwnd``, ``set_state``,
  ``cwnd_event``) decides how the window grows and how far it falls, and is
  what ``TCP_CONGESTION`` picks: :mod:`.newreno` (Linux's ``reno``) and
  :mod:`.cubic` (``cubic``, the default);
- the *generic mechanics* in ``tcp_input.c``/``tcp_output.c`` apply those
  decisions the same way for every algorithm: slow start and additive
  increase (``tcp_slow_start``, ``tcp_cong_avoid_ai``), the window reduction
  of fast recovery by Proportional Rate Reduction (RFC 6937;
  ``tcp_init_cwnd_reduction``, ``tcp_cwnd_reduction``,
  ``tcp_end_cwnd_reduction``), the collapse to one segment on a
  retransmission timeout (``tcp_enter_loss``), undo after a spurious
  retransmission (``tcp_undo_cwnd_reduction``) and the restart after idle
  (``tcp_cwnd_restart``, RFC 5681 4.1 / RFC 7661).

:class:`CongestionControl` carries both: the mechanics as concrete methods,
the algorithm as the overridable hooks ``recalc_ssthresh``, ``cong_avoid``
and friends. The connection owns no window arithmetic at all; it tells this
object what happened and reads :attr:`CongestionControl.cwnd`.

Units are Linux's: the window is counted in *segments* (``snd_cwnd``), not
bytes; the sender may have ``cwnd`` full-sized segments in flight
(``tcp_packets_in_flight``). The initial window is 10 segments (RFC 6928,
``TCP_INIT_CWND``) whatever the MSS; RFC 6928's byte cap
``min(10*MSS, max(2*MSS, 14600))`` is not applied, as Linux does not.

Who calls what, per ACK (``tcp_ack`` -> ``tcp_cong_control``):

- in Open/Disorder/Loss state: :meth:`CongestionControl.on_ack` with the
  number of segments newly acknowledged or SACKed and the RTT sample;
- in fast recovery or CWR (:attr:`CongestionControl.in_cwnd_reduction`):
  :meth:`CongestionControl.on_recovery_ack`, which sets ``cwnd`` by PRR;
- entering fast recovery (third duplicate ACK, RACK loss, ECN-Echo):
  :meth:`CongestionControl.on_congestion_event`; leaving it:
  :meth:`CongestionControl.exit_recovery`;
- every segment sent while in reduction: :meth:`CongestionControl.on_transmit`;
- the retransmission timer: :meth:`CongestionControl.on_rto`.

The registry (:func:`register`, :func:`create`, :func:`available`) maps
names to classes as ``tcp_register_congestion_control`` does; an unknown
name raises ``FileNotFoundError`` (ENOENT), the errno ``setsockopt
(TCP_CONGESTION)`` gives on Linux.
"""

from __future__ import annotations

import errno
from abc import ABC, abstractmethod
from typing import Any, ClassVar, TypeVar

from aiostack.errors import os_error

__all__ = [
    "DEFAULT_CONGESTION_CONTROL",
    "TCP_CA_NAME_MAX",
    "TCP_INFINITE_SSTHRESH",
    "TCP_INIT_CWND",
    "CongestionControl",
    "Cubic",
    "NewReno",
    "available",
    "create",
    "register",
]

#: ``TCP_INIT_CWND``: the initial window in segments (RFC 6928).
TCP_INIT_CWND = 10
#: ``TCP_INFINITE_SSTHRESH``: ssthresh before the first loss (slow start until then).
TCP_INFINITE_SSTHRESH = 0x7FFFFFFF
#: ``TCP_CA_NAME_MAX``: algorithm names are at most 15 characters plus NUL.
TCP_CA_NAME_MAX = 16
#: ``net.ipv4.tcp_congestion_control`` on stock Linux.
DEFAULT_CONGESTION_CONTROL = "cubic"
#: ``snd_cwnd_clamp`` of a fresh socket (``~0U``): no clamp.
_NO_CLAMP = 0xFFFFFFFF


class CongestionControl(ABC):
    """The congestion window of one connection: Linux's generic code plus one algorithm.

    Subclasses set :attr:`name` and implement :meth:`recalc_ssthresh` and
    :meth:`cong_avoid`; the other hooks default to Reno's behaviour.
    Public state, read by the connection and ``tcp_info``:

    ``cwnd``
        ``snd_cwnd``, in segments.
    ``ssthresh``
        ``snd_ssthresh``, in segments; :data:`TCP_INFINITE_SSTHRESH` until
        the first congestion event.
    ``in_cwnd_reduction``
        True in fast recovery or CWR (Linux ``tcp_in_cwnd_reduction``):
        the connection must then call :meth:`on_recovery_ack` instead of
        :meth:`on_ack`.
    """

    __slots__ = (
        "cwnd",
        "cwnd_clamp",
        "cwnd_cnt",
        "in_cwnd_reduction",
        "initial_cwnd",
        "prior_cwnd",
        "prior_ssthresh",
        "prr_delivered",
        "prr_out",
        "ssthresh",
    )

    #: The ``TCP_CONGESTION`` name.
    name: ClassVar[str]

    def __init__(self, *, initial_cwnd: int = TCP_INIT_CWND, cwnd_clamp: int = _NO_CLAMP) -> None:
        if initial_cwnd < 1 or cwnd_clamp < 1:
            raise ValueError(f"need initial_cwnd >= 1 and cwnd_clamp >= 1, got {initial_cwnd}")
        self.initial_cwnd = initial_cwnd
        self.cwnd_clamp = cwnd_clamp
        self.cwnd = min(initial_cwnd, cwnd_clamp)
        self.ssthresh = TCP_INFINITE_SSTHRESH
        #: ``snd_cwnd_cnt``: segments acknowledged toward the next +1 in congestion avoidance.
        self.cwnd_cnt = 0
        #: ``prior_cwnd``/``prior_ssthresh``: the window before the last
        #: reduction, for PRR and for undo (0 = nothing to undo to).
        self.prior_cwnd = 0
        self.prior_ssthresh = 0
        #: ``prr_delivered``/``prr_out`` of RFC 6937.
        self.prr_delivered = 0
        self.prr_out = 0
        self.in_cwnd_reduction = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} cwnd={self.cwnd} ssthresh={self.ssthresh}>"

    # -- the algorithm (struct tcp_congestion_ops) ------------------------

    @abstractmethod
    def recalc_ssthresh(self) -> int:
        """``.ssthresh``: the slow start threshold after a congestion event.

        Called with ``cwnd`` still at its pre-reduction value; may update
        the algorithm's own state (CUBIC's ``W_max``).
        """

    @abstractmethod
    def cong_avoid(self, now: float, acked: int) -> None:
        """``.cong_avoid``: grow ``cwnd`` for ``acked`` newly delivered segments.

        Only called when the sender was limited by the window (growing a
        window that is not used would only store up a burst, RFC 7661).
        """

    def pkts_acked(self, now: float, acked: int, rtt: float | None) -> None:  # noqa: B027
        """``.pkts_acked``: every ACK's delivery count and RTT sample (seconds or ``None``)."""

    def undo_cwnd(self) -> int:
        """``.undo_cwnd``: the window to restore when a reduction proves spurious.

        Linux's ``tcp_reno_undo_cwnd``, which CUBIC also uses: the larger
        of the current window and the one before the reduction.
        """
        return max(self.cwnd, self.prior_cwnd)

    def on_loss_state(self, now: float) -> None:  # noqa: B027
        """``.set_state(TCP_CA_Loss)``: a retransmission timeout; forget learned state."""

    def on_tx_start(self, now: float, last_sent: float) -> None:  # noqa: B027
        """``.cwnd_event(CA_EVENT_TX_START)``: sending resumes with nothing in flight.

        Call when a segment is sent while nothing was in flight;
        ``last_sent`` is when the previous data segment was sent
        (Linux's ``lsndtime``).
        """

    # -- generic mechanics (tcp_input.c / tcp_output.c) -------------------

    @property
    def in_slow_start(self) -> bool:
        """``tcp_in_slow_start``: below ssthresh the window doubles each round trip."""
        return self.cwnd < self.ssthresh

    @property
    def current_ssthresh(self) -> int:
        """``tcp_current_ssthresh``: ssthresh, or 3/4 of cwnd if larger and not reducing.

        What a restart after idle or a reduction keeps as the point to slow
        start back up to: the window that recently worked.
        """
        if self.in_cwnd_reduction:
            return self.ssthresh
        return max(self.ssthresh, (self.cwnd >> 1) + (self.cwnd >> 2))

    def init_transfer(self, *, syn_retransmits: int = 0) -> None:
        """The handshake completed (``tcp_init_transfer``): set the initial window.

        RFC 5681 3.1 shrinks the initial window to one segment when a SYN
        or SYN-ACK was lost; with RFC 6298's 1 s initial RTO a single
        retransmission is often spurious, so Linux (and this) only does so
        after more than one.
        """
        self.cwnd = 1 if syn_retransmits > 1 else min(self.initial_cwnd, self.cwnd_clamp)
        self.cwnd_cnt = 0

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
        """An ACK delivered ``acked`` segments (cumulatively or SACKed) outside a reduction.

        ``rtt`` is this ACK's RTT sample in seconds, if any.
        ``cwnd_limited`` is Linux's ``tcp_is_cwnd_limited``: the flight
        filled the window (in slow start: the window is below twice the
        largest recent flight); otherwise the window does not grow.
        ``snd_una``/``snd_nxt`` after the ACK let an algorithm count round
        trips (CUBIC's HyStart++ rounds end when ``snd_una`` passes the
        ``snd_nxt`` noted at their start); the base class ignores them.
        """
        self.pkts_acked(now, acked, rtt)
        if acked > 0 and cwnd_limited:
            self.cong_avoid(now, acked)

    def slow_start(self, acked: int) -> int:
        """``tcp_slow_start`` (RFC 5681 3.1): +1 per segment up to ssthresh.

        Returns the part of ``acked`` left over past ssthresh, which the
        caller spends on congestion avoidance (RFC 3465 style counting).
        """
        cwnd = min(self.cwnd + acked, self.ssthresh)
        acked -= cwnd - self.cwnd
        self.cwnd = min(cwnd, self.cwnd_clamp)
        return acked

    def cong_avoid_ai(self, w: int, acked: int) -> None:
        """``tcp_cong_avoid_ai``: +1 segment per ``w`` segments acknowledged.

        Credit accumulated against a larger ``w`` is spent first, so a
        shrinking ``w`` (CUBIC's ``cnt``) does not lose it.
        """
        if self.cwnd_cnt >= w:
            self.cwnd_cnt = 0
            self.cwnd += 1
        self.cwnd_cnt += acked
        if self.cwnd_cnt >= w:
            delta = self.cwnd_cnt // w
            self.cwnd_cnt -= delta * w
            self.cwnd += delta
        self.cwnd = min(self.cwnd, self.cwnd_clamp)

    def on_congestion_event(self, now: float, *, ecn: bool = False) -> int:
        """Enter fast recovery (``tcp_enter_recovery``) or CWR (``tcp_enter_cwr``).

        Call on the third duplicate ACK or other loss detection, or for an
        ECN-Echo with ``ecn=True``. The first call of an episode records
        the window (for undo and PRR), lowers ``ssthresh`` via the
        algorithm and starts PRR; further calls while still reducing change
        nothing (one reduction per window of data, RFC 5681 3.2). After
        ECN no undo is possible (the signal was not a guess). Returns
        ``ssthresh``. ``cwnd`` itself comes down gradually through
        :meth:`on_recovery_ack`.
        """
        if self.in_cwnd_reduction:
            if ecn:
                self.prior_ssthresh = 0
            return self.ssthresh
        self.prior_ssthresh = 0 if ecn else self.current_ssthresh
        self.cwnd_cnt = 0
        self.prior_cwnd = self.cwnd
        self.prr_delivered = 0
        self.prr_out = 0
        self.ssthresh = self.recalc_ssthresh()
        self.in_cwnd_reduction = True
        return self.ssthresh

    def on_recovery_ack(
        self,
        now: float,
        newly_acked_sacked: int,
        in_flight: int,
        *,
        snd_una_advanced: bool,
        newly_lost: int = 0,
        rtt: float | None = None,
    ) -> int:
        """Proportional Rate Reduction for one ACK (RFC 6937, ``tcp_cwnd_reduction``).

        ``newly_acked_sacked`` segments were delivered by this ACK;
        ``in_flight`` is ``tcp_packets_in_flight`` after it. While the
        flight is above ssthresh, sending follows deliveries in the ratio
        ssthresh/prior_cwnd, so the window comes down smoothly over one
        round trip instead of stalling; once below, PRR-SSRB slow-starts
        back toward ssthresh (at most one extra segment per ACK that
        advanced ``snd_una`` and marked nothing lost). The first ACK always
        allows the fast retransmission. Returns the new ``cwnd``.
        """
        self.pkts_acked(now, newly_acked_sacked, rtt)
        if newly_acked_sacked <= 0 or not self.prior_cwnd:
            return self.cwnd
        self.prr_delivered += newly_acked_sacked
        delta = self.ssthresh - in_flight
        if delta < 0:
            dividend = self.ssthresh * self.prr_delivered + self.prior_cwnd - 1
            sndcnt = dividend // self.prior_cwnd - self.prr_out
        else:
            sndcnt = max(self.prr_delivered - self.prr_out, newly_acked_sacked)
            if snd_una_advanced and not newly_lost:
                sndcnt += 1
            sndcnt = min(delta, sndcnt)
        sndcnt = max(sndcnt, 0 if self.prr_out else 1)
        self.cwnd = min(in_flight + sndcnt, self.cwnd_clamp)
        return self.cwnd

    def on_transmit(self, segments: int = 1) -> None:
        """``segments`` were sent (new or retransmitted); PRR counts them as ``prr_out``."""
        if self.in_cwnd_reduction:
            self.prr_out += segments

    def exit_recovery(self, now: float) -> None:
        """Recovery or CWR is over (``tcp_end_cwnd_reduction``): cwnd = ssthresh.

        Call when ``snd_una`` reaches the recovery point (RFC 6582's
        ``recover``, Linux's ``high_seq``). RFC 6937 ends PRR with
        ``cwnd = ssthresh`` so the next round starts congestion avoidance
        from the reduced window.
        """
        if self.in_cwnd_reduction and self.ssthresh < TCP_INFINITE_SSTHRESH:
            self.cwnd = min(self.ssthresh, self.cwnd_clamp)
        self.in_cwnd_reduction = False

    def on_rto(self, now: float, in_flight: int = 0, *, reduce_ssthresh: bool = True) -> None:
        """The retransmission timer expired (``tcp_enter_loss``, RFC 5681 3.1 eq. 4).

        ``cwnd`` becomes ``in_flight + 1`` (one segment once everything
        outstanding is marked lost) and the sender slow-starts from there.
        ``ssthresh`` is lowered unless this timeout follows another in the
        same window or a recovery already lowered it (the caller's
        ``reduce_ssthresh=False``, Linux's check on ``high_seq``), so that
        back-to-back timeouts do not shrink it geometrically.
        """
        if reduce_ssthresh:
            self.prior_ssthresh = self.current_ssthresh
            self.prior_cwnd = self.cwnd
            self.ssthresh = self.recalc_ssthresh()
        self.in_cwnd_reduction = False
        self.cwnd = min(in_flight + 1, self.cwnd_clamp)
        self.cwnd_cnt = 0
        self.on_loss_state(now)

    def undo(self, now: float) -> None:
        """The reduction was spurious (``tcp_undo_cwnd_reduction``; RFC 3522, RFC 5682).

        When DSACKs or timestamps (Eifel) prove every retransmission of the
        episode unnecessary, restore the window via :meth:`undo_cwnd` and
        ssthresh to its previous value. Does nothing after an ECN
        reduction (``prior_ssthresh`` is 0 then).
        """
        if self.prior_ssthresh:
            self.cwnd = min(self.undo_cwnd(), self.cwnd_clamp)
            self.ssthresh = max(self.ssthresh, self.prior_ssthresh)
        self.in_cwnd_reduction = False

    def restart_after_idle(self, now: float, last_sent: float, rto: float) -> bool:
        """Slow start after idle (RFC 5681 4.1, RFC 7661; Linux ``tcp_cwnd_restart``).

        Call before sending new data when nothing is in flight and
        ``net.ipv4.tcp_slow_start_after_idle`` is set. If the connection
        has been idle (no data sent since ``last_sent``) for more than one
        ``rto``, the window learned then may no longer hold: halve it for
        each RTO of idleness, but not below the initial window (nor above
        the current one), and remember 3/4 of the old window in ssthresh so
        slow start climbs back quickly. Returns whether it restarted.
        """
        idle = now - last_sent
        if idle <= rto:
            return False
        self.ssthresh = self.current_ssthresh
        restart_cwnd = min(self.initial_cwnd, self.cwnd)
        cwnd = self.cwnd
        idle -= rto
        while idle > 0 and cwnd > restart_cwnd:
            cwnd >>= 1
            idle -= rto
        self.cwnd = max(cwnd, restart_cwnd)
        self.cwnd_cnt = 0
        return True


_C = TypeVar("_C", bound=type[CongestionControl])
_REGISTRY: dict[str, type[CongestionControl]] = {}


def register(cls: _C) -> _C:
    """Add an algorithm under its :attr:`~CongestionControl.name` (class decorator).

    Like ``tcp_register_congestion_control``: names are unique
    (``ValueError`` for a second registration, Linux's EEXIST) and shorter
    than :data:`TCP_CA_NAME_MAX`.
    """
    name = cls.name
    if not name or len(name) >= TCP_CA_NAME_MAX:
        raise ValueError(f"congestion control name {name!r} must be 1..15 characters")
    if name in _REGISTRY:
        raise ValueError(f"congestion control {name!r} already registered")
    _REGISTRY[name] = cls
    return cls


def available() -> tuple[str, ...]:
    """``net.ipv4.tcp_available_congestion_control``: names in registration order."""
    return tuple(_REGISTRY)


def create(name: str = DEFAULT_CONGESTION_CONTROL, **kwargs: Any) -> CongestionControl:
    """A fresh algorithm instance for one connection (``TCP_CONGESTION``).

    Raises ``FileNotFoundError`` (ENOENT) for an unknown name, as
    ``tcp_set_congestion_control`` does. ``kwargs`` go to the constructor
    (``initial_cwnd``, ``cwnd_clamp``).
    """
    cls = _REGISTRY.get(name)
    if cls is None:
        raise os_error(errno.ENOENT, f"TCP congestion control {name!r}")
    return cls(**kwargs)


# The built-in algorithms subclass the base above, so they are imported after
# it; they register here, Reno first, in the order Linux lists them
# ("reno cubic").
from aiostack.core.tcp.congestion.cubic import Cubic  # noqa: E402
from aiostack.core.tcp.congestion.newreno import NewReno  # noqa: E402

register(NewReno)
register(Cubic)
