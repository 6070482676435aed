"""Options: MSS, window scale (RFC 7323), timestamps with RTTM and PAWS, SACK and D-SACK."""

from __future__ import annotations

from aiostack.core.tcp.info import TCPI_OPT_SACK, TCPI_OPT_TIMESTAMPS, TCPI_OPT_WSCALE, tcp_info
from aiostack.wire import tcp as wtcp

from .tcp_helpers import (
    ACK,
    ISS,
    PEER_ISS,
    PEER_TSVAL,
    SYN,
    client,
    drain,
    established,
    expect_one,
    header,
    send,
    syn_ack_options,
)

DATA0 = PEER_ISS + 1
OUR0 = ISS + 1


def test_mss_from_route_mtu() -> None:
    """Our MSS is the route MTU - 40 (Linux tcp_mtu_to_mss), and caps what we send."""
    conn = client(0.0, mtu=1400)
    assert expect_one(conn, 0.0).parsed_options().mss == 1360
    send(conn, 0.01, header(PEER_ISS, ISS + 1, SYN | ACK, options=syn_ack_options(ts=False)))
    drain(conn, 0.01)
    conn.send(0.02, b"x" * 2000)
    assert [len(s.payload) for s in drain(conn, 0.02)] == [1360, 640]


def test_window_field_is_scaled() -> None:
    """RFC 7323 2.3: non-SYN windows are shifted right by our scale (7)."""
    conn = established(wscale=7)
    conn.send(0.1, b"x")
    seg = expect_one(conn, 0.1)
    assert seg.window == conn.rwnd.rcv_wnd >> 7


def test_established_segments_carry_nop_nop_ts() -> None:
    conn = established(ts=True)
    conn.send(1.5, b"x")
    seg = expect_one(conn, 1.5)
    assert seg.options[:4].hex() == "0101080a"
    assert seg.parsed_options().timestamps == (1500, PEER_TSVAL)


def test_ts_echo_gives_rtt_sample() -> None:
    """RFC 7323 4 (RTTM): the echoed TSval times the round trip."""
    conn = established(ts=True)
    conn.send(2.0, b"x" * 100)
    drain(conn, 2.0)
    opts = wtcp.TcpOptions(timestamps=(PEER_TSVAL + 10, 2000))
    send(conn, 2.25, header(DATA0, OUR0 + 100, options=opts))
    # The handshake sampled ~0 (same instant); 250 ms enters SRTT at gain 1/8.
    assert conn.rtt.rtt_us == 31_250


def test_paws_drops_old_timestamp() -> None:
    """RFC 7323 5.3: a segment whose TSval is older than TS.Recent is dropped and ACKed."""
    conn = established(ts=True)
    send(
        conn,
        0.1,
        header(DATA0, OUR0, options=wtcp.TcpOptions(timestamps=(PEER_TSVAL + 5, 0))),
        b"new",
    )
    drain(conn, 0.1)
    old = wtcp.TcpOptions(timestamps=(PEER_TSVAL - 1, 0))
    send(conn, 0.2, header(DATA0 + 3, OUR0, options=old), b"old")
    assert conn.counters.TcpExtPAWSEstab == 1
    assert conn.recv(0.2) == b"new"
    assert expect_one(conn, 0.2).ack == DATA0 + 3


def test_dsack_for_duplicate_segment() -> None:
    """RFC 2883: the first block of the ACK for a duplicate reports it."""
    conn = established()
    send(conn, 0.1, header(DATA0, OUR0), b"a" * 100)
    drain(conn, 0.1)
    send(conn, 0.2, header(DATA0, OUR0), b"a" * 100)
    ack = expect_one(conn, 0.2)
    assert ack.parsed_options().sack_blocks == ((DATA0, DATA0 + 100),)
    send(conn, 0.3, header(DATA0 + 100, OUR0), b"b")
    assert conn.rcvbuf.dsack is None


def test_sack_blocks_across_the_wrap() -> None:
    """Pitfall: SACK blocks around 2**32 come out as modular sequence numbers."""
    conn = client(0.0, iss=5)
    expect_one(conn, 0.0)
    peer_iss = 0xFFFFFFF0
    send(conn, 0.01, header(peer_iss, 6, SYN | ACK, options=syn_ack_options(ts=False)))
    drain(conn, 0.01)
    send(conn, 0.02, header(0x10, 6), b"z" * 32)  # leaves a hole 0xFFFFFFF1..0x10
    ack = expect_one(conn, 0.02)
    assert ack.ack == 0xFFFFFFF1
    assert ack.parsed_options().sack_blocks == ((0x10, 0x30),)
    send(conn, 0.03, header(0xFFFFFFF1, 6), b"a" * 31)
    assert expect_one(conn, 0.03).ack == 0x30
    assert len(conn.recv(0.03)) == 63


def test_tcp_info_fields() -> None:
    conn = established(ts=True, wscale=7)
    info = tcp_info(conn, 1.0)
    assert info.state == 1 and info.snd_cwnd == 10
    assert info.options == TCPI_OPT_TIMESTAMPS | TCPI_OPT_SACK | TCPI_OPT_WSCALE
    assert info.snd_wscale == 7 and info.rcv_wscale == 7
    assert info.snd_mss == 1448 and info.advmss == 1448
    assert info.rto == conn.rtt.rto_us and info.ato == 40_000
    assert set(info.as_dict()) >= {
        "rtt",
        "rttvar",
        "bytes_acked",
        "bytes_received",
        "segs_out",
        "segs_in",
        "notsent_bytes",
        "min_rtt",
    }
