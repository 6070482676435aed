"""Retransmission (RFC 6298, Karn), fast retransmit/NewReno (RFC 5681, 6582), limited transmit."""

from __future__ import annotations

import pytest

from aiostack.core.tcp.state import TcpState
from aiostack.wire import tcp as wtcp

from .tcp_helpers import (
    ISS,
    PEER_ISS,
    drain,
    established,
    expect_nothing,
    expect_one,
    header,
    send,
    settings,
)

DATA0 = PEER_ISS + 1
OUR0 = ISS + 1


def test_initial_rto_is_one_second_without_sample() -> None:
    """RFC 6298 2.1 / Linux TCP_TIMEOUT_INIT."""
    from .tcp_helpers import client

    conn = client(0.0)
    assert conn.rtt.rto == 1.0


def test_rto_exact_and_backoff_doubles() -> None:
    """Nothing at t-1 ms, the retransmission at t; then 2*RTO, 4*RTO (RFC 6298 5.5)."""
    conn = established(0.0)
    rto = conn.rtt.rto
    assert rto == pytest.approx(0.2, abs=0.002)  # Linux's 200 ms floor on a 0-RTT path
    conn.send(1.0, b"x" * 100)
    first = expect_one(conn, 1.0)
    expect_nothing(conn, 1.0 + rto - 0.001)
    again = expect_one(conn, 1.0 + rto)
    assert again.seq == first.seq and bytes(again.payload) == bytes(first.payload)
    t2 = 1.0 + rto + 2 * rto
    expect_nothing(conn, t2 - 0.001)
    expect_one(conn, t2)
    assert conn.rtt.backoff == 2 and conn.counters.TcpRetransSegs == 2
    assert conn.counters.TcpExtTCPTimeouts == 2


def test_timer_not_rearmed_by_duplicate_acks() -> None:
    """Pitfall: only an ACK of new data restarts the timer (RFC 6298 5.3)."""
    conn = established(0.0)
    conn.send(1.0, b"x" * 3000)
    drain(conn, 1.0)
    deadline = conn.timers.retransmit
    for t in (1.05, 1.1, 1.15):
        send(conn, t, header(DATA0, OUR0))
    assert conn.timers.retransmit == deadline
    send(conn, 1.16, header(DATA0, OUR0 + 1460))
    assert conn.timers.retransmit == pytest.approx(1.16 + conn.rtt.rto)


def test_backoff_survives_ack_without_valid_sample() -> None:
    """Pitfall/Karn: an ACK of retransmitted data gives no sample; the backoff stays."""
    conn = established(0.0)
    conn.send(1.0, b"x" * 3000)
    drain(conn, 1.0)
    rto = conn.rtt.rto
    drain(conn, 1.0 + rto)  # timeout: retransmit, RTO doubles
    assert conn.rtt.backoff == 1
    send(conn, 1.0 + rto + 0.01, header(DATA0, OUR0 + 1460))  # acks retransmitted data
    assert conn.rtt.backoff == 1
    assert conn.timers.retransmit == pytest.approx(1.0 + rto + 0.01 + 2 * rto)


def test_fast_retransmit_on_third_dupack_and_limited_transmit() -> None:
    """NewReno (no SACK): RFC 5681 3.2 fast retransmit; RFC 3042 limited transmit."""
    conn = established(0.0, sndbuf=1 << 20, sack=False)
    conn.send(1.0, b"x" * 14 * 1460)
    assert len(drain(conn, 1.0)) == 10  # IW10
    send(conn, 1.1, header(DATA0, OUR0))
    lt1 = drain(conn, 1.1)
    assert len(lt1) == 1 and lt1[0].seq == OUR0 + 10 * 1460  # limited transmit
    send(conn, 1.11, header(DATA0, OUR0))
    assert len(drain(conn, 1.11)) == 1
    send(conn, 1.12, header(DATA0, OUR0))
    rtx = drain(conn, 1.12)
    assert rtx[0].seq == OUR0 and len(rtx[0].payload) == 1460
    assert conn.recovery.in_recovery
    assert conn.counters.TcpExtTCPFastRetrans == 1 and conn.counters.TcpExtTCPRenoRecovery == 1
    # A partial ACK marks the next hole lost (RFC 6582 3.2 step 3 resends it at
    # once); as in Linux it waits for PRR's cwnd (tcp_newreno_mark_lost, then
    # tcp_xmit_retransmit_queue): 11 out - 3 credited - 1 lost = 7 in flight, at
    # ssthresh, so the next duplicate ACK sends it.
    send(conn, 1.2, header(DATA0, OUR0 + 1460))
    assert drain(conn, 1.2) == []
    send(conn, 1.21, header(DATA0, OUR0 + 1460))
    nxt = drain(conn, 1.21)
    assert nxt[0].seq == OUR0 + 1460
    # The full ACK ends recovery with cwnd = ssthresh.
    send(conn, 1.3, header(DATA0, conn.snd_nxt))
    assert not conn.recovery.in_recovery
    assert conn.cc.cwnd == conn.cc.ssthresh


