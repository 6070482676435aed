"""LISTEN (RFC 9293 3.10.7.2): the listener, its queues, SYN cookies, and the demux."""

from __future__ import annotations

from aiostack.core.counters import Counters
from aiostack.core.tcp.demux import TcpDemux
from aiostack.core.tcp.isn import IsnGenerator
from aiostack.core.tcp.listener import TcpListener
from aiostack.core.tcp.state import TcpState
from aiostack.core.tcp.syncookies import SynCookies
from aiostack.settings import Settings
from aiostack.wire import tcp as wtcp

from .tcp_helpers import ACK, PEER, RST, SYN, US, expect_one, header, settings

ISN = IsnGenerator(bytes(range(16)))
COOKIES = SynCookies(bytes(range(16)), bytes(range(1, 17)))
OPTS = wtcp.TcpOptions(mss=1460, wscale=7, sack_permitted=True, timestamps=(1000, 0))


def listener(backlog: int = 4, st: Settings | None = None) -> TcpListener:
    return TcpListener(
        local_addr=US,
        local_port=80,
        backlog=backlog,
        isn=ISN,
        cookies=COOKIES,
        settings=st or Settings(),
        counters=Counters(),
    )


def syn(port: int, seq: int = 100, options: wtcp.TcpOptions = OPTS) -> wtcp.TcpHeader:
    return header(seq, 0, SYN, options=options, src_port=port, dst_port=80)


def ack(
    port: int, seq: int, ack_: int, options: wtcp.TcpOptions | None = None, flags: int = ACK
) -> wtcp.TcpHeader:
    return header(seq, ack_, flags, 1000, options=options, src_port=port, dst_port=80)


def handshake(lst: TcpListener, port: int, now: float = 0.0) -> None:
    child, reply = lst.on_segment(now, PEER, US, syn(port), b"")
    assert child is not None and reply is None
    sa = expect_one(child, now)
    tsecr = wtcp.TcpOptions(timestamps=(1001, sa.parsed_options().timestamps[0]))  # type: ignore[index]
    lst.on_segment(now, PEER, US, ack(port, 101, sa.seq + 1, tsecr), b"")


def test_syn_creates_child_and_passive_open() -> None:
    lst = listener()
    child, reply = lst.on_segment(0.0, PEER, US, syn(40000), b"")
    assert reply is None and child is not None and child.state is TcpState.SYN_RECV
    assert lst.counters.TcpPassiveOpens == 1
    assert expect_one(child, 0.0).flags == SYN | ACK
    handshake(lst, 40001)
    conn = lst.accept()
    assert conn is not None and conn.state is TcpState.ESTABLISHED


def test_ack_without_child_is_reset_and_rst_ignored() -> None:
    lst = listener()
    _, reply = lst.on_segment(0.0, PEER, US, ack(40000, 5, 777), b"")
    assert reply is not None and reply.flags == RST and reply.seq == 777
    _, reply = lst.on_segment(0.0, PEER, US, ack(40000, 5, 777, flags=RST), b"")
    assert reply is None


def fill_then_pend(lst: TcpListener) -> wtcp.TcpHeader:
    """backlog 2: three accepted (full), one accept(), one child pending, queue refilled."""
    for port in (40000, 40001, 40002):
        handshake(lst, port)
    assert len(lst.accept_queue) == 3
    child, _ = lst.on_segment(0.0, PEER, US, syn(40009), b"")
    # A SYN arriving while the accept queue is full is dropped outright.
    assert child is None and lst.counters.TcpExtListenOverflows == 1
    lst.accept()
    child, _ = lst.on_segment(0.0, PEER, US, syn(40003), b"")
    assert child is not None
    handshake(lst, 40004)  # fills the accept queue again (3 waiting)
    sa = expect_one(child, 0.0)
    return ack(40003, 101, sa.seq + 1)


def test_accept_queue_holds_backlog_plus_one_then_drops_ack() -> None:
    """Linux sk_acceptq_is_full: backlog 2 holds 3; a completing ACK beyond is dropped."""
    lst = listener(backlog=2)
    completing = fill_then_pend(lst)
    c2, reply = lst.on_segment(0.1, PEER, US, completing, b"")
    assert c2 is None and reply is None
    assert lst.syn_queue[(PEER, 40003)].state is TcpState.SYN_RECV  # SYN-ACK will repeat
    assert lst.counters.TcpExtListenOverflows == 2
    assert lst.counters.TcpExtListenDrops == 2
    # Once the application accepts, the retransmitted handshake completes.
    lst.accept()
    c3, _ = lst.on_segment(0.2, PEER, US, completing, b"")
    assert c3 is not None and c3.state is TcpState.ESTABLISHED


