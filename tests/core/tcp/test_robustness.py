"""RFC 5961 blind-attack defences, RST rules, and pitfalls other stacks fell into."""

from __future__ import annotations

import errno

from aiostack.core.tcp.state import TRANSITIONS, TcpState, to_dot

from .tcp_helpers import (
    ACK,
    ISS,
    PEER_ISS,
    RST,
    SYN,
    drain,
    established,
    expect_nothing,
    header,
    send,
)

DATA0 = PEER_ISS + 1
OUR0 = ISS + 1


def test_exact_rst_resets() -> None:
    """RFC 5961 3.2: RST with SEG.SEQ == RCV.NXT resets; ECONNRESET (Linux tcp_reset)."""
    conn = established()
    assert send(conn, 0.1, header(DATA0, 0, RST)) is None
    assert conn.state is TcpState.CLOSE and conn.error == errno.ECONNRESET
    assert conn.counters.TcpEstabResets == 1


def test_in_window_rst_draws_challenge_ack() -> None:
    """RFC 5961 3.2: in-window but not exact: challenge ACK, connection intact."""
    conn = established()
    reply = send(conn, 0.1, header(DATA0 + 100, 0, RST))
    assert reply is not None and reply.flags == ACK and reply.ack == DATA0
    assert reply.seq == OUR0
    assert conn.state is TcpState.ESTABLISHED
    assert conn.counters.TcpExtTCPChallengeACK == 1


def test_out_of_window_rst_is_silently_dropped() -> None:
    conn = established()
    assert send(conn, 0.1, header(DATA0 + 10_000_000, 0, RST)) is None
    expect_nothing(conn, 0.1)
    assert conn.state is TcpState.ESTABLISHED


def test_syn_in_established_draws_challenge_ack() -> None:
    """RFC 5961 4.2: any SYN in a synchronized state gets a challenge ACK."""
    conn = established()
    reply = send(conn, 0.1, header(DATA0 + 3, 0, SYN))
    assert reply is not None and reply.flags == ACK and reply.ack == DATA0
    assert conn.state is TcpState.ESTABLISHED


def test_challenge_acks_are_rate_limited_per_socket() -> None:
    """Linux tcp_invalid_ratelimit: one out-of-window answer per 500 ms per socket."""
    conn = established()
    assert send(conn, 0.1, header(DATA0 + 1, 0, RST)) is not None
    assert send(conn, 0.2, header(DATA0 + 1, 0, RST)) is None
    assert send(conn, 0.6, header(DATA0 + 1, 0, RST)) is not None


def test_ack_of_unsent_data_is_challenged_and_dropped() -> None:
    """RFC 5961 5.2 / RFC 9293: SEG.ACK > SND.NXT: ACK and drop (the payload too)."""
    conn = established()
    reply = send(conn, 0.1, header(DATA0, OUR0 + 5000), b"data")
    assert reply is not None and reply.flags == ACK
    assert conn.snd_una == OUR0 and len(conn.rcvbuf) == 0


def test_rst_never_answered_with_rst() -> None:
    """Pitfall: a CLOSED control block (and the demux) never answers an RST."""
    conn = established()
    conn.abort(0.1)
    rst = drain(conn, 0.1)
    assert len(rst) == 1 and rst[0].flags & RST
    assert send(conn, 0.2, header(DATA0, OUR0, RST | ACK)) is None
    assert send(conn, 0.2, header(DATA0, OUR0, RST)) is None


def test_unacceptable_segment_gets_ack() -> None:
    """RFC 9293 3.10.7.4: an unacceptable non-RST segment is answered with an ACK."""
    conn = established()
    send(conn, 0.1, header(DATA0 - 5000, OUR0), b"old")
    seg = drain(conn, 0.1)
    assert len(seg) == 1 and seg[0].ack == DATA0


def test_transition_table_names_every_change() -> None:
    """Every state is reachable in the table and the diagram renders."""
    targets = {dst for dst in TRANSITIONS.values()}
    sources = {src for src, _ in TRANSITIONS}
    assert set(TcpState) <= targets | sources
    assert "SYN-RECEIVED" in to_dot()


