"""HyStart++ (RFC 9406) in CUBIC, driven by synthetic RTT samples and round trips.

A round is one window of data: :func:`round_trip` sends ``acks`` ACKs, each
for ``per_ack`` segments with the given RTT sample, ending when ``snd_una``
reaches the ``snd_nxt`` of the round's start (1000 sequence numbers per
round here). The RFC's threshold with a 100 ms base RTT is
``clamp(100 / 8, 4, 16) = 12.5 ms``.
"""

from __future__ import annotations

import pytest

from aiostack.core.tcp.congestion import TCP_INFINITE_SSTHRESH
from aiostack.core.tcp.congestion.cubic import (
    CSS_ROUNDS,
    HYSTART_L,
    N_RTT_SAMPLE,
    Cubic,
    HyStartPhase,
)


class Flow:
    """A sender's sequence space for driving :meth:`Cubic.on_ack` round by round."""

    def __init__(self, cc: Cubic) -> None:
        self.cc = cc
        self.una = 0
        self.nxt = 1000
        self.now = 1.0

    def ack(self, rtt: float | None, segs: int = 1) -> None:
        """One ACK inside the current round."""
        self.una += 1
        self.now += 0.001
        self.cc.on_ack(self.now, segs, rtt=rtt, snd_una=self.una, snd_nxt=self.nxt)

    def round_trip(self, rtts: list[float], segs: int = 1) -> None:
        """A whole round: one ACK per sample, the last one completing the round."""
        for rtt in rtts:
            self.ack(rtt, segs)
        self.una = self.nxt  # the round's data is all acknowledged ...
        self.nxt += 1000  # ... and the next round's was sent
        # The round boundary is seen on the next ACK.


def flow(**kw: bool) -> Flow:
    f = Flow(Cubic(**kw))
    f.ack(0.1)  # starts the first round
    return f


def test_rtt_rise_of_the_threshold_enters_css_at_the_eighth_sample() -> None:
    """RFC 9406 4.3: currentRoundMinRTT >= lastRoundMinRTT + RttThresh, N_RTT_SAMPLE samples."""
    f = flow()
    f.round_trip([0.1] * 9)
    for _ in range(N_RTT_SAMPLE - 1):
        f.ack(0.1125)
    assert f.cc.hs_phase is HyStartPhase.SLOW_START  # nothing at sample 7
    f.ack(0.1125)
    assert f.cc.hs_phase is HyStartPhase.CSS  # CSS at sample 8
    assert f.cc.hs_css_baseline == pytest.approx(0.1125)
    assert f.cc.ssthresh == TCP_INFINITE_SSTHRESH


def test_rise_below_the_threshold_stays_in_slow_start() -> None:
    """12.4 ms more than last round's minimum is under clamp(100/8, 4, 16) = 12.5 ms."""
    f = flow()
    f.round_trip([0.1] * 9)
    for _ in range(20):
        f.ack(0.1124)
    assert f.cc.hs_phase is HyStartPhase.SLOW_START


def test_threshold_is_clamped_to_4_and_16_ms() -> None:
    """RttThresh = max(4 ms, min(lastRoundMinRTT / 8, 16 ms))."""
    f = flow()
    f.round_trip([0.01] * 9)  # 10 ms / 8 = 1.25 ms -> 4 ms
    for _ in range(8):
        f.ack(0.0139)
    assert f.cc.hs_phase is HyStartPhase.SLOW_START
    f.round_trip([])
    f.round_trip([0.01] * 9)
    for _ in range(8):
        f.ack(0.014)
    assert f.cc.hs_phase is HyStartPhase.CSS
    g = flow()
    g.round_trip([1.0] * 9)  # 1 s / 8 = 125 ms -> 16 ms
    for _ in range(8):
        g.ack(1.016)
    assert g.cc.hs_phase is HyStartPhase.CSS


def test_css_grows_at_a_quarter_of_slow_start() -> None:
    """RFC 9406 4.3: in CSS cwnd += min(N, L*SMSS) / CSS_GROWTH_DIVISOR."""
    f = flow()
    f.round_trip([0.1] * 9)
    for _ in range(8):
        f.ack(0.12)
    assert f.cc.hs_phase is HyStartPhase.CSS
    before = f.cc.cwnd
    for _ in range(8):
        f.ack(0.12, segs=1)
    assert f.cc.cwnd == before + 2


def test_slow_start_grows_at_most_l_segments_per_ack() -> None:
    """RFC 9406 4.3 without pacing: cwnd += min(N, L * SMSS) (L = 8)."""
    f = flow()
    before = f.cc.cwnd
    f.ack(0.1, segs=20)
    assert f.cc.cwnd == before + HYSTART_L
    g = Flow(Cubic(hystart=False))
    g.ack(0.1, segs=20)
    assert g.cc.cwnd == 10 + 20


def test_spurious_exit_resumes_slow_start() -> None:
    """RFC 9406 4.3: a CSS round whose minimum falls below the baseline resumes slow start."""
    f = flow()
    f.round_trip([0.1] * 9)
    for _ in range(8):
        f.ack(0.12)
    f.round_trip([])
    for _ in range(7):
        f.ack(0.119)
    assert f.cc.hs_phase is HyStartPhase.CSS
    f.ack(0.119)
    assert f.cc.hs_phase is HyStartPhase.SLOW_START


def test_css_ends_in_congestion_avoidance_after_css_rounds() -> None:
    """RFC 9406 4.3: after CSS_ROUNDS rounds (the partial one counts) ssthresh = cwnd."""
    f = flow()
    f.round_trip([0.1] * 9)
    for _ in range(8):
        f.ack(0.12)
    f.round_trip([])  # the rest of the entry round: CSS round 1
    for _ in range(CSS_ROUNDS - 1):
        f.round_trip([0.12] * 8)  # rounds 2..5
    assert f.cc.hs_phase is HyStartPhase.CSS
    f.ack(0.12)  # the first ACK of round 6
    assert f.cc.hs_phase is HyStartPhase.DONE
    assert f.cc.ssthresh == f.cc.cwnd and not f.cc.in_slow_start


def test_loss_ends_hystart() -> None:
    """RFC 9406 4.3: a loss in slow start or CSS means congestion avoidance."""
    f = flow()
    f.cc.on_congestion_event(f.now)
    assert f.cc.hs_phase is HyStartPhase.DONE
    f.cc.exit_recovery(f.now)
    f.round_trip([0.1] * 9)
    for _ in range(8):
        f.ack(0.2)
    assert f.cc.hs_phase is HyStartPhase.DONE


def test_hystart_off_never_leaves_slow_start_on_delay() -> None:
    """Cubic(hystart=False) (Linux's hystart=0): only a loss ends slow start."""
    f = Flow(Cubic(hystart=False))
    f.ack(0.1)
    f.round_trip([0.1] * 9)
    for _ in range(20):
        f.ack(0.5)
    assert f.cc.ssthresh == TCP_INFINITE_SSTHRESH