def test_abort_on_overflow_resets() -> None:
    """tcp_abort_on_overflow=1: the completing ACK is answered with an RST."""
    lst = listener(backlog=2, st=settings(tcp_abort_on_overflow=1))
    completing = fill_then_pend(lst)
    _, reply = lst.on_segment(0.1, PEER, US, completing, b"")
    assert reply is not None and reply.flags == RST
    assert (PEER, 40003) not in lst.syn_queue


def test_syn_cookies_when_syn_queue_full() -> None:
    """RFC 4987 / Linux: a full SYN queue answers with cookies; a cookie ACK establishes."""
    lst = listener(backlog=1)
    child, _ = lst.on_segment(0.0, PEER, US, syn(40000), b"")
    assert child is not None
    c2, reply = lst.on_segment(1.0, PEER, US, syn(40001, seq=500), b"")
    assert c2 is None and reply is not None and reply.flags == SYN | ACK
    assert lst.counters.TcpExtSyncookiesSent == 1
    opts = reply.parsed_options()
    assert opts.mss == 1460 and opts.wscale == 7 and opts.sack_permitted
    assert opts.timestamps is not None
    echo = wtcp.TcpOptions(timestamps=(1001, opts.timestamps[0]))
    conn, reply2 = lst.on_segment(1.1, PEER, US, ack(40001, 501, reply.seq + 1, echo), b"hi")
    assert reply2 is None and conn is not None and conn.state is TcpState.ESTABLISHED
    assert lst.counters.TcpExtSyncookiesRecv == 1
    assert conn.sack_ok and conn.wscale_ok and conn.snd_wscale == 7
    assert conn.recv(1.1) == b"hi"
    # A forged cookie fails and is reset.
    _, bad = lst.on_segment(1.2, PEER, US, ack(40002, 9, 12345, echo), b"")
    assert bad is not None and bad.flags == RST
    assert lst.counters.TcpExtSyncookiesFailed == 1


def test_demux_resets_segments_to_nowhere_but_never_an_rst() -> None:
    """RFC 9293 3.10.7.1; pitfall: answering an RST with an RST loops forever."""
    dm = TcpDemux()
    d = dm.input(0.0, PEER, US, header(10, 0, SYN, src_port=5, dst_port=6), b"")
    assert d.reply is not None and d.reply.flags == RST | ACK and d.reply.ack == 11
    assert d.reply.seq == 0
    d = dm.input(0.0, PEER, US, header(10, 0, RST, src_port=5, dst_port=6), b"")
    assert d.reply is None
    d = dm.input(0.0, PEER, US, header(10, 0, RST | ACK, src_port=5, dst_port=6), b"")
    assert d.reply is None


def test_demux_routes_to_listener_and_table() -> None:
    dm = TcpDemux()
    lst = listener()
    dm.listen(lst)
    d = dm.input(0.0, PEER, US, syn(40000), b"")
    assert d.conn is not None and d.listener is lst
    sa = expect_one(d.conn, 0.0)
    echo = wtcp.TcpOptions(timestamps=(1001, sa.parsed_options().timestamps[0]))  # type: ignore[index]
    d2 = dm.input(0.0, PEER, US, ack(40000, 101, sa.seq + 1, echo), b"")
    assert d2.conn is d.conn and d.conn.state is TcpState.ESTABLISHED
    assert dm.connections[(US, 80, PEER, 40000)] is d.conn
    d3 = dm.input(0.0, PEER, US, ack(40000, 101, sa.seq + 1, echo), b"x")
    assert d3.conn is d.conn and d.conn.recv(0.0) == b"x"


def test_rst_for_unknown_connection_leaves_others_alone() -> None:
    """Pitfall: the reset for a stray segment must not touch another connection's window."""
    dm = TcpDemux()
    lst = listener()
    dm.listen(lst)
    handshake_d = dm.input(0.0, PEER, US, syn(40000), b"")
    conn = handshake_d.conn
    assert conn is not None
    sa = expect_one(conn, 0.0)
    echo = wtcp.TcpOptions(timestamps=(1001, sa.parsed_options().timestamps[0]))  # type: ignore[index]
    dm.input(0.0, PEER, US, ack(40000, 101, sa.seq + 1, echo), b"")
    before = (conn.snd_wnd, conn.rwnd.rcv_wnd, conn.rwnd.rcv_wup, conn.snd_una, conn.rcv_nxt)
    d = dm.input(0.1, PEER, US, header(1, 2, ACK, 0, src_port=40009, dst_port=81), b"zz")
    assert d.reply is not None and d.reply.flags == RST
    assert (
        conn.snd_wnd,
        conn.rwnd.rcv_wnd,
        conn.rwnd.rcv_wup,
        conn.snd_una,
        conn.rcv_nxt,
    ) == before
