"""SYN-RECEIVED (RFC 9293 3.10.7.4): a passive child before the handshake completes."""

from __future__ import annotations

from aiostack.core.counters import Counters
from aiostack.core.tcp.connection import TcpConnection
from aiostack.core.tcp.state import TcpState
from aiostack.settings import Settings
from aiostack.wire import tcp as wtcp

from .tcp_helpers import (
    ACK,
    FIN,
    PEER,
    RST,
    SYN,
    US,
    drain,
    expect_nothing,
    expect_one,
    header,
    send,
)

SERVER_ISS = 7000
CLIENT_ISS = 3000


def child(options: wtcp.TcpOptions, st: Settings | None = None) -> TcpConnection:
    syn = header(CLIENT_ISS, 0, SYN, options=options, src_port=49152, dst_port=80)
    return TcpConnection.from_syn(
        0.0, syn, local_addr=US, remote_addr=PEER, iss=SERVER_ISS, settings=st, counters=Counters()
    )


def from_client(
    seq: int,
    ack: int,
    flags: int = ACK,
    window: int = 65535,
    options: wtcp.TcpOptions | None = None,
) -> wtcp.TcpHeader:
    return header(seq, ack, flags, window, options=options, src_port=49152, dst_port=80)


def test_syn_ack_echoes_only_what_the_syn_offered() -> None:
    """RFC 7323 1.3 / RFC 2018: options absent from the SYN are absent from the SYN-ACK."""
    c = child(wtcp.TcpOptions(mss=1460))
    s = expect_one(c, 0.0)
    assert s.flags == SYN | ACK and s.seq == SERVER_ISS and s.ack == CLIENT_ISS + 1
    assert s.options.hex() == "020405b4"
    full = child(wtcp.TcpOptions(mss=1460, wscale=7, sack_permitted=True, timestamps=(123, 0)))
    s = expect_one(full, 0.0)
    assert s.options.hex() == "020405b4" + "0402080a" + "00000000" + "0000007b" + "01030307"
    # Linux's layout without timestamps: mss, nop, nop, sackOK, nop, wscale.
    nots = child(wtcp.TcpOptions(mss=1460, wscale=2, sack_permitted=True))
    assert expect_one(nots, 0.0).options.hex() == "020405b4" + "01010402" + "01030307"


def test_completing_ack_establishes_with_data() -> None:
    c = child(wtcp.TcpOptions(mss=1460))
    expect_one(c, 0.0)
    send(c, 0.01, from_client(CLIENT_ISS + 1, SERVER_ISS + 1), b"hello")
    assert c.state is TcpState.ESTABLISHED
    assert c.recv(0.01) == b"hello"
    assert c.timers.retransmit is None


def test_completing_ack_with_fin_goes_to_close_wait() -> None:
    c = child(wtcp.TcpOptions(mss=1460))
    expect_one(c, 0.0)
    send(c, 0.01, from_client(CLIENT_ISS + 1, SERVER_ISS + 1, ACK | FIN))
    assert c.state is TcpState.CLOSE_WAIT
    assert c.recv(0.01) == b""


def test_bad_ack_gets_rst() -> None:
    """RFC 9293 3.10.7.4 fifth step: unacceptable ACK in SYN-RECEIVED -> <SEQ=SEG.ACK><RST>."""
    c = child(wtcp.TcpOptions(mss=1460))
    expect_one(c, 0.0)
    reply = send(c, 0.01, from_client(CLIENT_ISS + 1, SERVER_ISS + 99))
    assert reply is not None and reply.flags == RST and reply.seq == SERVER_ISS + 99
    assert c.state is TcpState.SYN_RECV


def test_rst_returns_passive_child_silently() -> None:
    """RFC 9293: a passive open hit by RST goes back to LISTEN: no error for anyone."""
    c = child(wtcp.TcpOptions(mss=1460))
    expect_one(c, 0.0)
    send(c, 0.01, from_client(CLIENT_ISS + 1, 0, RST))
    assert c.state is TcpState.CLOSE and c.error == 0


def test_retransmitted_syn_repeats_syn_ack() -> None:
    c = child(wtcp.TcpOptions(mss=1460))
    expect_one(c, 0.0)
    assert send(c, 0.3, from_client(CLIENT_ISS, 0, SYN, options=wtcp.TcpOptions(mss=1460))) is None
    s = expect_one(c, 0.3)
    assert s.flags == SYN | ACK and s.seq == SERVER_ISS


def test_synack_retries_then_gone() -> None:
    """tcp_synack_retries=5: SYN-ACK at 0, 1, 3, 7, 15, 31; the child dies at 63 s."""
    c = child(wtcp.TcpOptions(mss=1460))
    expect_one(c, 0.0)
    t = 0.0
    for i in range(5):
        t += 2.0**i
        expect_nothing(c, t - 0.001)
        assert expect_one(c, t).flags == SYN | ACK
    expect_nothing(c, 63.0)
    assert c.state is TcpState.CLOSE and c.error == 0


def test_syn_with_ece_cwr_is_accepted() -> None:
    """Pitfall: a SYN with ECE and CWR (RFC 3168 ECN setup) must not be refused."""
    syn = header(
        CLIENT_ISS,
        0,
        SYN | wtcp.ECE | wtcp.CWR,
        options=wtcp.TcpOptions(mss=1460),
        src_port=49152,
        dst_port=80,
    )
    c = TcpConnection.from_syn(0.0, syn, local_addr=US, remote_addr=PEER, iss=SERVER_ISS)
    assert drain(c, 0.0)[0].flags == SYN | ACK
