"""TCP_USER_TIMEOUT (RFC 5482) where Linux applies it beyond data retransmission, on explicit times.

Linux's ``tcp_timer.c``: SYN-SENT (``tcp_write_timeout`` ->
``retransmits_timed_out`` and ``tcp_clamp_rto_to_user_timeout``),
keepalive (``tcp_keepalive_timer``) and zero-window probing
(``tcp_probe_timer`` and ``tcp_clamp_probe0_to_user_timeout``). The data
retransmission case is in ``test_retransmit.py``.
"""

from __future__ import annotations

import errno

import pytest

from aiostack.core.tcp.state import TcpState
from aiostack.core.tcp.timers import (
    clamp_probe0_to_user_timeout,
    clamp_to_user_timeout,
    keepalive_expired,
    user_timeout_expired,
)

from .tcp_helpers import (
    ISS,
    PEER_ISS,
    RST,
    client,
    drain,
    established,
    expect_nothing,
    expect_one,
    header,
    send,
)

OUR0 = ISS + 1
DATA0 = PEER_ISS + 1


# -- SYN-SENT --------------------------------------------------------------------------


def test_syn_sent_gives_up_at_the_user_timeout() -> None:
    """Linux ``tcp_write_timeout``: retransmits_timed_out(user_timeout) from the first SYN.

    SYNs at 0, 1 and 2 s (the linear 1 s RTO), the timer after the second
    retransmission clamped to what is left (``tcp_clamp_rto_to_user_timeout``),
    so the attempt fails with ETIMEDOUT at exactly 2.5 s, not after
    ``tcp_syn_retries``.
    """
    conn = client(0.0)
    conn.user_timeout = 2.5
    expect_one(conn, 0.0)
    expect_one(conn, 1.0)
    expect_one(conn, 2.0)
    assert conn.timers.retransmit == pytest.approx(2.5)
    expect_nothing(conn, 2.499)
    assert conn.state is TcpState.SYN_SENT
    drain(conn, 2.5)
    assert conn.state is TcpState.CLOSE
    assert conn.take_error() == errno.ETIMEDOUT


def test_syn_sent_first_timeout_never_expires() -> None:
    """retransmits_timed_out needs icsk_retransmits > 0: the first SYN is always resent."""
    conn = client(0.0)
    conn.user_timeout = 0.5
    expect_one(conn, 0.0)
    assert conn.timers.retransmit == pytest.approx(1.0)
    assert expect_one(conn, 1.0).flags & 0x02  # SYN again, though 1 s > 0.5 s
    # The user timeout has passed: the timer fires as soon as it can (one jiffy).
    assert conn.timers.retransmit == pytest.approx(1.001)
    drain(conn, 1.001)
    assert conn.state is TcpState.CLOSE and conn.take_error() == errno.ETIMEDOUT


def test_syn_sent_without_user_timeout_counts_retries() -> None:
    """No user timeout: the SYN keeps its schedule (tcp_syn_retries + linear timeouts)."""
    conn = client(0.0)
    expect_one(conn, 0.0)
    for t in (1.0, 2.0, 3.0):
        expect_one(conn, t)
    assert conn.state is TcpState.SYN_SENT


# -- keepalive -------------------------------------------------------------------------


def keepalive_conn(user_timeout: float, keepidle: float = 1.0):  # type: ignore[no-untyped-def]
    conn = established(0.0)
    conn.keepidle = keepidle
    conn.keepintvl = 1.0
    conn.keepcnt = 9
    conn.user_timeout = user_timeout
    conn.set_keepalive(0.0, True)
    return conn


def test_keepalive_gives_up_at_the_user_timeout() -> None:
    """Linux ``tcp_keepalive_timer``: elapsed >= user_timeout with a probe out: RST, ETIMEDOUT.

    TCP_KEEPCNT (9) is ignored: probes at 1 and 2 s, then at 3 s (3 s of
    silence, more than 2.5 s) the connection is reset.
    """
    conn = keepalive_conn(2.5)
    probe = expect_one(conn, 1.0)
    assert probe.seq == (OUR0 - 1) & 0xFFFFFFFF
    expect_one(conn, 2.0)
    assert conn.state is TcpState.ESTABLISHED
    rst = expect_one(conn, 3.0)
    assert rst.flags & RST
    assert conn.state is TcpState.CLOSE and conn.take_error() == errno.ETIMEDOUT
    assert conn.counters.TcpExtTCPAbortOnTimeout == 1


def test_keepalive_needs_a_probe_out() -> None:
    """Linux: ``icsk_probes_out > 0``: idle past the user timeout, a probe goes first."""
    conn = keepalive_conn(0.5, keepidle=2.0)
    probe = expect_one(conn, 2.0)
    assert not probe.flags & RST and conn.state is TcpState.ESTABLISHED
    assert expect_one(conn, 3.0).flags & RST
    assert conn.take_error() == errno.ETIMEDOUT