def test_icmp_port_unreachable_in_syn_sent_refuses() -> None:
    """Linux tcp_v4_err: a fatal ICMP error in SYN-SENT ends the attempt (ECONNREFUSED)."""
    from .tcp_helpers import client

    conn = client(0.0)
    drain(conn, 0.0)
    conn.on_icmp_error(0.1, errno.ECONNREFUSED, True, seq=ISS + 12345)  # not our seq: ignored
    assert conn.state is TcpState.SYN_SENT
    conn.on_icmp_error(0.1, errno.ECONNREFUSED, True, seq=ISS)
    assert conn.state is TcpState.CLOSE and conn.error == errno.ECONNREFUSED


def test_icmp_soft_error_kept_and_reported_on_timeout() -> None:
    """Linux: in ESTABLISHED an unreachable is soft (SO_ERROR) and replaces ETIMEDOUT."""
    from .tcp_helpers import settings

    conn = established(st=settings(tcp_retries2=1))
    conn.send(0.1, b"x")
    drain(conn, 0.1)
    conn.on_icmp_error(0.15, errno.EHOSTUNREACH, False, seq=OUR0)
    assert conn.state is TcpState.ESTABLISHED and conn.error == 0
    while conn.state is not TcpState.CLOSE:
        t = conn.poll_at()
        assert t is not None
        drain(conn, t)
    assert conn.take_error() == errno.EHOSTUNREACH


def test_icmp_frag_needed_lowers_mss_and_resends() -> None:
    conn = established()
    conn.send(0.1, b"x" * 1460)
    assert len(drain(conn, 0.1)[0].payload) == 1460
    conn.on_icmp_error(0.15, errno.EMSGSIZE, False, seq=OUR0, mtu=1000)
    segs = drain(conn, 0.15)
    assert [len(s.payload) for s in segs] == [960]
    assert conn.error == 0


def test_keepalive_probes_then_times_out() -> None:
    """RFC 1122 4.2.3.6 / Linux: probes at seq snd_una-1 after keepidle, then RST+ETIMEDOUT."""
    conn = established()
    conn.keepidle, conn.keepintvl, conn.keepcnt = 10.0, 2.0, 2
    conn.set_keepalive(0.0, True)
    assert conn.poll_at() == 10.0
    expect_nothing(conn, 9.999)
    probe = drain(conn, 10.0)
    assert len(probe) == 1 and probe[0].seq == OUR0 - 1 and len(probe[0].payload) == 0
    assert len(drain(conn, 12.0)) == 1
    final = drain(conn, 14.0)
    assert len(final) == 1 and final[0].flags & RST
    assert conn.state is TcpState.CLOSE and conn.take_error() == errno.ETIMEDOUT


def test_keepalive_death_counts_abort_on_timeout() -> None:
    """Linux ``tcp_keepalive_timer`` -> ``tcp_write_err``: TCPAbortOnTimeout, as for RTOs.

    keepidle 10 s, keepintvl 2 s, keepcnt 2: probes at 10 and 12 s, the
    connection dies at 14 s, and only then is the counter bumped.
    """
    conn = established()
    conn.keepidle, conn.keepintvl, conn.keepcnt = 10.0, 2.0, 2
    conn.set_keepalive(0.0, True)
    drain(conn, 10.0)
    drain(conn, 12.0)
    assert conn.counters.TcpExtTCPAbortOnTimeout == 0
    drain(conn, 14.0)
    assert conn.state is TcpState.CLOSE
    assert conn.counters.TcpExtTCPAbortOnTimeout == 1


def test_keepalive_answered_keeps_connection() -> None:
    conn = established()
    conn.keepidle, conn.keepintvl, conn.keepcnt = 10.0, 2.0, 2
    conn.set_keepalive(0.0, True)
    drain(conn, 10.0)
    send(conn, 10.05, header(DATA0, OUR0))
    assert conn.probes == 0
    expect_nothing(conn, 12.0)
    assert conn.state is TcpState.ESTABLISHED
    assert conn.poll_at() == 10.05 + 10.0
