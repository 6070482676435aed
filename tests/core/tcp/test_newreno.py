"""Reno/NewReno (RFC 5681, RFC 6582) and the generic cwnd mechanics (PRR, RTO, undo, idle).

Windows are in segments, as Linux counts them. Where Linux departs from the
RFC text (PRR instead of window inflation, cwnd-based ssthresh, restart
after idle) the test names the kernel function it follows.
"""

from __future__ import annotations

import errno

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiostack.core.tcp.congestion import (
    DEFAULT_CONGESTION_CONTROL,
    TCP_INFINITE_SSTHRESH,
    CongestionControl,
    Cubic,
    NewReno,
    available,
    create,
    register,
)
from aiostack.core.tcp.congestion.newreno import NewRenoRecovery, RecoveryAction

FAST = settings(max_examples=200, deadline=None)


def reno(cwnd: int = 10, ssthresh: int = TCP_INFINITE_SSTHRESH) -> NewReno:
    cc = NewReno()
    cc.cwnd = cwnd
    cc.ssthresh = ssthresh
    return cc


# -- registry (TCP_CONGESTION) -------------------------------------------------


def test_registry_names_like_linux() -> None:
    """tcp_available_congestion_control reads "reno cubic"; cubic is the default."""
    assert available() == ("reno", "cubic")
    assert DEFAULT_CONGESTION_CONTROL == "cubic"
    assert isinstance(create(), Cubic)
    assert isinstance(create("reno"), NewReno)
    assert create("reno", initial_cwnd=4).cwnd == 4


def test_unknown_name_is_enoent() -> None:
    """setsockopt(TCP_CONGESTION, "bbr") without bbr loaded fails with ENOENT."""
    with pytest.raises(FileNotFoundError) as info:
        create("bbr")
    assert info.value.errno == errno.ENOENT


def test_register_rejects_duplicates_and_long_names() -> None:
    """tcp_register_congestion_control: EEXIST for a taken name; names fit TCP_CA_NAME_MAX."""
    with pytest.raises(ValueError):
        register(NewReno)

    class TooLong(NewReno):
        __slots__ = ()
        name = "x" * 16

    with pytest.raises(ValueError):
        register(TooLong)


# -- slow start and congestion avoidance ---------------------------------------


def test_initial_window_is_ten_segments() -> None:
    """RFC 6928 IW10 (Linux TCP_INIT_CWND); ssthresh starts infinite."""
    cc = NewReno()
    assert cc.cwnd == 10
    assert cc.ssthresh == TCP_INFINITE_SSTHRESH
    assert cc.in_slow_start


def test_init_transfer_after_syn_loss() -> None:
    """tcp_init_transfer: cwnd 1 only after more than one SYN/SYN-ACK retransmission."""
    cc = NewReno()
    cc.init_transfer(syn_retransmits=1)
    assert cc.cwnd == 10
    cc.init_transfer(syn_retransmits=2)
    assert cc.cwnd == 1


def test_slow_start_adds_one_per_acked_segment() -> None:
    """RFC 5681 3.1 with RFC 3465 counting: +1 per segment acknowledged."""
    cc = reno()
    cc.on_ack(0.0, 10)
    assert cc.cwnd == 20
    cc.on_ack(0.1, 5)
    assert cc.cwnd == 25


def test_slow_start_stops_at_ssthresh_and_spends_rest_on_avoidance() -> None:
    """tcp_slow_start returns the leftover; tcp_cong_avoid_ai banks it in snd_cwnd_cnt."""
    cc = reno(10, 12)
    cc.on_ack(0.0, 5)
    assert cc.cwnd == 12
    assert cc.cwnd_cnt == 3
    assert not cc.in_slow_start


def test_congestion_avoidance_one_segment_per_window() -> None:
    """RFC 5681 3.1 eq. 3: about +1 SMSS per RTT (a window's worth of segments acked)."""
    cc = reno(20, 10)
    for _ in range(19):
        cc.on_ack(0.0, 1)
    assert cc.cwnd == 20
    cc.on_ack(0.0, 1)
    assert (cc.cwnd, cc.cwnd_cnt) == (21, 0)
    cc.on_ack(0.0, 50)  # a stretch ACK: 50 // 21 = 2 increments, 8 banked
    assert (cc.cwnd, cc.cwnd_cnt) == (23, 8)