def test_keepalive_answer_resets_the_clock() -> None:
    """An ACK to a probe is input: the silence counts again from it (keepalive_time_elapsed)."""
    conn = keepalive_conn(2.5)
    expect_one(conn, 1.0)
    send(conn, 1.1, header(DATA0, OUR0))
    assert conn.probes == 0
    expect_nothing(conn, 2.0)
    expect_one(conn, 2.1)  # idle 1 s since the answer: a probe
    expect_one(conn, 3.1)
    assert expect_one(conn, 4.1).flags & RST  # 3 s of silence since 1.1


# -- zero-window probing -------------------------------------------------------------------


def zero_window_conn(user_timeout: float):  # type: ignore[no-untyped-def]
    conn = established(0.0)
    conn.user_timeout = user_timeout
    send(conn, 0.0, header(DATA0, OUR0, window=0))
    conn.send(1.0, b"x" * 100)
    expect_nothing(conn, 1.0)
    assert conn.timers.persist == pytest.approx(1.0 + conn.rtt.rto)
    return conn


def test_zero_window_probing_gives_up_at_the_user_timeout() -> None:
    """Linux ``tcp_probe_timer``: probing longer than the user timeout aborts, answers or not.

    RTO 200 ms: the first probe at 1.2 starts the clock (icsk_probes_tstamp);
    probes answered by zero windows at 1.6 and 2.0 (doubling); the next is
    clamped to what is left of 1 s (``tcp_clamp_probe0_to_user_timeout``):
    ETIMEDOUT at 2.2, silently.
    """
    conn = zero_window_conn(1.0)
    rto = conn.rtt.rto
    assert rto == pytest.approx(0.2, abs=0.002)
    t = 1.0 + rto
    expect_one(conn, t)
    send(conn, t, header(DATA0, OUR0, window=0))
    t2 = conn.timers.persist
    assert t2 == pytest.approx(t + 2 * rto)
    expect_one(conn, t2)
    send(conn, t2, header(DATA0, OUR0, window=0))
    assert conn.timers.persist == pytest.approx(t + 1.0)  # clamped from t2 + 4 * rto
    expect_nothing(conn, t + 0.999)
    assert conn.state is TcpState.ESTABLISHED
    drain(conn, t + 1.0)
    assert conn.state is TcpState.CLOSE and conn.take_error() == errno.ETIMEDOUT
    assert conn.counters.TcpExtTCPAbortOnTimeout == 1


def test_zero_window_probing_without_user_timeout_goes_on() -> None:
    """RFC 9293 3.8.6.1: answered probes keep the connection open indefinitely."""
    conn = zero_window_conn(0.0)
    t = conn.timers.persist
    for _ in range(8):
        assert t is not None
        expect_one(conn, t)
        send(conn, t, header(DATA0, OUR0, window=0))
        t = conn.timers.persist
    assert conn.state is TcpState.ESTABLISHED


def test_window_opening_restarts_the_probe_clock() -> None:
    """Linux ``tcp_ack_probe``: a usable window clears icsk_probes_tstamp."""
    conn = zero_window_conn(1.0)
    t = conn.timers.persist
    assert t is not None
    expect_one(conn, t)
    send(conn, t + 0.05, header(DATA0, OUR0, window=65535))
    assert drain(conn, t + 0.05)[0].seq == OUR0
    send(conn, t + 0.1, header(DATA0, OUR0 + 100, window=0))
    conn.send(t + 0.1, b"y" * 100)
    expect_nothing(conn, t + 0.1)
    t2 = conn.timers.persist
    assert t2 is not None
    expect_one(conn, t2)  # a fresh episode: its clock starts here
    assert conn.probes_tstamp == pytest.approx(t2)


# -- the rules as functions ------------------------------------------------------------


def test_rules() -> None:
    """retransmits_timed_out, the two clamps and the keepalive test, as Linux writes them."""
    assert not user_timeout_expired(5.0, None, 1.0)
    assert not user_timeout_expired(5.0, 1.0, 0.0)
    assert user_timeout_expired(2.0, 1.0, 1.0)
    assert not user_timeout_expired(1.999, 1.0, 1.0)
    assert clamp_to_user_timeout(1.5, 0.8, 1.0, 1.0) == pytest.approx(0.5)
    assert clamp_to_user_timeout(1.5, 0.3, 1.0, 1.0) == pytest.approx(0.3)
    assert clamp_to_user_timeout(1.5, 0.8, 1.0, 0.0) == 0.8
    assert clamp_to_user_timeout(2.5, 0.8, 1.0, 1.0) == pytest.approx(0.001)  # passed: ASAP
    assert clamp_probe0_to_user_timeout(2.0, 5.0, 1.0, 1.0) == pytest.approx(0.002)
    assert keepalive_expired(idle=3.0, probes_out=1, keepcnt=9, user_timeout=2.5)
    assert not keepalive_expired(idle=3.0, probes_out=0, keepcnt=0, user_timeout=2.5)
    assert keepalive_expired(idle=0.0, probes_out=9, keepcnt=9, user_timeout=0.0)
