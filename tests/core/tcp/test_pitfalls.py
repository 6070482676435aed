"""Regression tests for the issue's pitfalls not covered next to their feature.

Covered elsewhere (each test names its pitfall): RST answered with RST
(test_robustness, test_listen), RTO re-armed only by new data and the
backoff surviving an ACK without sample (test_retransmit), NewReno's
dup-ACK counter (test_newreno, test_retransmit), the window update after a
drain (test_established), SACK-permitted from the SYN-ACK (test_syn_sent),
SACK blocks across the wrap (test_options), a stray RST and another
connection's window (test_listen), SYNs with ECE/CWR (test_syn_received),
out-of-order data using the whole window (test_established, test_buffers),
sender SWS avoidance not starving (test_established), simultaneous open
(test_syn_sent). Here: the backoff across a timer restart, the SACK path's
dup-ACK counter, and modulo arithmetic in RACK-TLP's new code.
"""

from __future__ import annotations

import pytest

from aiostack.core.tcp.rack import Rack
from aiostack.core.tcp.state import TcpState
from aiostack.wire import tcp as wtcp

from .tcp_helpers import (
    ACK,
    PEER_ISS,
    SYN,
    client,
    drain,
    expect_nothing,
    expect_one,
    header,
    send,
    settings,
    syn_ack_options,
)

DATA0 = PEER_ISS + 1
MASK = 0xFFFFFFFF


def test_rto_backoff_survives_a_timer_restart() -> None:
    """Pitfall: the backed-off RTO must also time the next flight (RFC 6298 5.5/5.7, Karn)."""
    conn = client(0.0, iss=1000)
    expect_one(conn, 0.0)
    send(conn, 0.1, header(PEER_ISS, 1001, SYN | ACK, options=syn_ack_options(ts=False)))
    drain(conn, 0.1)
    conn.send(1.0, b"x" * 100)
    drain(conn, 1.0)
    rto = conn.rtt.rto
    expect_one(conn, 1.0 + rto)  # timeout: the RTO doubles
    send(conn, 1.0 + rto + 0.05, header(DATA0, 1101))  # ambiguous ACK: no sample
    assert conn.timers.retransmit is None and conn.rtt.backoff == 1
    conn.send(2.0, b"y" * 100)  # a new flight restarts the timer ...
    drain(conn, 2.0)
    assert conn.timers.retransmit == pytest.approx(2.0 + 2 * rto)  # ... still backed off
    assert conn.timers.loss_probe is not None and conn.timers.loss_probe <= 2.0 + 2 * rto


def test_sack_dupack_counter_saturates() -> None:
    """Pitfall: 100,000 SACK duplicate ACKs leave the counter at 0xFFFF (RACK off)."""
    conn = client(0.0, settings(tcp_recovery=0), iss=1000)
    expect_one(conn, 0.0)
    send(conn, 0.1, header(PEER_ISS, 1001, SYN | ACK, options=syn_ack_options(ts=False)))
    drain(conn, 0.1)
    conn.send(1.0, b"x" * 10 * 1460)
    drain(conn, 1.0)
    for i in range(100_000):
        # Each ACK SACKs one more byte of segment 9: new SACK information each time.
        block = ((1001 + 9 * 1460) & MASK, (1001 + 9 * 1460 + 1 + i % 1459) & MASK)
        send(conn, 1.1, header(DATA0, 1001, options=wtcp.TcpOptions(sack_blocks=(block,))))
    assert conn.sack_dupacks <= 0xFFFF
    drain(conn, 1.1)
    assert conn.state is TcpState.ESTABLISHED


def test_rack_and_tlp_across_the_sequence_wrap() -> None:
    """Pitfall: RACK's log, SACKs and the probe use modular sequence numbers at 2**32."""
    iss = MASK - 3 * 1460  # the third segment straddles the wrap
    conn = client(0.0, iss=iss)
    expect_one(conn, 0.0)
    send(
        conn,
        0.1,
        header(PEER_ISS, iss + 1, SYN | ACK, options=syn_ack_options(ts=False, wscale=None)),
    )
    drain(conn, 0.1)

    def seq(i: int) -> int:
        return (iss + 1 + i * 1460) & MASK

    conn.send(1.0, b"x" * 10 * 1460)
    assert [s.seq for s in drain(conn, 1.0)] == [seq(i) for i in range(10)]
    sacks = wtcp.TcpOptions(sack_blocks=((seq(4), seq(6)),))
    send(conn, 1.1, header(DATA0, seq(0), options=sacks))
    assert conn.timers.reorder == pytest.approx(1.125)
    expect_nothing(conn, 1.1249)
    resent = drain(conn, 1.125)
    # Segments 0-3 (across the wrap) were sent before the SACKed ones: lost.
    assert [s.seq for s in resent][:1] == [seq(0)]
    for s in resent:
        assert s.seq in {seq(i) for i in range(4)}
    send(conn, 1.2, header(DATA0, seq(10)))
    assert conn.snd_una == seq(10) and conn.sb is not None and not conn.sb.in_recovery
    # A tail: one more flight, no ACK: the probe is the last segment, past the wrap.
    conn.send(1.3, b"y" * 2 * 1460)
    drain(conn, 1.3)
    probe = expect_one(conn, conn.timers.loss_probe or 0.0)
    assert probe.seq == seq(11)


def test_rack_log_across_the_wrap() -> None:
    """The log's offsets are unbounded; sequence numbers wrap only at its edges."""
    base = MASK - 150
    rack = Rack(base)
    rack.on_send(base, (base + 100) & MASK, 1.0)
    rack.on_send((base + 100) & MASK, (base + 200) & MASK, 1.0)  # straddles 2**32
    rack.on_send((base + 200) & MASK, (base + 300) & MASK, 1.01)
    assert rack.on_ack(1.11, base, [((base + 200) & MASK, (base + 300) & MASK)], min_rtt=0.1)
    lost_end, _ = rack.detect_loss(1.2, 0.0)
    assert lost_end == (base + 200) & MASK
    assert rack.last_segment() == ((base + 200) & MASK, 100)
