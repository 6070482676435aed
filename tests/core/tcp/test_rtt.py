"""RTT estimation and RTO (RFC 6298) with Linux's arithmetic (tcp_rtt_estimator, tcp_set_rto).

Every expected value below is worked out by hand from the kernel's integer
code (srtt_us = 8*SRTT, mdev_us/rttvar_us = 4*deviation, RTO rounded up to
1 ms jiffies); where Linux and the RFC's text disagree the test says which
one it checks.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiostack.core.tcp.rtt import (
    TCP_RTO_MAX,
    MinRttFilter,
    RttEstimator,
    ts_rtt,
)

FAST = settings(max_examples=200, deadline=None)
MS = 1000  # microseconds


def first(rtt: float, **kwargs: float) -> RttEstimator:
    est = RttEstimator(**kwargs)
    est.sample(rtt, snd_una=0, snd_nxt=1000)
    return est


def test_initial_state_is_tcp_init_sock() -> None:
    """Before any sample: RTO 1 s (RFC 6298 2.1); tcp_info shows rtt 0, rttvar 250 ms."""
    est = RttEstimator()
    assert not est.has_sample
    assert est.rto_us == 1_000_000
    assert est.rto == 1.0
    assert est.rtt_us == 0
    assert est.rttvar_us == 250_000  # Linux: mdev_us = TCP_TIMEOUT_INIT, reported >> 2
    assert est.backoff == 0
    assert est.min_rtt_us is None


def test_first_sample_sets_srtt_r_rttvar_half_r() -> None:
    """RFC 6298 2.2: SRTT = R, RTTVAR = R/2, RTO = SRTT + 4*RTTVAR = 3R (R large enough)."""
    est = first(0.100)
    assert est.rtt_us == 100 * MS
    assert est.rttvar_us == 50 * MS
    assert est.rto_us == 300 * MS
    assert est.srtt == 0.1
    assert est.has_sample


def test_first_small_sample_gets_linux_min_rto_added_not_max() -> None:
    """Linux: RTO = SRTT + max(TCP_RTO_MIN, 4*RTTVAR) = 10 + 200 ms.

    RFC 6298 2.4 would clamp the sum instead (max(200 ms, 30 ms) = 200 ms
    with Linux's minimum); Linux's variance floor makes it 210 ms.
    """
    est = first(0.010)
    assert est.rtt_us == 10 * MS
    assert est.rttvar_us == 5 * MS
    assert est.rto_us == 210 * MS


def test_rto_is_rounded_up_to_jiffies() -> None:
    """A 50 us loopback RTT gives rto:201 in ss (200.05 ms rounded up to 1 ms ticks)."""
    est = first(0.000050)
    assert est.rtt_us == 50
    assert est.rto_us == 201 * MS
    # Without tick rounding the exact sum shows.
    assert first(0.000050, tick=0).rto_us == 200_050


def test_second_larger_sample_matches_rfc_gains() -> None:
    """RFC 6298 2.3 with alpha 1/8, beta 1/4: SRTT 112.5 ms, RTTVAR 62.5 ms, RTO 362.5 -> 363."""
    est = first(0.100)
    est.sample(0.200, snd_una=2000, snd_nxt=3000)
    assert est.rtt_us == 112_500
    assert est.rttvar_us == 62_500
    assert est.rto_us == 363 * MS


def test_falling_sample_moves_mdev_at_one_32nd() -> None:
    """Linux only: when R < SRTT the deviation enters with gain 1/32, not 1/4.

    RFC 6298 would give RTTVAR = 3/4*50 + 1/4*80 = 57.5 ms; Linux 50.937 ms.
    """
    est = first(0.100)
    est.sample(0.020, snd_una=2000, snd_nxt=3000)
    assert est.rtt_us == 90_000
    assert est.rttvar_us == 50_937  # mdev_us 203750 >> 2
    assert est.rto_us == 294 * MS  # 90 ms + rttvar_us 203.75 ms, rounded up


def test_rttvar_decays_once_per_flight_toward_flight_max() -> None:
    """Linux: rttvar_us tracks the flight's largest mdev and decays 1/4 per flight."""
    est = first(0.100)  # rtt_seq = 1000
    est.sample(0.300, snd_una=500, snd_nxt=1000)  # mdev 350 ms: rttvar_us jumps up
    assert est.rto_us == (125_000 + 350_000)
    est.sample(0.125, snd_una=500, snd_nxt=1000)  # same flight: no decay
    assert est.rto_us == 475 * MS
    est.sample(0.125, snd_una=1500, snd_nxt=5000)  # flight ends; max == rttvar: no decay
    assert est.rto_us == 475 * MS
    # Next flight's max mdev is below TCP_RTO_MIN, so the floor (200 ms) is the target:
    est.sample(0.125, snd_una=6000, snd_nxt=7000)
    assert est.rto_us == 125_000 + 312_500 + 500  # 350 - (350-200)/4 = 312.5, rounded up


def test_rttvar_floor_is_rto_min_parameter() -> None:
    """A route's rto_min replaces the 200 ms floor (Linux tcp_rto_min)."""
    est = first(0.010, rto_min=0.05)
    assert est.rto_us == 60 * MS


def test_huge_sample_is_capped_at_rto_max() -> None:
    """tcp_bound_rto: RTO never exceeds TCP_RTO_MAX (120 s)."""
    est = first(100.0)
    assert est.rto == TCP_RTO_MAX


def test_backoff_doubles_and_caps() -> None:
    """tcp_retransmit_timer: icsk_rto doubles per expiry, capped at 120 s."""
    est = first(0.100)
    seen = [est.backoff_rto() for _ in range(12)]
    assert seen[:5] == [0.6, 1.2, 2.4, 4.8, 9.6]
    assert seen[8] == 120.0 and seen[-1] == 120.0  # 153.6 would exceed the cap
    assert est.backoff == 12
    assert est.rto_us == 120_000_000


def test_backoff_before_any_sample_starts_from_one_second() -> None:
    """SYN retransmissions: 1, 2, 4, 8 ... s (RFC 6298 5.5)."""
    est = RttEstimator()
    assert [est.backoff_rto() for _ in range(4)] == [2.0, 4.0, 8.0, 16.0]


def test_valid_sample_resets_backoff() -> None:
    """RFC 6298 5.7 / Linux tcp_ack_update_rtt: icsk_backoff = 0 on a valid sample only."""
    est = first(0.100)
    est.backoff_rto()
    est.backoff_rto()
    assert est.rto_us == 1200 * MS
    used = est.on_ack(5.0, snd_una=2000, snd_nxt=3000, seq_rtt=0.100)
    assert used == 0.100
    assert est.backoff == 0
    assert est.rto_us == 300 * MS  # fresh estimate, no longer backed off


def test_karn_ignores_timing_of_retransmitted_data() -> None:
    """Karn (RFC 6298 3): an ACK covering a retransmission gives no sample; backoff stays."""
    est = first(0.100)
    est.backoff_rto()
    used = est.on_ack(5.0, snd_una=2000, snd_nxt=3000, seq_rtt=3.0, retrans_acked=True)
    assert used is None
    assert est.rtt_us == 100 * MS
    assert est.backoff == 1
    assert est.rto_us == 600 * MS


def test_karn_allows_unambiguous_timestamp_sample() -> None:
    """RFC 7323 4: a TSecr names the transmission it answers, so it is a valid sample."""
    est = first(0.100)
    est.backoff_rto()
    used = est.on_ack(5.0, snd_una=2000, snd_nxt=3000, seq_rtt=3.0, retrans_acked=True, ts_rtt=0.1)
    assert used == 0.1
    assert est.backoff == 0


def test_sample_preference_seq_then_sack_then_timestamp() -> None:
    """Linux prefers ACK timing over TSecr (middleboxes corrupt TSecr), SACK timing next."""
    una, nxt = 2000, 3000
    assert (
        first(0.1).on_ack(1.0, snd_una=una, snd_nxt=nxt, seq_rtt=0.2, sack_rtt=0.3, ts_rtt=0.4)
        == 0.2
    )
    assert first(0.1).on_ack(1.0, snd_una=una, snd_nxt=nxt, sack_rtt=0.3, ts_rtt=0.4) == 0.3
    assert first(0.1).on_ack(1.0, snd_una=una, snd_nxt=nxt, ts_rtt=0.4) == 0.4
    assert first(0.1).on_ack(1.0, snd_una=una, snd_nxt=nxt) is None


def test_no_handshake_sample_falls_back_to_three_seconds() -> None:
    """RFC 6298 5.7 (Linux tcp_init_metrics): no SYN sample -> RTO 3 s once established."""
    est = RttEstimator()
    est.backoff_rto()  # the SYN was retransmitted
    est.on_established()
    assert est.rto_us == 3_000_000
    assert est.rttvar_us == 750_000
    sampled = first(0.1)
    sampled.on_established()
    assert sampled.rto_us == 300 * MS


def test_revert_backoff_rfc6069() -> None:
    """ICMP-based RTO revert (tcp_ld_RTO_revert): one doubling is undone."""
    est = first(0.100)
    for _ in range(3):
        est.backoff_rto()
    assert est.rto_us == 2400 * MS
    assert est.revert_backoff() == 1.2
    assert est.backoff == 2


def test_ts_rtt_helper() -> None:
    """tcp_rtt_tsopt_us: 1 ms ticks, 0 counts as 1 tick, modulo 2**32, future is none."""
    assert ts_rtt(1100, 1000) == 0.1
    assert ts_rtt(5, 5) == 0.001
    assert ts_rtt(5, 0xFFFFFFFF - 4) == 0.010  # across the wrap
    assert ts_rtt(1000, 1100) is None


def test_min_rtt_filter_window_expiry() -> None:
    """lib/minmax.c running min over tcp_min_rtt_wlen (300 s), sub-window aging."""
    f = MinRttFilter()
    w = 300.0
    assert f.update(0.0, 100, w) == 100
    assert f.update(1.0, 50, w) == 50  # new minimum resets
    assert f.update(2.0, 80, w) == 50
    assert f.update(100.0, 90, w) == 50  # > w/4 later: becomes 2nd choice
    assert f.update(200.0, 95, w) == 50  # > w/2 later: becomes 3rd choice
    assert f.update(302.0, 99, w) == 90  # 50 is older than the window: expires
    assert f.update(700.0, 120, w) == 120  # nothing left in the window: reset


def test_min_rtt_from_on_ack_uses_ca_rtt_and_skips_delayed() -> None:
    """tcp_update_rtt_min: ca_rtt feeds the filter; a maybe-delayed ACK cannot raise it."""
    est = RttEstimator()
    est.on_ack(1.0, snd_una=10, snd_nxt=20, seq_rtt=0.05, ca_rtt=0.03)
    assert est.min_rtt_us == 30 * MS
    assert est.rtt_us == 50 * MS
    est.on_ack(2.0, snd_una=20, snd_nxt=30, seq_rtt=0.02, ack_maybe_delayed=True)
    assert est.min_rtt_us == 20 * MS  # lower: accepted even if maybe delayed


def test_invalid_parameters() -> None:
    with pytest.raises(ValueError):
        RttEstimator(rto_min=0)
    with pytest.raises(ValueError):
        RttEstimator(rto_min=2.0, rto_max=1.0)
    with pytest.raises(ValueError):
        first(0.1).sample(-0.1, snd_una=0, snd_nxt=0)


samples = st.lists(st.integers(0, 5_000_000), min_size=1, max_size=40)


@FAST
@given(samples, st.integers(0, 0xFFFFFFFF))
def test_invariants_over_any_samples(rtts_us: list[int], base: int) -> None:
    """RTO is whole ms, within [SRTT + 200 ms, 120 s]; SRTT stays within the samples."""
    est = RttEstimator()
    una = base
    for i, rtt in enumerate(rtts_us):
        una = (una + 1000 * (i % 3)) & 0xFFFFFFFF
        est.sample(rtt / 1e6, snd_una=una, snd_nxt=(una + 5000) & 0xFFFFFFFF)
        assert est.backoff == 0
        assert est.rto_us % MS == 0
        assert est.rto_us <= 120_000_000
        assert est.rto_us >= min(est.rtt_us + 200 * MS, 120_000_000)
        assert min(rtts_us[: i + 1]) - 1 <= est.rtt_us <= max(max(rtts_us[: i + 1]), 1)


@FAST
@given(st.integers(1, 10_000_000), st.integers(0, 30))
def test_backoff_is_bounded_doubling(rtt_us: int, n: int) -> None:
    est = first(rtt_us / 1e6)
    base = est.rto_us
    for _ in range(n):
        est.backoff_rto()
    assert est.rto_us == min(base << n, 120_000_000)