def test_no_growth_when_not_cwnd_limited() -> None:
    """tcp_is_cwnd_limited / RFC 7661: an unused window does not grow."""
    cc = reno()
    cc.on_ack(0.0, 5, cwnd_limited=False)
    assert cc.cwnd == 10


def test_cwnd_clamp() -> None:
    """snd_cwnd_clamp bounds every increase."""
    cc = NewReno(cwnd_clamp=12)
    cc.on_ack(0.0, 10)
    assert cc.cwnd == 12


# -- fast recovery with PRR ----------------------------------------------------


def test_congestion_event_halves_and_starts_prr() -> None:
    """tcp_reno_ssthresh: max(cwnd/2, 2); prior values recorded for PRR and undo."""
    cc = reno(20, 15)
    assert cc.on_congestion_event(1.0) == 10
    assert cc.in_cwnd_reduction
    assert cc.prior_cwnd == 20
    assert cc.prior_ssthresh == 15  # tcp_current_ssthresh: max(15, 3/4 * 20)
    assert cc.cwnd == 20  # cwnd comes down through PRR, not at once
    assert reno(3, 100).on_congestion_event(0.0) == 2


def test_second_event_in_same_episode_does_not_reduce_again() -> None:
    """RFC 5681 3.2 / RFC 6582: one reduction per window of data."""
    cc = reno(20, 15)
    cc.on_congestion_event(1.0)
    cc.cwnd = 12
    assert cc.on_congestion_event(1.1) == 10
    assert cc.prior_cwnd == 20


