"""CUBIC (RFC 9438) with Linux tcp_cubic.c constants: beta 717/1024, C 0.4, no HyStart.

The window curve is checked against RFC 9438 eq. 1 and 2 directly; the
per-ACK rules (cnt, the 5 % and 1.5x bounds, TCP friendliness, fast
convergence, the HZ/32 shortcut, epoch shift after idle) against
``bictcp_update`` and friends.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiostack.core.tcp.congestion.cubic import CUBIC_C, Cubic

FAST = settings(max_examples=100, deadline=None)


def rfc9438_w(t: float, w_max: float, cwnd_epoch: float, c: float = 0.4) -> float:
    """RFC 9438 eq. 1 with K from eq. 2."""
    k: float = ((w_max - cwnd_epoch) / c) ** (1 / 3)
    w: float = c * (t - k) ** 3 + w_max
    return w


def after_loss(cwnd: int = 100, rtt: float | None = 0.1) -> Cubic:
    """A CUBIC flow that lost a packet at ``cwnd`` (first loss) and finished recovery."""
    cc = Cubic()
    cc.cwnd = cwnd
    cc.ssthresh = cwnd // 2
    if rtt is not None:
        cc.pkts_acked(0.0, 1, rtt)
    cc.on_congestion_event(0.0)
    cc.exit_recovery(0.0)
    return cc


def test_name_and_defaults() -> None:
    cc = Cubic()
    assert cc.name == "cubic"
    assert (cc.beta, cc.c) == (717, CUBIC_C)
    assert cc.fast_convergence and cc.tcp_friendliness
    assert cc.cwnd == 10


def test_multiplicative_decrease_beta_717() -> None:
    """cubictcp_recalc_ssthresh: ssthresh = cwnd * 717 / 1024 (~0.7), at least 2."""
    cc = after_loss(100)
    assert (cc.ssthresh, cc.cwnd, cc.last_max_cwnd) == (70, 70, 100)
    tiny = Cubic()
    tiny.cwnd = 2
    assert tiny.on_congestion_event(0.0) == 2


def test_fast_convergence_lowers_w_max() -> None:
    """RFC 9438 4.7: a loss below the previous W_max sets W_max = cwnd * (1 + beta) / 2."""
    cc = after_loss(100)
    cc.cwnd = 80
    assert cc.on_congestion_event(5.0) == 56  # 80 * 717 // 1024
    assert cc.last_max_cwnd == 68  # 80 * 1741 // 2048
    slow = Cubic(fast_convergence=False)
    slow.cwnd = 100
    slow.on_congestion_event(0.0)
    slow.exit_recovery(0.0)
    slow.cwnd = 80
    slow.on_congestion_event(5.0)
    assert slow.last_max_cwnd == 80


def test_epoch_start_sets_k_and_origin() -> None:
    """RFC 9438 eq. 2: K = cbrt((W_max - cwnd_epoch) / C) = cbrt(75) s for 100 -> 70."""
    cc = after_loss(100)
    cc.on_ack(10.0, 1)
    assert cc.epoch_start == 10.0
    assert cc.origin_point == 100
    assert cc.k == pytest.approx(math.cbrt(75), rel=1e-12)


@pytest.mark.parametrize("t", [0.0, 0.5, 1.0, 2.0, 3.0, 4.2171633265, 5.0, 6.0, 8.0])
def test_w_cubic_matches_rfc9438_formula(t: float) -> None:
    """The curve itself, at several t: W_cubic(0) = beta * W_max, W_cubic(K) = W_max."""
    cc = after_loss(100)
    cc.on_ack(10.0, 1)
    assert cc.w_cubic(t) == pytest.approx(rfc9438_w(t, 100, 70), abs=1e-9)
    assert cc.w_cubic(0.0) == pytest.approx(70, abs=1e-9)
    assert cc.w_cubic(cc.k) == pytest.approx(100, abs=1e-12)


def test_cnt_is_cwnd_over_distance_to_target_one_rtt_ahead() -> None:
    """bictcp_update: target = W_cubic(t + delay_min), cnt = cwnd / (target - cwnd)."""
    cc = after_loss(100, rtt=0.1)
    cc.on_ack(10.0, 1)
    cc.on_ack(11.0, 1)
    t = 1.0 + 0.1
    delta = int(0.4 * (math.cbrt(75) - t) ** 3)
    target = 100 - delta
    assert target == 88
    assert cc.cnt == 70 // (target - 70) == 3


def test_window_follows_the_cubic_curve_under_an_ack_clock() -> None:
    """Simulated: an RTT of 100 ms, one ACK per segment; cwnd(t) stays within 2 of W_cubic(t)."""
    cc = after_loss(100, rtt=0.1)
    rtt = 0.1
    now = 0.0
    checks = {}
    for rounds in range(1, 81):
        w = cc.cwnd
        for i in range(w):
            cc.on_ack(now + rtt * i / w, 1, rtt=rtt)
        now = round(now + rtt, 10)
        if rounds % 10 == 0:
            assert cc.epoch_start is not None
            checks[now] = (cc.cwnd, cc.w_cubic(now - cc.epoch_start))
    for now, (cwnd, w_cubic) in checks.items():
        assert abs(cwnd - w_cubic) <= 2, (now, cwnd, w_cubic)
    # Concave below W_max, plateau near K ~ 4.2 s, convex beyond.
    assert checks[1.0][0] < checks[3.0][0] <= 100 <= checks[5.0][0] < checks[8.0][0]


def test_growth_capped_at_one_segment_per_two_acked() -> None:
    """cnt >= 2: at most 1.5x per RTT, however far the target is."""
    cc = Cubic()
    cc.cwnd = 10
    cc.ssthresh = 5
    cc.last_max_cwnd = 10
    cc.on_ack(0.0, 1)
    cc.on_ack(100.0, 1)
    assert cc.cnt == 2
    before = cc.cwnd
    cc.on_ack(100.1, 10)
    assert cc.cwnd - before <= 5


def test_before_any_loss_growth_at_least_five_percent() -> None:
    """No W_max yet (last_max_cwnd == 0): cnt is capped at 20."""
    cc = Cubic()
    cc.cwnd = 100
    cc.ssthresh = 50
    cc.on_ack(0.0, 1)
    assert cc.cnt == 20


def test_tcp_friendly_region() -> None:
    """RFC 9438 4.3: when Reno (W_est) would be ahead, grow at least at Reno's rate."""

    def run(friendly: bool) -> Cubic:
        cc = Cubic(tcp_friendliness=friendly)
        cc.cwnd = 100
        cc.ssthresh = 50
        cc.last_max_cwnd = 100  # on the plateau: the cubic target is cwnd itself
        for i in range(19):
            cc.on_ack(0.05 * i, 10)
        return cc

    friendly = run(True)
    assert friendly.tcp_cwnd == 101  # 190 acked > 100 * 15 / 8 = 187
    assert friendly.cnt == 100  # cwnd / (W_est - cwnd)
    assert friendly.cwnd == 101  # the banked credit is spent at the new rate
    plain = run(False)
    assert plain.cnt == 100 * 100
    assert plain.cwnd == 100


