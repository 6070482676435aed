"""SYN-SENT (RFC 9293 3.10.7.3): the active opener's first state."""

from __future__ import annotations

import errno

import pytest

from aiostack.core.tcp.state import TcpState
from aiostack.wire import tcp as wtcp

from .tcp_helpers import (
    ACK,
    ISS,
    PEER_ISS,
    RST,
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


def test_syn_options_in_linux_order() -> None:
    """Linux tcp_options_write: mss, sackOK, TS val/ecr, nop, wscale (20 bytes)."""
    conn = client(0.0)
    syn = expect_one(conn, 0.0)
    assert syn.flags == SYN and syn.seq == ISS and syn.ack == 0
    assert syn.options.hex() == "020405b4" + "0402080a" + "00000000" + "00000000" + "01030307"
    # The SYN's window is never scaled (RFC 7323 2.2): 44 * 1460 as Linux offers.
    assert syn.window == 64240
    assert conn.counters.TcpActiveOpens == 1


def test_syn_options_without_timestamps() -> None:
    """Linux layout without TS: mss, nop, nop, sackOK, nop, wscale."""
    conn = client(0.0, settings(tcp_timestamps=0))
    syn = expect_one(conn, 0.0)
    assert syn.options.hex() == "020405b4" + "01010402" + "01030307"


def test_wscale_from_tcp_rmem_max() -> None:
    """Linux picks the shift from tcp_rmem[2]: 6 MiB -> 7, 15 MiB -> 8."""
    assert expect_one(client(0.0), 0.0).parsed_options().wscale == 7
    big = settings(**{"net.ipv4.tcp_rmem": "4096 131072 15728640"})
    assert expect_one(client(0.0, big), 0.0).parsed_options().wscale == 8


def test_syn_retransmission_backoff_and_timeout() -> None:
    """tcp_syn_retries=6, linear timeouts off: SYN at 0, 1, 3, 7, 15, 31, 63; ETIMEDOUT at 127 s."""
    conn = client(0.0, settings(tcp_syn_linear_timeouts=0))
    expect_one(conn, 0.0)
    t = 0.0
    for i in range(6):
        t += 2.0**i
        expect_nothing(conn, t - 0.001)
        syn = expect_one(conn, t)
        assert syn.flags == SYN and syn.seq == ISS
    expect_nothing(conn, 126.999)
    assert conn.state is TcpState.SYN_SENT
    expect_nothing(conn, 127.0)
    assert conn.state is TcpState.CLOSE
    with pytest.raises(TimeoutError):
        conn.recv(127.0)
    assert conn.counters.TcpAttemptFails == 1


def test_syn_linear_timeouts_then_backoff() -> None:
    """Linux 6.5+ ``tcp_syn_linear_timeouts=4`` (``tcp_retransmit_timer``/``tcp_write_timeout``).

    The RTO stays 1 s while ``icsk_retransmits <= 4``, so SYNs at 0, 1, 2, 3,
    4, 5, then doubling: 7, 11, 19, 35, 67; the limit is tcp_syn_retries + 4
    = 10 retransmissions, so ETIMEDOUT at 67 + 64 = 131 s.
    """
    conn = client(0.0)
    expect_one(conn, 0.0)
    for t in (1.0, 2.0, 3.0, 4.0, 5.0, 7.0, 11.0, 19.0, 35.0, 67.0):
        expect_nothing(conn, t - 0.001)
        syn = expect_one(conn, t)
        assert syn.flags == SYN and syn.seq == ISS
    expect_nothing(conn, 130.999)
    assert conn.state is TcpState.SYN_SENT
    expect_nothing(conn, 131.0)
    assert conn.state is TcpState.CLOSE
    with pytest.raises(TimeoutError):
        conn.recv(131.0)


def test_syn_ack_establishes_and_acks() -> None:
    conn = client(0.0)
    expect_one(conn, 0.0)
    assert send(conn, 0.05, header(PEER_ISS, ISS + 1, SYN | ACK, options=syn_ack_options())) is None
    assert conn.state is TcpState.ESTABLISHED
    ack = expect_one(conn, 0.05)
    assert ack.flags == ACK and ack.seq == ISS + 1 and ack.ack == PEER_ISS + 1
    assert conn.counters.TcpCurrEstab == 1
    # RTT sample from the handshake (no retransmission): 50 ms.
    assert conn.rtt.rtt_us == 50_000


def test_sack_permitted_recorded_from_syn_ack() -> None:
    """Pitfall: the client must record SACK-permitted from the SYN-ACK."""
    conn = client(0.0, settings(tcp_timestamps=0))
    expect_one(conn, 0.0)
    send(
        conn,
        0.01,
        header(
            PEER_ISS, ISS + 1, SYN | ACK, options=syn_ack_options(ts=False, sack=True, wscale=None)
        ),
    )
    assert conn.sack_ok and not conn.wscale_ok and not conn.ts_ok
    # Without the peer's wscale we must not scale our window either (RFC 7323 2.2).
    assert conn.rcv_wscale == 0
    ack = expect_one(conn, 0.01)
    assert ack.window == 64240


def test_peer_window_scale_applied_after_syn() -> None:
    conn = client(0.0)
    expect_one(conn, 0.0)
    send(conn, 0.01, header(PEER_ISS, ISS + 1, SYN | ACK, 1000, options=syn_ack_options(wscale=3)))
    assert conn.snd_wnd == 1000  # the SYN-ACK's own window is unscaled
    send(conn, 0.02, header(PEER_ISS + 1, ISS + 1, ACK, 1000))
    assert conn.snd_wnd == 8000


def test_missing_mss_means_536() -> None:
    """RFC 9293 3.7.1: no MSS option means 536; payload leaves room for TS (524)."""
    conn = client(0.0)
    expect_one(conn, 0.0)
    send(conn, 0.01, header(PEER_ISS, ISS + 1, SYN | ACK, options=syn_ack_options(mss=None)))
    drain(conn, 0.01)
    conn.send(0.01, b"x" * 2000)
    segs = drain(conn, 0.01)
    assert [len(s.payload) for s in segs][:2] == [524, 524]


def test_rst_with_acceptable_ack_refuses() -> None:
    """RST in SYN-SENT with an acceptable ACK: ECONNREFUSED (Linux tcp_reset)."""
    conn = client(0.0)
    expect_one(conn, 0.0)
    assert send(conn, 0.01, header(0, ISS + 1, RST | ACK, 0)) is None
    assert conn.state is TcpState.CLOSE
    assert conn.error == errno.ECONNREFUSED
    with pytest.raises(ConnectionRefusedError):
        conn.recv(0.01)


def test_rst_without_ack_ignored() -> None:
    conn = client(0.0)
    expect_one(conn, 0.0)
    send(conn, 0.01, header(PEER_ISS, 0, RST, 0))
    assert conn.state is TcpState.SYN_SENT


def test_unacceptable_ack_gets_rst() -> None:
    """SEG.ACK outside (ISS, SND.NXT]: <SEQ=SEG.ACK><CTL=RST>."""
    conn = client(0.0)
    expect_one(conn, 0.0)
    reply = send(conn, 0.01, header(PEER_ISS, ISS + 500, SYN | ACK))
    assert reply is not None and reply.flags == RST and reply.seq == ISS + 500
    assert conn.state is TcpState.SYN_SENT
    # ... but never in answer to an RST.
    assert send(conn, 0.01, header(PEER_ISS, ISS + 500, RST | ACK)) is None


def test_simultaneous_open() -> None:
    """RFC 9293 figure 8; Linux accepts the crossing SYN-ACK in SYN-RECEIVED."""
    conn = client(0.0)
    expect_one(conn, 0.0)
    send(conn, 0.01, header(PEER_ISS, 0, SYN, options=syn_ack_options()))
    assert conn.state is TcpState.SYN_RECV
    synack = expect_one(conn, 0.01)
    assert synack.flags == SYN | ACK and synack.seq == ISS and synack.ack == PEER_ISS + 1
    # The peer's SYN-ACK (answering our SYN) arrives: this branch must run.
    opts = wtcp.TcpOptions(timestamps=(800, 0))
    assert send(conn, 0.02, header(PEER_ISS, ISS + 1, SYN | ACK, options=opts)) is None
    assert conn.state is TcpState.ESTABLISHED
    assert conn.snd_una == ISS + 1


def test_send_before_established_is_eagain() -> None:
    conn = client(0.0)
    with pytest.raises(BlockingIOError):
        conn.send(0.0, b"x")


def test_simultaneous_open_between_two_control_blocks() -> None:
    """Both ends connect at once (RFC 9293 figure 8), end to end, then exchange data."""
    from aiostack.core.counters import Counters
    from aiostack.core.tcp.connection import TcpConnection

    from .tcp_helpers import PEER, US

    a = TcpConnection.connect(
        0.0,
        local_addr=US,
        local_port=1111,
        remote_addr=PEER,
        remote_port=2222,
        iss=100,
        counters=Counters(),
    )
    b = TcpConnection.connect(
        0.0,
        local_addr=PEER,
        local_port=2222,
        remote_addr=US,
        remote_port=1111,
        iss=900,
        counters=Counters(),
    )
    syn_a, syn_b = expect_one(a, 0.0), expect_one(b, 0.0)
    # The SYNs cross: each side answers with SYN-ACK from SYN-RECEIVED.
    a.on_segment(0.01, syn_b.to_header(), memoryview(b""))
    b.on_segment(0.01, syn_a.to_header(), memoryview(b""))
    assert a.state is TcpState.SYN_RECV and b.state is TcpState.SYN_RECV
    sa_a, sa_b = expect_one(a, 0.01), expect_one(b, 0.01)
    a.on_segment(0.02, sa_b.to_header(), memoryview(b""))
    b.on_segment(0.02, sa_a.to_header(), memoryview(b""))
    assert a.state is TcpState.ESTABLISHED and b.state is TcpState.ESTABLISHED
    a.send(0.03, b"ping")
    for seg in drain(a, 0.03):
        b.on_segment(0.03, seg.to_header(), memoryview(bytes(seg.payload)))
    assert b.recv(0.03) == b"ping"
