"""Helpers for the TCP control-block tests: segment templates, send/expect with explicit time.

Named from the test's side, as smoltcp's ``send!``/``recv!``: :func:`send`
delivers a segment *from the peer* to the connection under test;
:func:`drain` collects what the connection transmits at ``now``;
:func:`expect_nothing` asserts silence. Times are explicit seconds.
The peer in these tests is a scripted remote at 198.18.0.1:80 (ISN
:data:`PEER_ISS`), the connection under test is 198.18.0.2:49152 (ISN
:data:`ISS`), unless a test says otherwise.
"""

from __future__ import annotations

from dataclasses import replace

from aiostack.core.counters import Counters
from aiostack.core.tcp.connection import TcpConnection
from aiostack.core.tcp.output import Segment
from aiostack.core.tcp.state import TcpState
from aiostack.settings import Settings
from aiostack.wire import tcp as wtcp
from aiostack.wire.ipv4 import addr

US = addr("198.18.0.2")
PEER = addr("198.18.0.1")
LPORT = 49152
RPORT = 80
ISS = 1000
PEER_ISS = 5000
PEER_TSVAL = 700
SYN = wtcp.SYN
ACK = wtcp.ACK
FIN = wtcp.FIN
RST = wtcp.RST
PSH = wtcp.PSH


def header(
    seq: int,
    ack: int = 0,
    flags: int = ACK,
    window: int = 65535,
    *,
    options: wtcp.TcpOptions | None = None,
    src_port: int = RPORT,
    dst_port: int = LPORT,
) -> wtcp.TcpHeader:
    """A header as the peer sends it (ports default to peer -> us)."""
    opts = options if options is not None else wtcp.TcpOptions()
    hlen = wtcp.HEADER_LEN + len(opts.encode())
    return wtcp.TcpHeader(
        src_port, dst_port, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, hlen, flags, window, 0, 0, opts
    )


def send(
    conn: TcpConnection, now: float, hdr: wtcp.TcpHeader, payload: bytes = b""
) -> Segment | None:
    """Deliver a segment from the peer to ``conn``; return its immediate reply."""
    return conn.on_segment(now, hdr, memoryview(payload))


def drain(conn: TcpConnection, now: float, limit: int = 1000) -> list[Segment]:
    """Everything ``conn`` transmits at ``now`` (poll_transmit until None)."""
    out: list[Segment] = []
    for _ in range(limit):
        seg = conn.poll_transmit(now)
        if seg is None:
            return out
        out.append(seg)
    raise AssertionError("poll_transmit never returned None")


def expect_one(conn: TcpConnection, now: float) -> Segment:
    segs = drain(conn, now)
    assert len(segs) == 1, segs
    return segs[0]


def expect_nothing(conn: TcpConnection, now: float) -> None:
    segs = drain(conn, now)
    assert segs == [], segs


def settings(**kw: object) -> Settings:
    st = Settings()
    for k, v in kw.items():
        st.set(k, v)
    return st


def client(
    now: float = 0.0, st: Settings | None = None, iss: int = ISS, **kw: object
) -> TcpConnection:
    """An active opener in SYN-SENT whose SYN has not been sent yet."""
    return TcpConnection.connect(
        now,
        local_addr=US,
        local_port=LPORT,
        remote_addr=PEER,
        remote_port=RPORT,
        iss=iss,
        settings=st,
        counters=Counters(),
        **kw,  # type: ignore[arg-type]
    )


def syn_ack_options(
    ts: bool = True, sack: bool = True, wscale: int | None = 7, mss: int | None = 1460
) -> wtcp.TcpOptions:
    return wtcp.TcpOptions(
        mss=mss, wscale=wscale, sack_permitted=sack, timestamps=(PEER_TSVAL, 0) if ts else None
    )


def established(
    now: float = 0.0,
    *,
    ts: bool = False,
    sack: bool = True,
    wscale: int | None = None,
    peer_window: int = 65535,
    st: Settings | None = None,
    mss: int | None = 1460,
    **kw: object,
) -> TcpConnection:
    """An ESTABLISHED client after a full handshake at ``now`` (the ACK drained)."""
    conn = client(now, st, **kw)
    syn = expect_one(conn, now)
    opts = syn_ack_options(ts=ts, sack=sack, wscale=wscale, mss=mss)
    if ts:
        assert syn.options
        tsval = syn.parsed_options().timestamps
        assert tsval is not None
        opts = replace(opts, timestamps=(PEER_TSVAL, tsval[0]))
    send(conn, now, header(PEER_ISS, ISS + 1, SYN | ACK, peer_window, options=opts))
    assert conn.state is TcpState.ESTABLISHED
    drain(conn, now)
    return conn


def peer_ack(conn: TcpConnection, ack: int, window: int = 65535, **kw: object) -> wtcp.TcpHeader:
    """A pure ACK from the peer at its current sequence number."""
    return header(conn.rcv_nxt, ack, ACK, window, **kw)  # type: ignore[arg-type]


def rel(seq: int, base: int) -> int:
    return (seq - base) & 0xFFFFFFFF