def test_update_shortcut_within_hz_over_32() -> None:
    """bictcp_update recomputes at most every 1/32 s while cwnd is unchanged."""
    cc = after_loss(100, rtt=None)
    cc.on_ack(0.0, 1)
    assert cc.cnt == 70 * 100  # target == cwnd at t = 0
    cc.on_ack(0.03, 1)
    assert cc.cnt == 70 * 100  # skipped
    cc.on_ack(0.04, 1)
    assert cc.cnt == 70  # target 71


def test_idle_shifts_epoch() -> None:
    """cubictcp_cwnd_event(CA_EVENT_TX_START), RFC 9438 5.8: idle time is not curve time."""
    cc = after_loss(100)
    cc.on_ack(10.0, 1)
    cc.on_tx_start(15.0, last_sent=12.0)
    assert cc.epoch_start == 13.0
    cc.on_tx_start(40.0, last_sent=0.0)
    assert cc.epoch_start == 40.0  # never beyond now
    fresh = Cubic()
    fresh.on_tx_start(5.0, last_sent=1.0)
    assert fresh.epoch_start is None


def test_delay_min_tracking() -> None:
    """cubictcp_acked: minimum RTT; samples within 1 s of an epoch start are ignored."""
    cc = Cubic()
    cc.pkts_acked(0.0, 1, 0.2)
    cc.pkts_acked(0.1, 1, 0.3)
    cc.pkts_acked(0.2, 1, None)
    assert cc.delay_min == 0.2
    cc.cwnd, cc.ssthresh = 20, 10
    cc.on_ack(1.0, 1)  # epoch starts at 1.0
    cc.pkts_acked(1.5, 1, 0.05)
    assert cc.delay_min == 0.2
    cc.pkts_acked(2.5, 1, 0.05)
    assert cc.delay_min == 0.05