def test_prr_sends_in_proportion_then_converges_to_ssthresh() -> None:
    """RFC 6937 (tcp_cwnd_reduction): prr_out = ceil(delivered * ssthresh / prior_cwnd).

    20 segments outstanding, the first lost; each duplicate ACK delivers one.
    While the pipe exceeds ssthresh one segment goes out per two ACKs; then
    PRR-SSRB keeps the pipe at ssthresh; recovery ends with cwnd = ssthresh.
    """
    cc = reno(20, 15)
    cc.on_congestion_event(0.0)
    in_flight = 16  # 20 out - 3 dup-ACKed - 1 lost
    trace = []
    for delivered in range(1, 20):
        cwnd = cc.on_recovery_ack(0.0, 1, in_flight, snd_una_advanced=False)
        while in_flight < cwnd:
            in_flight += 1
            cc.on_transmit()
        trace.append((cwnd, cc.prr_out))
        if delivered <= 12:
            assert cc.prr_out == -(-10 * delivered // 20)
        in_flight -= 1
    assert trace[0] == (17, 1)  # first ACK: the fast retransmission goes out
    assert trace[1] == (16, 1)
    assert [cwnd for cwnd, _ in trace[12:]] == [10] * 7
    cc.exit_recovery(0.5)
    assert (cc.cwnd, cc.ssthresh, cc.in_cwnd_reduction) == (10, 10, False)


def test_prr_ssrb_on_partial_ack_adds_one() -> None:
    """Below ssthresh, an ACK that advances snd_una and marks nothing lost may send one more."""
    cc = reno(20, 15)
    cc.on_congestion_event(0.0)
    cc.on_transmit()
    assert cc.on_recovery_ack(0.0, 2, 5, snd_una_advanced=True) == 5 + 3
    cc2 = reno(20, 15)
    cc2.on_congestion_event(0.0)
    cc2.on_transmit()
    assert cc2.on_recovery_ack(0.0, 2, 5, snd_una_advanced=True, newly_lost=1) == 5 + 2


def test_prr_ignores_acks_that_deliver_nothing() -> None:
    cc = reno(20, 15)
    cc.on_congestion_event(0.0)
    assert cc.on_recovery_ack(0.0, 0, 12, snd_una_advanced=False) == 20


def test_ecn_reduction_cannot_be_undone() -> None:
    """tcp_enter_cwr: prior_ssthresh = 0, so undo restores nothing."""
    cc = reno(20, 15)
    cc.on_congestion_event(0.0, ecn=True)
    cc.exit_recovery(0.1)
    cc.undo(0.2)
    assert (cc.cwnd, cc.ssthresh) == (10, 10)


def test_undo_restores_window_and_ssthresh() -> None:
    """tcp_undo_cwnd_reduction with tcp_reno_undo_cwnd: max(cwnd, prior_cwnd)."""
    cc = reno(20, 12)
    cc.on_congestion_event(0.0)
    cc.exit_recovery(0.1)
    cc.undo(0.2)
    assert cc.cwnd == 20
    assert cc.ssthresh == 15  # prior tcp_current_ssthresh: max(12, 10 + 5)
    assert not cc.in_cwnd_reduction


def test_undo_first_loss_restores_infinite_ssthresh() -> None:
    cc = reno(40)
    cc.on_congestion_event(0.0)
    cc.undo(0.1)
    assert (cc.cwnd, cc.ssthresh) == (40, TCP_INFINITE_SSTHRESH)


# -- retransmission timeout ----------------------------------------------------


def test_rto_collapses_to_one_segment_and_slow_starts() -> None:
    """RFC 5681 3.1: ssthresh = max(FlightSize/2, 2), LW = 1 (Linux: in_flight + 1)."""
    cc = reno(20, 100)
    cc.on_rto(3.0)
    assert (cc.cwnd, cc.ssthresh) == (1, 10)
    assert not cc.in_cwnd_reduction
    cc.on_ack(3.5, 1)
    cc.on_ack(3.6, 2)
    assert cc.cwnd == 4


def test_repeated_rto_keeps_ssthresh_when_told() -> None:
    """tcp_enter_loss: ssthresh is not lowered again for the same window."""
    cc = reno(20, 100)
    cc.on_rto(3.0)
    cc.on_rto(9.0, reduce_ssthresh=False)
    assert (cc.cwnd, cc.ssthresh) == (1, 10)
    cc.on_rto(9.0, in_flight=2, reduce_ssthresh=False)
    assert cc.cwnd == 3


def test_rto_during_recovery_ends_it() -> None:
    cc = reno(20, 100)
    cc.on_congestion_event(0.0)
    cc.on_rto(1.0, reduce_ssthresh=False)
    assert not cc.in_cwnd_reduction
    assert (cc.cwnd, cc.ssthresh) == (1, 10)


# -- slow start after idle -------------------------------------------------------


def test_restart_after_idle_halves_per_rto() -> None:
    """tcp_cwnd_restart (RFC 5681 4.1, RFC 7661): halve per idle RTO, floor IW; ssthresh 3/4."""
    cc = reno(80, 40)
    assert cc.restart_after_idle(3.5, last_sent=0.0, rto=1.0)
    assert cc.ssthresh == 60
    assert cc.cwnd == 10  # 80 -> 40 -> 20 -> 10 (floor: the initial window)


def test_restart_after_idle_counts_whole_rtos() -> None:
    cc = reno(80, 40)
    assert cc.restart_after_idle(1.5, last_sent=0.0, rto=1.0)
    assert cc.cwnd == 40
    cc = reno(80, 40)
    assert not cc.restart_after_idle(1.0, last_sent=0.0, rto=1.0)  # not idle > RTO
    assert (cc.cwnd, cc.ssthresh) == (80, 40)


def test_restart_after_idle_never_raises_small_window() -> None:
    cc = reno(4, 2)
    assert cc.restart_after_idle(100.0, last_sent=0.0, rto=0.2)
    assert cc.cwnd == 4
    assert cc.ssthresh == 3


# -- RFC 6582 recovery bookkeeping ---------------------------------------------


def test_newreno_fast_retransmit_partial_and_full_ack() -> None:
    """RFC 6582 3.2: third dupack -> FR with recover = snd_nxt; partial vs full ACK."""
    r = NewRenoRecovery(iss=1000)
    una, nxt = 5001, 25001
    assert r.on_dupack(una, nxt) is RecoveryAction.LIMITED_TRANSMIT  # RFC 3042
    assert r.on_dupack(una, nxt) is RecoveryAction.LIMITED_TRANSMIT
    assert r.on_dupack(una, nxt) is RecoveryAction.FAST_RETRANSMIT
    assert (r.in_recovery, r.recover) == (True, 25001)
    assert r.on_dupack(una, 26001) is RecoveryAction.NONE
    assert r.on_new_ack(10001) is RecoveryAction.PARTIAL_ACK
    assert r.partial_acks == 1 and r.dupacks == 0
    assert r.on_new_ack(20001) is RecoveryAction.PARTIAL_ACK
    assert r.on_new_ack(25001) is RecoveryAction.FULL_ACK
    assert not r.in_recovery
    assert r.on_new_ack(26001) is RecoveryAction.NONE


def test_newreno_no_second_fast_retransmit_below_recover() -> None:
    """RFC 6582 3.2 step 2: dupacks not covering more than recover start no new recovery."""
    r = NewRenoRecovery(iss=0)
    for _ in range(3):
        r.on_dupack(100, 1000)
    r.on_new_ack(1000)  # full ACK exactly at recover
    results = [r.on_dupack(1000, 2000) for _ in range(3)]
    assert results[-1] is RecoveryAction.NONE
    assert not r.in_recovery
    r.on_new_ack(1001)
    assert [r.on_dupack(1001, 2000) for _ in range(3)][-1] is RecoveryAction.FAST_RETRANSMIT


def test_newreno_after_rto_recover_is_snd_nxt() -> None:
    """RFC 6582 3.2 step 4: after a timeout, dupacks below the old snd_nxt do not trigger FR."""
    r = NewRenoRecovery(iss=0)
    r.on_rto(5000)
    assert [r.on_dupack(3000, 5000) for _ in range(3)][-1] is RecoveryAction.NONE


def test_newreno_across_sequence_wrap() -> None:
    r = NewRenoRecovery(iss=0xFFFFFF00)
    assert [r.on_dupack(0x10, 0x5000) for _ in range(3)][-1] is RecoveryAction.FAST_RETRANSMIT
    assert r.on_new_ack(0x4000) is RecoveryAction.PARTIAL_ACK
    assert r.on_new_ack(0x5000) is RecoveryAction.FULL_ACK


def test_dupack_counter_saturates() -> None:
    """Pitfall: a dup-ACK counter that overflows. It saturates instead."""
    r = NewRenoRecovery(iss=0)
    for _ in range(70_000):
        r.on_dupack(10, 20)
    assert r.dupacks == 0xFFFF
    assert r.in_recovery


# -- properties ----------------------------------------------------------------

events = st.lists(
    st.tuples(
        st.sampled_from(["ack", "event", "ecn", "rack", "send", "exit", "rto", "undo", "idle"]),
        st.integers(0, 64),
    ),
    max_size=60,
)


@FAST
@given(st.sampled_from(["reno", "cubic"]), events, st.integers(1, 500))
def test_window_invariants_under_any_event_sequence(
    name: str, seq: list[tuple[str, int]], clamp: int
) -> None:
    """cwnd stays in [1, clamp] and ssthresh >= 2 whatever the connection reports."""
    cc: CongestionControl = create(name, cwnd_clamp=clamp)
    now = 0.0
    for kind, n in seq:
        now += 0.01 * (n + 1)
        if kind == "ack" and not cc.in_cwnd_reduction:
            cc.on_ack(now, n, rtt=0.01 * (n + 1))
        elif kind == "event":
            cc.on_congestion_event(now)
        elif kind == "ecn":
            cc.on_congestion_event(now, ecn=True)
        elif kind == "rack" and cc.in_cwnd_reduction:
            cc.on_recovery_ack(now, n, n // 2, snd_una_advanced=n % 2 == 0)
        elif kind == "send":
            cc.on_transmit(n)
        elif kind == "exit":
            cc.exit_recovery(now)
        elif kind == "rto":
            cc.on_rto(now, n % 3, reduce_ssthresh=n % 2 == 0)
        elif kind == "undo":
            cc.undo(now)
        elif kind == "idle":
            cc.restart_after_idle(now + n, last_sent=now, rto=1.0)
        assert 1 <= cc.cwnd <= max(clamp, 1)
        assert cc.ssthresh >= 2