def test_sack_recovery_retransmits_only_holes() -> None:
    """RFC 6675: SACKed data is never resent; recovery starts on the third SACK dupack.

    With RACK off (``tcp_recovery=0``): the DupThresh path.
    """
    conn = established(0.0, sndbuf=1 << 20, st=settings(tcp_recovery=0))
    conn.send(1.0, b"x" * 14 * 1460)
    assert len(drain(conn, 1.0)) == 10

    # Segments 0 and 2 are lost; the receiver SACKs 1, then 3.., one by one.
    def sacks(*blocks: tuple[int, int]) -> wtcp.TcpOptions:
        return wtcp.TcpOptions(
            sack_blocks=tuple((OUR0 + a * 1460, OUR0 + b * 1460) for a, b in blocks)
        )

    send(conn, 1.1, header(DATA0, OUR0, options=sacks((1, 2))))
    new = drain(conn, 1.1)  # pipe 9 < cwnd 10: one new segment (limited transmit)
    assert [s.seq for s in new] == [OUR0 + 10 * 1460]
    send(conn, 1.11, header(DATA0, OUR0, options=sacks((3, 4), (1, 2))))
    drain(conn, 1.11)
    send(conn, 1.12, header(DATA0, OUR0, options=sacks((3, 5), (1, 2))))
    rtx = drain(conn, 1.12)
    assert conn.sb is not None and conn.sb.in_recovery
    assert conn.counters.TcpExtTCPSACKRecovery == 1
    assert rtx[0].seq == OUR0  # the head first
    sent = {s.seq for s in rtx}
    assert OUR0 + 1460 not in sent and OUR0 + 3 * 1460 not in sent  # SACKed: never resent
    # The recovery point acknowledged: recovery over, cwnd = ssthresh (PRR's end).
    send(conn, 1.3, header(DATA0, conn.snd_nxt))
    assert not conn.sb.in_recovery and conn.cc.cwnd == conn.cc.ssthresh


def test_dupack_counter_does_not_overflow() -> None:
    """Pitfall: 100,000 duplicate ACKs are harmless."""
    conn = established(0.0)
    conn.send(1.0, b"x" * 3000)
    drain(conn, 1.0)
    for _ in range(100_000):
        send(conn, 1.1, header(DATA0, OUR0))
    assert conn.recovery.dupacks <= 0xFFFF
    drain(conn, 1.1)
    assert conn.state is TcpState.ESTABLISHED


def test_retries2_gives_etimedout() -> None:
    """tcp_retries2: after that many timeouts without progress, ETIMEDOUT and no RST."""
    conn = established(0.0, st=settings(tcp_retries2=3))
    conn.send(1.0, b"x")
    drain(conn, 1.0)
    for _ in range(3):
        t = conn.timers.retransmit
        assert t is not None
        assert len(drain(conn, t)) == 1
    t = conn.timers.retransmit
    assert t is not None
    assert drain(conn, t) == []
    assert conn.state is TcpState.CLOSE
    with pytest.raises(TimeoutError):
        conn.recv(t)


def test_user_timeout() -> None:
    """TCP_USER_TIMEOUT: give up once data stayed unacknowledged that long."""
    conn = established(0.0)
    conn.user_timeout = 1.0
    conn.send(1.0, b"x")
    drain(conn, 1.0)
    t = 1.0
    while conn.state is not TcpState.CLOSE:
        nxt = conn.poll_at()
        assert nxt is not None
        t = nxt
        drain(conn, t)
    assert t < 1.0 + 0.2 + 0.4 + 0.8 + 1.6 + 0.01
    assert conn.take_error() == 110


def test_user_timeout_clamps_the_last_rto() -> None:
    """Linux ``tcp_clamp_rto_to_user_timeout``: the abort comes exactly at the user timeout.

    RTO 200 ms, TCP_USER_TIMEOUT 1 s, data sent at 1.0: retransmissions at
    1.2 (the count starts here, ``retrans_stamp``) and 1.6; the next RTO
    (800 ms, to 2.4) is clamped to what is left, so ETIMEDOUT at 2.2.
    """
    conn = established(0.0)
    conn.user_timeout = 1.0
    conn.send(1.0, b"x")
    drain(conn, 1.0)
    assert len(drain(conn, 1.2)) == 1
    assert len(drain(conn, 1.6)) == 1
    assert conn.timers.retransmit == pytest.approx(2.2)
    expect_nothing(conn, 2.199)
    assert conn.state is TcpState.ESTABLISHED
    drain(conn, 2.2)
    assert conn.state is TcpState.CLOSE and conn.take_error() == 110
    assert conn.counters.TcpExtTCPAbortOnTimeout == 1


def test_go_back_n_after_timeout_with_cwnd_one() -> None:
    """Linux tcp_enter_loss: cwnd 1, then everything outstanding is resent as ACKs arrive."""
    conn = established(0.0)
    conn.send(1.0, b"x" * 4 * 1460)
    assert len(drain(conn, 1.0)) == 4
    t = conn.timers.retransmit
    assert t is not None
    first = drain(conn, t)
    assert [s.seq for s in first] == [OUR0] and conn.cc.cwnd == 1
    send(conn, t + 0.01, header(DATA0, OUR0 + 1460))
    segs = drain(conn, t + 0.01)
    assert [s.seq for s in segs] == [OUR0 + 1460, OUR0 + 2920]