def test_rto_forgets_everything() -> None:
    """cubictcp_state(TCP_CA_Loss) -> bictcp_reset: W_max and delay_min are lost too."""
    cc = after_loss(100)
    cc.on_ack(10.0, 1)
    cc.on_rto(20.0)
    assert cc.cwnd == 1
    assert cc.ssthresh == 49  # 70 * 717 // 1024
    assert (cc.last_max_cwnd, cc.epoch_start, cc.delay_min, cc.k) == (0, None, 0.0, 0.0)


def test_slow_start_below_ssthresh() -> None:
    cc = Cubic(hystart=False)  # HyStart++ caps growth at L = 8 per ACK (test_hystart.py)
    cc.on_ack(0.0, 10)
    assert cc.cwnd == 20
    assert cc.epoch_start is None


def test_invalid_parameters() -> None:
    with pytest.raises(ValueError):
        Cubic(beta=1024)
    with pytest.raises(ValueError):
        Cubic(c=0)


@FAST
@given(
    st.integers(4, 5000),
    st.floats(0.001, 0.5),
    st.lists(st.floats(0.0, 2.0), min_size=1, max_size=40),
)
def test_per_rtt_growth_at_most_one_and_a_half(w_max: int, rtt: float, gaps: list[float]) -> None:
    """In congestion avoidance cwnd never grows by more than half the segments acknowledged."""
    cc = Cubic()
    cc.cwnd = w_max
    cc.ssthresh = 2
    cc.pkts_acked(0.0, 1, rtt)
    cc.on_congestion_event(0.0)
    cc.exit_recovery(0.0)
    now = 0.0
    for gap in gaps:
        now += gap
        before = cc.cwnd
        acked = before
        cc.on_ack(now, acked, rtt=rtt)
        assert before <= cc.cwnd <= before + acked // 2 + 1


@FAST
@given(st.integers(2, 100_000), st.floats(0.0, 0.99), st.floats(0.0, 100.0), st.floats(0, 10))
def test_w_cubic_is_increasing_and_hits_w_max_at_k(
    w_max: int, drop: float, t: float, dt: float
) -> None:
    cc = Cubic()
    cc.last_max_cwnd = w_max
    cc.cwnd = max(1, int(w_max * (1 - drop)))
    cc.ssthresh = 1
    cc.on_ack(0.0, 1)
    assert cc.w_cubic(t + dt) >= cc.w_cubic(t)
    if cc.cwnd < w_max:
        assert cc.w_cubic(cc.k) == pytest.approx(w_max)
        assert cc.w_cubic(0.0) == pytest.approx(cc.cwnd, abs=1e-6 * w_max)
